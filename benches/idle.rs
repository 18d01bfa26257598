//! What idle producers cost: N producers of one client in one process,
//! each having delivered one record (so it holds its connections and the
//! topic's metadata), then left idle. Reports the resident memory and the
//! threads the N producers added, and the CPU the process spends over an
//! idle period, as one JSON line.
//!
//! ```sh
//! cargo run --release -p smartkafka-benches --bin idle -- --client smartkafka --producers 100
//! cargo run --release -p smartkafka-benches --bin idle -- --client rdkafka --producers 100
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
    /// Internal: run the broker (see `benches/broker.rs`).
    #[arg(long, value_enum, hide = true)]
    serve: Option<Broker>,
}

/// Resident memory (KiB) and threads of this process, from /proc.
fn rss_and_threads() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
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
    let (before, after, idle_cpu) = figures;
    let n = args.producers.max(1) as f64;
    println!(
        "{{\"client\":\"{}\",\"producers\":{},\"rss_before_kib\":{},\"rss_after_kib\":{},\
         \"threads_before\":{},\"threads_after\":{},\"kib_per_producer\":{:.1},\
         \"threads_per_producer\":{:.2},\"idle_cpu_ms_per_s\":{:.2}}}",
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
    );
    Ok(())
}

/// Memory and threads before and after, and the idle CPU seconds.
type Figures = ((u64, u64), (u64, u64), f64);

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
        for producer in producers {
            producer.close(Duration::from_secs(5)).await?;
        }
        Ok((before, after, idle_cpu))
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
    drop(producers);
    Ok((before, after, idle_cpu))
}
