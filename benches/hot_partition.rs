//! The smart partitioner judged on its outcome: a real pipeline with one slow
//! consumer, run once per partitioning strategy.
//!
//! ```text
//! cargo run --release -p smartkafka-benches --bin hot_partition -- --spawn mock --strategy all --duration 120
//! cargo run --release -p smartkafka-benches --bin hot_partition -- --spawn fake --strategy smart --duration 60
//! cargo run --release -p smartkafka-benches --bin hot_partition -- --bootstrap localhost:9092 --strategy all
//! ```
//!
//! Each run has its own broker (`--spawn mock|fake`: the librdkafka mock
//! cluster or the fake cluster of `protocol-tests`, in a child process) or,
//! with `--bootstrap`, its own topic on an external cluster, with
//! `--partitions` partitions (12). A consumer group reads it with
//! `--consumers` rust-rdkafka consumers, each in its own process (this binary
//! in its hidden `--consumer` mode), each assigned a fixed set of partitions
//! and committing what it has processed every `--commit-interval` (1 s), as
//! a deployment does; with the `smart-reported` strategy each commit also
//! carries the consumer's processing time per record (`ProcessingReport`). The consumer owning `--slow-partitions` (0 and 1) spends
//! `--slow-factor` (10) times `--work-us` per record from `--slow-from` until
//! `--slow-until`; all others spend `--work-us` per record. Processing is
//! simulated by sleeping, so the figures are latency and routing, not CPU.
//!
//! One smartkafka producer sends keyless records at `--rate` (4,500/s) for
//! `--duration` seconds, each with its send time in a `sent-us` header. The
//! consumers report when each record was processed; lag is sampled every
//! second from the group's committed offsets and the partitions' end offsets
//! through smartkafka's `AdminClient`. The report: end-to-end latency
//! (p50/p99/max: all records, the slow partitions', the others'), lag per
//! partition (maximum and at the end of production), records/s, the share of
//! records each partition received, and how fast routing reacts: the time to
//! shift (from the consumer turning slow until the moment from which the
//! slow partitions' share of the next three seconds' records is below half
//! their fair share) and the time to come back (from its recovery until the
//! moment from which they get at least 80% of their fair share of the next
//! three seconds).
//!
//! `--strategy all` runs a baseline without a slow consumer, then each
//! strategy on a fresh broker (or topic) with the slow consumer, and prints
//! a Markdown table. A failed record, a consumer that does not start or a
//! run where nothing is consumed makes the exit code non-zero; the figures
//! never do.

// The clock rule is for the library's engine; a load generator times itself.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use futures_util::stream::{FuturesUnordered, StreamExt};
use smartkafka::health::{Scoring, SmartConfig};
use smartkafka::partitioner::PartitionStrategy;
use smartkafka::{AdminClient, ClientConfig, OffsetSpec, Producer, ProducerBuilder, Record};

// Shared with `perf`; `--tls` and the CA file are not used here.
#[allow(dead_code)]
mod broker;
#[path = "hot_partition/consumer.rs"]
mod consumer;
#[path = "hot_partition/report.rs"]
mod report;

use broker::{Broker, ServeSpec, Spawned};
use report::{BUCKET_US, Outcome, Received, SlowWindow};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header carrying a record's send time (Unix microseconds, decimal).
const SENT_HEADER: &str = "sent-us";

/// What a strategy needs to configure the producer.
struct Context {
    topic: String,
    group: String,
    refresh: Duration,
}

/// A partitioning strategy under test: its name (for `--strategy`) and how
/// it configures the producer.
struct Strategy {
    name: &'static str,
    configure: fn(ProducerBuilder, &Context) -> ProducerBuilder,
    /// Whether the consumers commit their processing time with their
    /// offsets (`ProcessingReport` metadata).
    consumers_report: bool,
}

/// The strategies, in the order `--strategy all` runs them. Adding one is
/// adding a line.
const STRATEGIES: &[Strategy] = &[
    Strategy {
        name: "sticky",
        configure: |builder, _| builder,
        consumers_report: false,
    },
    Strategy {
        name: "round-robin",
        configure: |builder, _| builder.partitioner(PartitionStrategy::RoundRobin),
        consumers_report: false,
    },
    Strategy {
        name: "smart",
        configure: |builder, cx| builder.smart_partitioner(smart_defaults(cx)),
        consumers_report: false,
    },
    Strategy {
        name: "smart-trend",
        configure: |builder, cx| {
            builder.smart_partitioner(smart_defaults(cx).scoring(Scoring::Trend))
        },
        consumers_report: false,
    },
    Strategy {
        name: "smart-reported",
        configure: |builder, cx| {
            builder.smart_partitioner(smart_defaults(cx).scoring(Scoring::Trend))
        },
        consumers_report: true,
    },
];

