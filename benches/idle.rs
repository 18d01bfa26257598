//! What idle producers cost: N producers of one client in one process,
//! each having delivered one record (so it holds its connections and the
//! topic's metadata), then left idle. Reports the resident memory and the
//! threads the N producers added, and the CPU the process spends over an
//! idle period, as one JSON line.
//!
//! With `--send N`, every producer then sends N records of 100 bytes at
//! once (one sending loop handing records to the producers in turn, each
//! producer's reports discarded, then every producer flushed), and the line
//! also has the total records per second, the CPU per record and the peak
//! resident memory of that phase.
//!
//! ```sh
//! cargo run --release -p smartkafka-benches --bin idle -- --client smartkafka --producers 100
//! cargo run --release -p smartkafka-benches --bin idle -- --client rdkafka --producers 100
//! cargo run --release -p smartkafka-benches --bin idle -- --client rdkafka --producers 100 --send 10000
//! ```
//!
//! The broker (the librdkafka mock cluster by default) runs in a child
//! process started from this same binary (`benches/broker.rs`), so its
//! memory and threads are not counted.

// The clock rule is for the library's engine; a bench tool times itself.
#![allow(clippy::disallowed_methods)]

// Shared with the other bench binaries; this one uses no TLS broker.
#[allow(dead_code)]
mod broker;

use std::time::Duration;

use broker::{Broker, ServeSpec, Spawned};
use clap::{Parser, ValueEnum};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    Smartkafka,
    Rdkafka,
}

#[derive(Debug, Parser)]
#[command(about = "Memory, threads and idle CPU of N producers in one process")]
struct Args {
    /// Which client's producers.
    #[arg(long, value_enum, default_value = "smartkafka")]
    client: Client,
    /// How many producers.
    #[arg(long, default_value_t = 100)]
    producers: usize,
    /// Seconds the producers stay idle while the CPU is measured.
    #[arg(long, default_value_t = 5.0)]
    idle_seconds: f64,
    /// The broker to start in a child process.
    #[arg(long, value_enum, default_value = "mock")]
    spawn: Broker,
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    /// The topic.
    #[arg(long, default_value = "idle")]
    topic: String,
    /// Topics (see `broker::topic_names`).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// A TLS listener (fake cluster only; not used by this tool's clients).
    #[arg(long)]
    tls: bool,
    /// Records each producer sends after the idle period (0: none).
    #[arg(long, default_value_t = 0)]
    send: u64,
    /// Internal: run the broker (see `benches/broker.rs`).
    #[arg(long, value_enum, hide = true)]
    serve: Option<Broker>,
}

/// A number field of this process's `/proc/self/status` (`VmRSS:`,
/// `VmHWM:`, `Threads:`), 0 when it cannot be read.
fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory (KiB) and threads of this process, from /proc.
fn rss_and_threads() -> (u64, u64) {
    (status_field("VmRSS:"), status_field("Threads:"))
}

/// CPU seconds used by this process so far (user + system).
fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let spec = ServeSpec {
        brokers: args.brokers,
        topic: args.topic.clone(),
        topics: args.topics,
        partitions: args.partitions,
        tls: args.tls,
    };
    if let Some(broker) = args.serve {
        broker::serve(broker, &spec);
        return Ok(());
    }
    let cluster = Spawned::start(args.spawn, &spec)?;
    let idle = Duration::from_secs_f64(args.idle_seconds);
    let figures = match args.client {
        Client::Smartkafka => smartkafka_producers(&args, &cluster.bootstrap, idle)?,
        Client::Rdkafka => rdkafka_producers(&args, &cluster.bootstrap, idle)?,
    };
    let (before, after, idle_cpu, sending) = figures;
    let n = args.producers.max(1) as f64;
    let records = args.send * args.producers as u64;
    let (records_per_sec, cpu_us_per_record) = match sending {
        Some(Sending {
            seconds,
            cpu_seconds,
        }) if records > 0 => (records as f64 / seconds, cpu_seconds * 1e6 / records as f64),
        _ => (0.0, 0.0),
    };
    println!(
        "{{\"client\":\"{}\",\"producers\":{},\"rss_before_kib\":{},\"rss_after_kib\":{},\
         \"threads_before\":{},\"threads_after\":{},\"kib_per_producer\":{:.1},\
         \"threads_per_producer\":{:.2},\"idle_cpu_ms_per_s\":{:.2},\"sent\":{},\
         \"records_per_sec\":{:.0},\"cpu_us_per_record\":{:.3},\"peak_rss_kib\":{}}}",
        match args.client {
            Client::Smartkafka => "smartkafka",
            Client::Rdkafka => "rdkafka",
        },
        args.producers,
        before.0,
        after.0,
        before.1,
        after.1,
        after.0.saturating_sub(before.0) as f64 / n,
        after.1.saturating_sub(before.1) as f64 / n,
        idle_cpu * 1000.0 / args.idle_seconds.max(0.001),
        records,
        records_per_sec,
        cpu_us_per_record,
        status_field("VmHWM:"),
    );
    Ok(())
}