/// `SmartConfig` defaults with the group, the topic and the refresh interval.
fn smart_defaults(cx: &Context) -> SmartConfig {
    SmartConfig::new(&cx.group)
        .topics([cx.topic.as_str()])
        .refresh_interval(cx.refresh)
}

#[derive(Debug, Clone, Parser)]
#[command(
    about = "End-to-end latency, lag and routing with one slow consumer, per partitioning strategy"
)]
struct Args {
    /// An external cluster (`host:port,...`); each run gets a fresh topic.
    #[arg(long, conflicts_with = "spawn")]
    bootstrap: Option<String>,
    /// Start a broker as a separate child process for each run.
    #[arg(long, value_enum)]
    spawn: Option<Broker>,
    /// Brokers in a spawned cluster.
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    /// Topic name (prefix: the strategy's name is appended).
    #[arg(long, default_value = "hot")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Consumer processes in the group (one owns the slow partitions, the
    /// others share the rest).
    #[arg(long, default_value_t = 6)]
    consumers: usize,
    /// The partitions whose consumer turns slow.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    slow_partitions: Vec<i32>,
    /// How many times longer the slow consumer spends per record.
    #[arg(long, default_value_t = 10.0)]
    slow_factor: f64,
    /// Simulated processing per record, microseconds.
    #[arg(long, default_value_t = 200)]
    work_us: u64,
    /// How often the consumers commit, seconds.
    #[arg(long, default_value_t = 1.0)]
    commit_interval: f64,
    /// The consumers' fetch.wait.max.ms. The librdkafka mock answers a Fetch
    /// only when this wait is over, so the default keeps it short.
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u64,
    /// Records per second.
    #[arg(long, default_value_t = 4500.0)]
    rate: f64,
    /// Seconds of production per run.
    #[arg(long, default_value_t = 120.0)]
    duration: f64,
    /// When the consumer turns slow, seconds into the run (default: a fifth
    /// of the duration).
    #[arg(long)]
    slow_from: Option<f64>,
    /// When it recovers (default: at two thirds of the duration).
    #[arg(long)]
    slow_until: Option<f64>,
    /// No slow consumer (the baseline).
    #[arg(long)]
    no_slow: bool,
    /// sticky | round-robin | smart | smart-trend | smart-reported | all (a baseline without a slow
    /// consumer, then each strategy with one) | a comma-separated list
    /// (`sticky,smart,smart-trend`: the baseline, then those).
    #[arg(long, default_value = "all")]
    strategy: String,
    /// The smart partitioner's refresh interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    refresh: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Print the slow partitions' routing (trend scoring) at each refresh
    /// of the smart partitioner: reason, target rate, backlog, capacity.
    #[arg(long)]
    trace_routing: bool,
    /// Longest wait for the consumers to catch up after production, seconds.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    /// Internal: run a broker (mock or fake), print its address, serve
    /// until stdin closes.
    #[arg(long, value_enum, hide = true)]
    serve: Option<Broker>,
    /// Internal (broker mode).
    #[arg(long, hide = true)]
    tls: bool,
    /// Internal (broker mode): topics served.
    #[arg(long, hide = true, default_value_t = 1)]
    topics: usize,
    /// Internal: run one consumer of the group (see `consumer.rs`).
    #[arg(long, hide = true)]
    consumer: bool,
    /// Internal (consumer mode): the group.
    #[arg(long, hide = true)]
    group: Option<String>,
    /// Internal (consumer mode): the partitions to read.
    #[arg(long, hide = true, value_delimiter = ',')]
    assign: Vec<i32>,
    /// Internal (consumer mode): commit a processing report with each offset.
    #[arg(long, hide = true)]
    report_processing: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(broker) = args.serve {
        broker::serve(
            broker,
            &ServeSpec {
                brokers: args.brokers,
                topics: args.topics,
                topic: args.topic.clone(),
                partitions: args.partitions,
                tls: args.tls,
            },
        );
        return;
    }
    if args.consumer {
        if let Err(e) = consumer::run(&args) {
            eprintln!("hot_partition consumer: {e}");
            std::process::exit(2);
        }
        return;
    }
    match run_all(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("hot_partition: {e}");
            std::process::exit(2);
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs the chosen strategies; `Ok(false)` if a run failed.
fn run_all(args: &Args) -> Result<bool, BoxError> {
    if args.spawn.is_none() && args.bootstrap.is_none() {
        return Err("give --bootstrap ADDR or --spawn mock|fake".into());
    }
    if args.partitions < 1 || args.consumers < 2 {
        return Err("--partitions must be at least 1 and --consumers at least 2".into());
    }
    if args
        .slow_partitions
        .iter()
        .any(|p| *p < 0 || *p >= args.partitions)
        || args.slow_partitions.is_empty()
    {
        return Err("--slow-partitions must name partitions of the topic".into());
    }
    if !(args.rate > 0.0 && args.duration > 0.0) {
        return Err("--rate and --duration must be positive".into());
    }
    let window = slow_window(args)?;
    let mut runs: Vec<(&Strategy, bool)> = Vec::new();
    if args.strategy == "all" {
        if !args.no_slow {
            runs.push((&STRATEGIES[0], false));
        }
        runs.extend(STRATEGIES.iter().map(|s| (s, !args.no_slow)));
    } else if args.strategy.contains(',') {
        // A list: the baseline first, as with `all`, then each one named.
        if !args.no_slow {
            runs.push((&STRATEGIES[0], false));
        }
        for name in args.strategy.split(',') {
            runs.push((find_strategy(name.trim())?, !args.no_slow));
        }
    } else {
        runs.push((find_strategy(&args.strategy)?, !args.no_slow));
    }
    println!(
        "hot_partition: {} partitions, {} consumers (rust-rdkafka, own processes, assigned partitions, committing every {} s, fetch.wait.max.ms {}), {} us per record{}",
        args.partitions,
        args.consumers,
        args.commit_interval,
        args.fetch_wait_ms,
        args.work_us,
        if args.no_slow {
            String::new()
        } else {
            format!(
                ", {}x on partitions {:?} from {:.0} s to {:.0} s",
                args.slow_factor, args.slow_partitions, window.from, window.until
            )
        }
    );
    println!(
        "producer: smartkafka, keyless {} B records at {} records/s for {} s, linger 5 ms; broker: {}",
        args.size,
        args.rate,
        args.duration,
        match (args.spawn, &args.bootstrap) {
            (Some(b), _) => format!("{} cluster in its own process", b.name()),
            (None, Some(b)) => b.clone(),
            (None, None) => String::new(),
        }
    );
    let mut outcomes = Vec::new();
    let mut ok = true;
    for (strategy, slow) in runs {
        let outcome = run_one(args, strategy, slow.then_some(window))?;
        outcome.print();
        if let Some(failure) = outcome.failure() {
            eprintln!("hot_partition: {} run failed: {failure}", strategy.name);
            ok = false;
        }
        outcomes.push(outcome);
    }
    if outcomes.len() > 1 {
        println!("\n{}", report::table(&outcomes));
    }
    Ok(ok)
}

/// The strategy called `name`.
fn find_strategy(name: &str) -> Result<&'static Strategy, BoxError> {
    STRATEGIES.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = STRATEGIES.iter().map(|s| s.name).collect();
        format!(
            "unknown --strategy `{name}` (one of {}, all, or a comma-separated list)",
            names.join(", ")
        )
        .into()
    })
}