/// The sending phase: wall-clock and CPU seconds from the first record to
/// the last producer flushed.
struct Sending {
    seconds: f64,
    cpu_seconds: f64,
}

/// When a sending phase started, by the wall clock and the process's CPU.
struct Started {
    at: std::time::Instant,
    cpu_seconds: f64,
}

impl Started {
    fn now() -> Started {
        Started {
            at: std::time::Instant::now(),
            cpu_seconds: cpu_seconds(),
        }
    }

    /// The phase from then to now.
    fn sending(self) -> Sending {
        Sending {
            seconds: self.at.elapsed().as_secs_f64(),
            cpu_seconds: cpu_seconds() - self.cpu_seconds,
        }
    }
}

/// The 100-byte value every sent record carries.
const VALUE: [u8; 100] = [b'v'; 100];

/// Memory and threads before and after, the idle CPU seconds, and the
/// sending phase when there was one.
type Figures = ((u64, u64), (u64, u64), f64, Option<Sending>);

fn smartkafka_producers(args: &Args, bootstrap: &str, idle: Duration) -> Result<Figures, BoxError> {
    use smartkafka::{Producer, Record};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The runtime's worker threads exist before the first producer.
        tokio::task::yield_now().await;
        let before = rss_and_threads();
        let mut producers = Vec::with_capacity(args.producers);
        for i in 0..args.producers {
            let producer = Producer::builder()
                .bootstrap_servers(bootstrap)
                .client_id(format!("idle-{i}"))
                .build()
                .await?;
            producer
                .send(
                    Record::new(args.topic.as_str())
                        .key(i.to_string())
                        .value("x"),
                )
                .await?
                .await?;
            producers.push(producer);
        }
        let cpu0 = cpu_seconds();
        tokio::time::sleep(idle).await;
        let idle_cpu = cpu_seconds() - cpu0;
        let after = rss_and_threads();
        let sending = if args.send > 0 {
            let topic = smartkafka::Topic::from(args.topic.as_str());
            let keys: Vec<bytes::Bytes> = (0..10_000)
                .map(|k| bytes::Bytes::from(format!("key-{k}")))
                .collect();
            let value = bytes::Bytes::from_static(&VALUE);
            let started = Started::now();
            for i in 0..args.send * producers.len() as u64 {
                let producer = &producers[(i % producers.len() as u64) as usize];
                let record = || {
                    Record::new(topic.clone())
                        .key(keys[(i % keys.len() as u64) as usize].clone())
                        .value(value.clone())
                };
                // The report is not awaited: only the flush below counts.
                match producer.try_send(record()) {
                    Ok(_) => {}
                    Err(e) if *e.kind() == smartkafka::ErrorKind::BufferExhausted => {
                        drop(producer.send(record()).await?);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for producer in &producers {
                producer.flush().await?;
            }
            Some(started.sending())
        } else {
            None
        };
        for producer in producers {
            producer.close(Duration::from_secs(5)).await?;
        }
        Ok::<_, BoxError>((before, after, idle_cpu, sending))
    })
}

fn rdkafka_producers(args: &Args, bootstrap: &str, idle: Duration) -> Result<Figures, BoxError> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    use rdkafka::util::Timeout;
    let before = rss_and_threads();
    let mut producers: Vec<BaseProducer> = Vec::with_capacity(args.producers);
    for i in 0..args.producers {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", format!("idle-{i}"))
            .create()?;
        producer
            .send(BaseRecord::to(&args.topic).key(&i.to_string()).payload("x"))
            .map_err(|(e, _)| e)?;
        producer.flush(Timeout::After(Duration::from_secs(10)))?;
        producers.push(producer);
    }
    let cpu0 = cpu_seconds();
    std::thread::sleep(idle);
    let idle_cpu = cpu_seconds() - cpu0;
    let after = rss_and_threads();
    let sending = if args.send > 0 {
        let keys: Vec<String> = (0..10_000).map(|k| format!("key-{k}")).collect();
        let started = Started::now();
        for i in 0..args.send * producers.len() as u64 {
            let producer = &producers[(i % producers.len() as u64) as usize];
            let key = &keys[(i % keys.len() as u64) as usize];
            let mut record = BaseRecord::to(&args.topic).key(key).payload(&VALUE[..]);
            // The reports are served by the flush below; a full queue
            // is served here and the record tried again.
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        for producer in &producers {
            producer.flush(Timeout::After(Duration::from_secs(60)))?;
        }
        Some(started.sending())
    } else {
        None
    };
    drop(producers);
    Ok((before, after, idle_cpu, sending))
}