fn slow_window(args: &Args) -> Result<SlowWindow, BoxError> {
    let from = args.slow_from.unwrap_or(args.duration / 5.0);
    let until = args.slow_until.unwrap_or(args.duration * 2.0 / 3.0);
    if !(0.0..args.duration).contains(&from) || until <= from || until > args.duration {
        return Err("need 0 <= --slow-from < --slow-until <= --duration".into());
    }
    Ok(SlowWindow { from, until })
}

/// Which partitions each consumer reads: the first owns the slow ones, the
/// others share the rest in turn.
fn layout(args: &Args) -> Vec<Vec<i32>> {
    let mut owned = vec![args.slow_partitions.clone()];
    owned.resize(args.consumers, Vec::new());
    let rest: Vec<i32> = (0..args.partitions)
        .filter(|p| !args.slow_partitions.contains(p))
        .collect();
    for (i, p) in rest.into_iter().enumerate() {
        owned[1 + i % (args.consumers - 1)].push(p);
    }
    owned.retain(|ps| !ps.is_empty());
    owned
}

/// A consumer process and what it reports.
struct ConsumerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ConsumerProcess {
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the group's consumers and waits until each has fetched every
/// partition it is assigned (see `consumer::wait_until_fetching`).
fn start_consumers(
    args: &Args,
    report_processing: bool,
    bootstrap: &str,
    topic: &str,
    group: &str,
    received: &Arc<Mutex<Received>>,
) -> Result<Vec<ConsumerProcess>, BoxError> {
    let exe = std::env::current_exe()?;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut processes = Vec::new();
    for partitions in layout(args) {
        let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
        let mut child = Command::new(&exe)
            .arg("--consumer")
            .args(["--bootstrap", bootstrap])
            .args(["--topic", topic])
            .args(["--group", group])
            .args(["--assign", &list.join(",")])
            .args(["--work-us", &args.work_us.to_string()])
            .args(["--slow-factor", &args.slow_factor.to_string()])
            .args(["--commit-interval", &args.commit_interval.to_string()])
            .args(["--fetch-wait-ms", &args.fetch_wait_ms.to_string()])
            .args(report_processing.then_some("--report-processing"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout from a consumer")?;
        let received = Arc::clone(received);
        let ready = ready_tx.clone();
        let reader = std::thread::spawn(move || read_consumer(stdout, &received, &ready));
        processes.push(ConsumerProcess {
            child,
            stdin,
            reader: Some(reader),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..processes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        ready_rx
            .recv_timeout(left)
            .map_err(|_| "a consumer did not start within 30 s")?;
    }
    Ok(processes)
}

/// Reads one consumer's lines into `received`.
fn read_consumer(
    stdout: std::process::ChildStdout,
    received: &Mutex<Received>,
    ready: &mpsc::Sender<()>,
) {
    let mut batch: Vec<(usize, u64)> = Vec::with_capacity(1024);
    let flush = |batch: &mut Vec<(usize, u64)>| {
        let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
        for (p, latency) in batch.drain(..) {
            if r.latencies.len() <= p {
                r.latencies.resize(p + 1, Vec::new());
            }
            r.latencies[p].push(latency);
            r.count += 1;
        }
    };
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("r") => {
                let mut next = || words.next().and_then(|w| w.parse::<u64>().ok());
                if let (Some(p), Some(sent), Some(done)) = (next(), next(), next()) {
                    batch.push((p as usize, done.saturating_sub(sent)));
                    if batch.len() >= 1024 {
                        flush(&mut batch);
                    }
                }
            }
            Some("ready") => {
                let _ = ready.send(());
            }
            Some("end") => {
                let errors = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .consumer_errors += errors;
            }
            _ => {}
        }
        if batch.len() >= 64 {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
}

/// Creates the run's topic on an external cluster.
async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), BoxError> {
    let admin =
        AdminClient::connect(ClientConfig::new(bootstrap).client_id("hot-partition")).await?;
    admin
        .create_topics(&[smartkafka::NewTopic::new(topic, partitions)])
        .await?;
    Ok(())
}

/// One run: a fresh broker (or topic), the group's consumers, the producer.
fn run_one(
    args: &Args,
    strategy: &Strategy,
    slow: Option<SlowWindow>,
) -> Result<Outcome, BoxError> {
    let label = format!(
        "{}{}",
        strategy.name,
        if slow.is_some() { "" } else { "-no-slow" }
    );
    let topic = match args.bootstrap {
        Some(_) => format!("{}-{label}-{}", args.topic, unix_us() / 1_000_000),
        None => format!("{}-{label}", args.topic),
    };
    let group = format!("{topic}-readers");
    let spawned = match args.spawn {
        Some(broker) => Some(Spawned::start(
            broker,
            &ServeSpec {
                brokers: args.brokers,
                topics: 1,
                topic: topic.clone(),
                partitions: args.partitions,
                tls: false,
            },
        )?),
        None => None,
    };
    let bootstrap = spawned.as_ref().map_or_else(
        || args.bootstrap.clone().unwrap_or_default(),
        |s| s.bootstrap.clone(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if spawned.is_none() {
        runtime.block_on(create_topic(&bootstrap, &topic, args.partitions))?;
    }
    let received = Arc::new(Mutex::new(Received {
        latencies: vec![Vec::new(); args.partitions as usize],
        ..Received::default()
    }));
    eprintln!("hot_partition: running {label} on topic `{topic}`");
    let mut consumers = start_consumers(
        args,
        strategy.consumers_report,
        &bootstrap,
        &topic,
        &group,
        &received,
    )?;
    let cx = Context {
        topic: topic.clone(),
        group: group.clone(),
        refresh: Duration::from_secs_f64(args.refresh),
    };
    let produced = runtime.block_on(produce(
        args,
        strategy,
        &cx,
        &bootstrap,
        slow,
        &mut consumers,
    ))?;

    // Let the consumers catch up, then stop them.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < deadline
        && received.lock().unwrap_or_else(|e| e.into_inner()).count < produced.acked
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for consumer in &mut consumers {
        consumer.stop();
    }
    drop(consumers);
    drop(runtime);
    drop(spawned);
    let received = std::mem::take(&mut *received.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Outcome {
        strategy: strategy.name.to_owned(),
        slow,
        slow_partitions: args.slow_partitions.clone(),
        partitions: args.partitions,
        sent: produced.sent,
        acked: produced.acked,
        send_errors: produced.errors,
        error_samples: produced.error_samples,
        produce_secs: produced.secs,
        received,
        buckets: produced.buckets,
        lag: produced.lag,
        lag_errors: produced.lag_errors,
        routing: produced.routing,
        weights: produced.weights,
    })
}

/// What the producer side measured.
struct Produced {
    sent: u64,
    acked: u64,
    errors: u64,
    error_samples: Vec<String>,
    secs: f64,
    buckets: Vec<Vec<u64>>,
    lag: Vec<(f64, Vec<i64>)>,
    lag_errors: u64,
    routing: Option<(u64, u64)>,
    weights: Vec<(f64, f64)>,
}

/// Records, at each health update, the slow partitions' routing weight
/// together (trend scoring; updates without weights are skipped), with the
/// time since `start`.
async fn record_weights(
    mut stream: smartkafka::health::HealthStream,
    partitions: Vec<i32>,
    start: Instant,
    weights: Arc<Mutex<Vec<(f64, f64)>>>,
) {
    while let Some(snapshot) = stream.next().await {
        let sum: Option<f64> = partitions
            .iter()
            .map(|p| snapshot.get(*p).and_then(|s| s.routing()).map(|r| r.weight))
            .sum();
        if let Some(sum) = sum {
            weights
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((start.elapsed().as_secs_f64(), sum));
        }
    }
}

/// Prints, at each health update, the routing of `partitions` (trend
/// scoring) with the time since `start`.
async fn trace_routing(
    mut stream: smartkafka::health::HealthStream,
    partitions: Vec<i32>,
    start: Instant,
) {
    while let Some(snapshot) = stream.next().await {
        let mut line = format!("routing {:6.1} s:", start.elapsed().as_secs_f64());
        for p in &partitions {
            let Some(score) = snapshot.get(*p) else {
                continue;
            };
            match score.routing() {
                Some(r) => line.push_str(&format!(
                    "  p{p} {} {:.0}/s backlog {:.0} capacity {} end {} committed {}",
                    r.reason.name(),
                    r.target_rate,
                    r.backlog,
                    r.capacity.map_or("-".to_owned(), |c| format!("{c:.0}")),
                    score.lag.end,
                    score
                        .lag
                        .committed
                        .map_or("-".to_owned(), |c| c.to_string()),
                )),
                None => line.push_str(&format!("  p{p} - lag {}", score.lag.lag)),
            }
        }
        println!("{line}");
    }
}

/// Deliveries by send time: records per partition per bucket, and failures.
#[derive(Default)]
struct Deliveries {
    buckets: Vec<Vec<u64>>,
    acked: u64,
    errors: u64,
    error_samples: Vec<String>,
    last_ack: Option<Instant>,
}

type Pending = (u64, smartkafka::DeliveryFuture);

async fn produce(
    args: &Args,
    strategy: &Strategy,
    cx: &Context,
    bootstrap: &str,
    slow: Option<SlowWindow>,
    consumers: &mut [ConsumerProcess],
) -> Result<Produced, BoxError> {
    let builder = Producer::builder()
        .bootstrap_servers(bootstrap)
        .linger(Duration::from_millis(5));
    let producer = (strategy.configure)(builder, cx).build().await?;
    let admin =
        AdminClient::connect(ClientConfig::new(bootstrap).client_id("hot-partition-lag")).await?;
    let partitions: Vec<i32> = (0..args.partitions).collect();

    // The clock starts; the slow consumer learns its window.
    let start = Instant::now();
    if args.trace_routing
        && let Some(stream) = producer.health_stream()
    {
        tokio::spawn(trace_routing(stream, args.slow_partitions.clone(), start));
    }
    let weights = Arc::new(Mutex::new(Vec::new()));
    if let Some(stream) = producer.health_stream() {
        tokio::spawn(record_weights(
            stream,
            args.slow_partitions.clone(),
            start,
            Arc::clone(&weights),
        ));
    }
    let start_us = unix_us();
    for (i, consumer) in consumers.iter_mut().enumerate() {
        let line = match slow {
            Some(w) if i == 0 => format!(
                "go {} {}\n",
                start_us + (w.from * 1e6) as u64,
                start_us + (w.until * 1e6) as u64
            ),
            _ => "go 0 0\n".to_owned(),
        };
        if let Some(stdin) = consumer.stdin.as_mut() {
            stdin.write_all(line.as_bytes())?;
            stdin.flush()?;
        }
    }

    // Lag, every second.
    let stop = Arc::new(AtomicBool::new(false));
    let lag_errors = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, lag_errors) = (Arc::clone(&stop), Arc::clone(&lag_errors));
        let (topic, group, partitions) = (cx.topic.clone(), cx.group.clone(), partitions.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let last = stop.load(Ordering::Relaxed);
                let ends = admin.list_offsets(&topic, OffsetSpec::Latest).await;
                let committed = admin.committed_offsets(&group, &topic, &partitions).await;
                match (ends, committed) {
                    (Ok(ends), Ok(committed)) => {
                        let lags = partitions
                            .iter()
                            .map(|p| {
                                let end = ends.get(p).copied().unwrap_or(0);
                                let done = committed.get(p).copied().flatten().unwrap_or(0);
                                (end - done).max(0)
                            })
                            .collect();
                        samples.push((start.elapsed().as_secs_f64(), lags));
                    }
                    _ => {
                        lag_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if last {
                    return samples;
                }
            }
        })
    };

    // Deliveries, by send time.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(65_536);
    let collector = {
        let partitions = args.partitions as usize;
        tokio::spawn(async move {
            let mut d = Deliveries::default();
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    next = rx.recv(), if open => match next {
                        Some((sent_offset, future)) => {
                            pending.push(async move { (sent_offset, future.await) });
                        }
                        None => open = false,
                    },
                    Some((sent_offset, result)) = pending.next(), if !pending.is_empty() => {
                        match result {
                            Ok(meta) => {
                                let bucket = (sent_offset / BUCKET_US) as usize;
                                if d.buckets.len() <= bucket {
                                    d.buckets.resize(bucket + 1, vec![0; partitions]);
                                }
                                if let Some(n) = d.buckets[bucket].get_mut(meta.partition as usize) {
                                    *n += 1;
                                }
                                d.acked += 1;
                                d.last_ack = Some(Instant::now());
                            }
                            Err(e) => {
                                d.errors += 1;
                                if d.error_samples.len() < 3 {
                                    d.error_samples.push(e.to_string());
                                }
                            }
                        }
                    },
                    else => break,
                }
            }
            d
        })
    };

    // Send at a fixed rate.
    let value = Bytes::from(vec![b'x'; args.size]);
    let total = (args.rate * args.duration) as u64;
    let mut sent = 0u64;
    let mut send_errors = Vec::new();
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * args.rate) as u64).min(total);
        while sent < due {
            let now = unix_us();
            let record = Record::new(cx.topic.as_str())
                .value(value.clone())
                .header(SENT_HEADER, now.to_string());
            match producer.send(record).await {
                Ok(future) => {
                    if tx
                        .send((now.saturating_sub(start_us), future))
                        .await
                        .is_err()
                    {
                        return Err("the delivery collector stopped".into());
                    }
                }
                Err(e) => send_errors.push(e.to_string()),
            }
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(tx);
    producer.flush().await?;
    let mut d = collector.await?;
    stop.store(true, Ordering::Relaxed);
    let lag = sampler.await?;
    let routing = producer
        .routing_stats()
        .map(|r| (r.routed_by_health, r.fallback()));
    producer.close(Duration::from_secs(10)).await?;
    d.errors += send_errors.len() as u64;
    d.error_samples.extend(send_errors.into_iter().take(3));
    let secs = d
        .last_ack
        .map_or(args.duration, |t| t.duration_since(start).as_secs_f64());
    Ok(Produced {
        sent,
        acked: d.acked,
        errors: d.errors,
        error_samples: d.error_samples,
        secs,
        buckets: d.buckets,
        lag,
        lag_errors: lag_errors.load(Ordering::Relaxed),
        routing,
        weights: std::mem::take(&mut *weights.lock().unwrap_or_else(|e| e.into_inner())),
    })
}
