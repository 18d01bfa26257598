//! A producer (and consumer) load generator, in the manner of
//! `kafka-producer-perf-test` and `rdkafka_performance`, for smartkafka and
//! rust-rdkafka alike.
//!
//! ```text
//! cargo run --release -p smartkafka-benches --bin perf -- --client smartkafka --spawn mock --records 1000000 --size 100
//! cargo run --release -p smartkafka-benches --bin perf -- --client rdkafka    --spawn mock --records 1000000 --size 100
//! cargo run --release -p smartkafka-benches --bin perf -- --client smartkafka --bootstrap localhost:9092 --topic events --duration 30
//! cargo run --release -p smartkafka-benches --bin perf -- --mode consume --client smartkafka --spawn mock --records 2000000 --size 100
//! ```
//!
//! `--mode consume` first fills the topic (`--records` records, written by
//! `--fill-client` in a separate process), then reads them all back from the
//! beginning as a group consumer; see `consume.rs`.
//!
//! `--spawn mock|fake` runs the broker (the librdkafka mock cluster, or the
//! fake cluster of `protocol-tests`) as a separate child process: this same
//! binary in its hidden `--serve` mode, which prints the bootstrap address and
//! runs until its standard input closes. The client's CPU time and peak RSS
//! (getrusage of this process) then do not include the broker's.
//!
//! Payloads come from a pool of distinct JSON-like events of exactly `--size`
//! bytes, built before the clock starts. Only acknowledged records count; any
//! failed record makes the exit code non-zero.

// The clock rule is for the library's engine; a load generator times itself.
#![allow(clippy::disallowed_methods)]

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::stream::{FuturesUnordered, StreamExt};

mod broker;
mod consume;

use broker::{Broker, ServeSpec, Spawned};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    Smartkafka,
    Rdkafka,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Producing (`--records` records, or for `--duration`).
    Produce,
    /// Consuming: `--records` records are first written to the topic by
    /// `--fill-client` in a separate process, then read back from the
    /// beginning by a group consumer of `--client` (see `consume.rs`).
    Consume,
}

/// How smartkafka hands back delivery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Delivery {
    /// Tagged sends (see `--send`) and one delivery callback for the
    /// producer (the same shape as rdkafka's delivery callback with an
    /// opaque).
    Callback,
    /// `try_send` and a `DeliveryFuture` per record, awaited in order by
    /// one collector task per partition.
    Futures,
    /// The cheapest report each client offers, for both clients: a delivery
    /// callback that only counts (no clock read, no latency). smartkafka:
    /// tagged sends (see `--send`) and `on_delivery`; rdkafka: a `BaseProducer` served
    /// by one poll thread of its own. No latency is measured in this mode.
    Count,
}

/// How smartkafka's records name their topic (see `--topic-name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TopicNaming {
    /// `Topic::from_static`: clones copy a pointer.
    Static,
    /// `Topic::from(String)`: clones count references.
    Shared,
    /// A new name for each record, as `Record::new("events")` makes one
    /// from a string.
    PerRecord,
}

/// How smartkafka's tagged records are sent (see `--send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendMode {
    /// `try_send_tagged` first, `send_tagged` when the buffer is full.
    Try,
    /// `send_tagged` for every record.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArg {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all", alias = "-1")]
    All,
}

/// How records are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPattern {
    /// No key (the sticky partitioner spreads them).
    None,
    /// A random key per record, from a pool of 65,536.
    Random,
    /// `key-<i mod N>`.
    SequentialMod(u64),
}

impl FromStr for KeyPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => return Ok(KeyPattern::None),
            "random" => return Ok(KeyPattern::Random),
            _ => {}
        }
        let n = s
            .strip_prefix("sequential-mod")
            .map(|rest| rest.trim_start_matches([':', '=', ' ']))
            .ok_or_else(|| format!("`{s}`: expected none, random or sequential-mod:N"))?;
        match n.parse::<u64>() {
            Ok(n) if n > 0 => Ok(KeyPattern::SequentialMod(n)),
            _ => Err(format!(
                "`{s}`: N in sequential-mod:N must be a positive number"
            )),
        }
    }
}

impl std::fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPattern::None => write!(f, "none"),
            KeyPattern::Random => write!(f, "random"),
            KeyPattern::SequentialMod(n) => write!(f, "sequential-mod:{n}"),
        }
    }
}

/// Producer and consumer load generator for smartkafka and rust-rdkafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "perf", version)]
struct Args {
    /// Produce, or consume what a fill wrote.
    #[arg(long, value_enum, default_value = "produce")]
    mode: Mode,
    /// Which client produces (or consumes, with `--mode consume`).
    #[arg(long, value_enum, default_value = "smartkafka")]
    client: Client,
    /// Consume mode: the producer that fills the topic (in its own
    /// process, with the produce settings given here).
    #[arg(long, value_enum, default_value = "rdkafka")]
    fill_client: Client,
    /// Consume mode: fill once, then read the same records with both
    /// clients, each in a process of its own against the same broker,
    /// `--client` first; prints one report per client. Both then read
    /// identical batches, which a fill per run does not give.
    #[arg(long)]
    both: bool,
    /// Consume mode: the topic already holds what a fill of these settings
    /// wrote; read it without filling (what `--both` runs).
    #[arg(long, conflicts_with = "both")]
    no_fill: bool,
    /// Consume mode: the most records one smartkafka `poll` returns
    /// (rdkafka's `poll` returns one).
    #[arg(long, default_value_t = 500)]
    max_poll_records: usize,
    /// Consume mode: bytes per Fetch, all partitions (fetch.max.bytes).
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    max_fetch_bytes: usize,
    /// Consume mode: bytes per partition and Fetch
    /// (max.partition.fetch.bytes).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_partition_bytes: usize,
    /// Consume mode: automatic commits on both clients (5 s interval);
    /// off by default.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    auto_commit: bool,
    /// Consume mode: rdkafka check.crcs (smartkafka always verifies batch
    /// CRCs, so the default makes both do the same work).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    check_crcs: bool,
    /// An external cluster (`host:port,...`).
    #[arg(long, conflicts_with = "spawn")]
    bootstrap: Option<String>,
    /// Start a broker as a separate child process.
    #[arg(long, value_enum)]
    spawn: Option<Broker>,
    /// Brokers in a spawned cluster.
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    /// Topic to produce to (created with `--partitions` if missing).
    #[arg(long, default_value = "perf")]
    topic: String,
    /// Partitions of the topic (of each topic, with `--topics`).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Spread the records over this many topics (`TOPIC-0`, `TOPIC-1`,
    /// ...), record by record in turn; 1 uses `--topic` itself.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    topics: u16,
    /// Records to produce (consume mode: to write, then read back).
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "duration")]
    records: u64,
    /// Produce for this many seconds instead of a record count.
    #[arg(long)]
    duration: Option<f64>,
    /// Send at most this many records per second (default: as fast as
    /// possible). A paced run measures delivery latency rather than queueing.
    #[arg(long)]
    rate: Option<f64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Distinct values in the payload pool.
    #[arg(long, default_value_t = 4096)]
    pool: usize,
    /// Headers per record (names `h0`, `h1`, ..., 16-byte values), made
    /// for each record as an application does.
    #[arg(long, default_value_t = 0)]
    headers: usize,
    /// Give each record a value of its own, copied from the pool into a
    /// new allocation, as an application serializing each record does
    /// (default: clones of the pool's shared values), for both clients.
    #[arg(long)]
    fresh_values: bool,
    /// none | random | sequential-mod:N.
    #[arg(long, default_value = "sequential-mod:10000")]
    key_pattern: KeyPattern,
    /// How deliveries are reported: `callback` and `futures` choose
    /// smartkafka's way (rdkafka uses its delivery callback with a latency
    /// tally); `count` gives both clients their cheapest report.
    #[arg(long, value_enum, default_value = "callback")]
    delivery: Delivery,
    /// How smartkafka's tagged sends (`callback` and `count` reports) are
    /// made: `try` calls `try_send_tagged` and, when the buffer is full,
    /// waits with `send_tagged`; `wait` always calls `send_tagged`, which
    /// also waits while the producer's task is 16,384 records behind.
    #[arg(long, value_enum, default_value = "try")]
    send: SendMode,
    /// How smartkafka's records name their topic: `static` with
    /// `Topic::from_static` (the names are known once the run starts, as an
    /// application's topics usually are when it is built; rdkafka's records
    /// borrow the name), `shared` with one reference-counted name per topic,
    /// `per-record` with a new name for each record (`Record::new("events")`).
    #[arg(long, value_enum, default_value = "static")]
    topic_name: TopicNaming,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, value_enum, default_value = "all")]
    acks: AcksArg,
    /// Idempotence (enable.idempotence).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    idempotence: bool,
    /// Compression codec.
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
    /// Compression level (default: the codec's).
    #[arg(long)]
    level: Option<i32>,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 65_536)]
    batch_size: usize,
    /// Buffer for records not yet acknowledged, MiB (smartkafka
    /// buffer_memory; rdkafka queue.buffering.max.kbytes).
    #[arg(long, default_value_t = 64)]
    buffer_mb: usize,
    /// Records held before a send that cannot wait is refused (smartkafka
    /// max_buffered_records; rdkafka queue.buffering.max.messages).
    #[arg(long, default_value_t = 100_000)]
    queue_messages: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Worker threads of smartkafka's tokio runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// A label for the run, copied into the JSON summary.
    #[arg(long, default_value = "")]
    label: String,
    /// Print a one-line JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// TLS to the brokers, for both clients. With `--spawn fake` the broker
    /// gets a TLS listener and a certificate authority made for the run;
    /// with `--bootstrap`, give the authority with `--ca-file`.
    #[arg(long)]
    tls: bool,
    /// The PEM file of the certificate authority that signed the brokers'
    /// certificates (with `--tls`).
    #[arg(long)]
    ca_file: Option<String>,
    /// Internal: run a broker (mock or fake), print its bootstrap address,
    /// serve until stdin closes.
    #[arg(long, value_enum, hide = true)]
    serve: Option<Broker>,
}

fn main() {
    let args = Args::parse();
    if let Some(broker) = args.serve {
        serve(broker, &args);
        return;
    }
    if args.mode == Mode::Consume && args.both {
        if let Err(e) = with_broker(&args, consume::run_both) {
            eprintln!("perf: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.mode == Mode::Consume {
        match with_broker(&args, consume::run) {
            Ok(report) => {
                if args.json {
                    println!("{}", report.json(&args));
                } else {
                    report.print(&args);
                }
                if !report.complete() {
                    eprintln!("perf: not every record was consumed");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("perf: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json(&args));
            } else {
                report.print(&args);
            }
            if report.errors > 0 || report.acked != report.sent {
                eprintln!(
                    "perf: {} of {} records acknowledged, {} errors",
                    report.acked, report.sent, report.errors
                );
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("perf: {e}");
            std::process::exit(2);
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------- broker

fn serve(broker: Broker, args: &Args) {
    broker::serve(broker, &serve_spec(args));
}

fn serve_spec(args: &Args) -> ServeSpec {
    ServeSpec {
        brokers: args.brokers,
        topic: args.topic.clone(),
        topics: usize::from(args.topics),
        partitions: args.partitions,
        tls: args.tls,
    }
}

/// The topics records go to, in turn.
fn topic_names(args: &Args) -> Vec<String> {
    broker::topic_names(&args.topic, usize::from(args.topics))
}

/// The names smartkafka's records carry: one per topic for every record, as
/// an application that produces to known topics would hold them, or a new
/// one per record (see `--topic-name`). A static name is leaked once for
/// the run.
struct RecordTopics {
    names: Vec<smartkafka::Topic>,
    per_record: bool,
}

impl RecordTopics {
    fn new(args: &Args) -> RecordTopics {
        use smartkafka::Topic;
        let names = topic_names(args)
            .into_iter()
            .map(|name| match args.topic_name {
                TopicNaming::Static => Topic::from_static(Box::leak(name.into_boxed_str())),
                TopicNaming::Shared | TopicNaming::PerRecord => Topic::from(name),
            })
            .collect();
        RecordTopics {
            names,
            per_record: args.topic_name == TopicNaming::PerRecord,
        }
    }

    /// The topic of record `i`: the topics in turn.
    fn get(&self, i: u64) -> smartkafka::Topic {
        let name = &self.names[(i % self.names.len() as u64) as usize];
        if self.per_record {
            smartkafka::Topic::from(name.as_str())
        } else {
            name.clone()
        }
    }
}

// ---------------------------------------------------------------- payloads

/// A small xorshift generator: payloads and keys need variety, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "checkout", "delta", "basket", "search", "mobile", "desktop", "premium",
    "trial", "renewal", "europe", "america", "asia", "shipping", "express", "standard", "coupon",
    "refund", "review", "gift", "order", "session", "banner", "widget", "account", "profile",
    "settings", "invoice", "payment",
];
const EVENTS: &[&str] = &[
    "page_view",
    "click",
    "add_to_cart",
    "purchase",
    "login",
    "logout",
    "search",
    "signup",
];
const PATHS: &[&str] = &[
    "/",
    "/products",
    "/products/item",
    "/cart",
    "/checkout",
    "/account/orders",
    "/search",
    "/help/faq",
];

/// One JSON-like event of exactly `size` bytes (for sizes of 2 or more).
fn event(rng: &mut Rng, n: usize, size: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"id":"{:016x}","seq":{n},"user":"user-{}","event":"{}","path":"{}","amount":{}.{:02},"ts":{},"tags":["#,
        rng.next(),
        rng.below(100_000),
        EVENTS[rng.below(EVENTS.len() as u64) as usize],
        PATHS[rng.below(PATHS.len() as u64) as usize],
        rng.below(10_000),
        rng.below(100),
        1_700_000_000_000u64 + rng.below(100_000_000),
    );
    let mut first = true;
    while s.len() + 3 < size {
        if !first {
            s.push(',');
        }
        first = false;
        s.push('"');
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push('"');
    }
    s.push_str("]}");
    let mut bytes = s.into_bytes();
    if bytes.len() > size {
        bytes.truncate(size.saturating_sub(1));
        if size > 0 {
            bytes.push(b'}');
        }
    }
    while bytes.len() < size {
        bytes.insert(bytes.len() - 1, b' ');
    }
    bytes
}

struct Payloads {
    values: Vec<Bytes>,
    keys: Vec<Bytes>,
    pattern: KeyPattern,
    header_names: Vec<String>,
    header_value: Bytes,
    fresh: bool,
}

impl Payloads {
    fn new(args: &Args) -> Payloads {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let values = (0..args.pool.max(1))
            .map(|n| Bytes::from(event(&mut rng, n, args.size)))
            .collect();
        let keys = match args.key_pattern {
            KeyPattern::None => Vec::new(),
            KeyPattern::Random => (0..65_536)
                .map(|_| Bytes::from(format!("{:016x}", rng.next())))
                .collect(),
            KeyPattern::SequentialMod(n) => {
                (0..n).map(|i| Bytes::from(format!("key-{i}"))).collect()
            }
        };
        Payloads {
            header_names: (0..args.headers).map(|i| format!("h{i}")).collect(),
            header_value: Bytes::from_static(b"0123456789abcdef"),
            fresh: args.fresh_values,
            values,
            keys,
            pattern: args.key_pattern,
        }
    }

    /// `record` with this run's headers (`--headers`).
    fn with_headers(&self, mut record: smartkafka::Record) -> smartkafka::Record {
        for name in &self.header_names {
            record = record.header(name.as_str(), self.header_value.clone());
        }
        record
    }

    /// This run's headers for an rdkafka record, if any.
    fn rdkafka_headers(&self) -> Option<rdkafka::message::OwnedHeaders> {
        if self.header_names.is_empty() {
            return None;
        }
        let mut headers =
            rdkafka::message::OwnedHeaders::new_with_capacity(self.header_names.len());
        for name in &self.header_names {
            headers = headers.insert(rdkafka::message::Header {
                key: name,
                value: Some(&self.header_value[..]),
            });
        }
        Some(headers)
    }

    /// The value for smartkafka's record `i`: a clone of the pool's, or
    /// with `--fresh-values` a copy in a new allocation.
    fn owned_value(&self, i: u64) -> Bytes {
        let value = self.value(i);
        if self.fresh {
            Bytes::from(value.to_vec())
        } else {
            value.clone()
        }
    }

    fn value(&self, i: u64) -> &Bytes {
        &self.values[(i % self.values.len() as u64) as usize]
    }

    fn key(&self, i: u64) -> Option<&Bytes> {
        match self.pattern {
            KeyPattern::None => None,
            // A multiplicative hash of the index: random-looking, no state.
            KeyPattern::Random => {
                let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
                Some(&self.keys[h as usize])
            }
            KeyPattern::SequentialMod(_) => Some(&self.keys[(i % self.keys.len() as u64) as usize]),
        }
    }
}

// ---------------------------------------------------------------- latency

/// A log-linear histogram of microseconds (about 0.2 % resolution).
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    const LINEAR: u64 = 1024;
    const SUB: u64 = 512;

    fn new() -> Histogram {
        Histogram {
            counts: vec![0; (Self::LINEAR + 44 * Self::SUB) as usize],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < Self::LINEAR {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()); // >= 10
        let top = v >> (e - 9); // 512..=1023
        (Self::LINEAR + (e - 10) * Self::SUB + (top - Self::SUB)) as usize
    }

    fn value(index: usize) -> u64 {
        let i = index as u64;
        if i < Self::LINEAR {
            return i;
        }
        let e = (i - Self::LINEAR) / Self::SUB + 10;
        let top = (i - Self::LINEAR) % Self::SUB + Self::SUB;
        (top << (e - 9)) + (1 << (e - 9)) / 2
    }

    fn record(&mut self, micros: u64) {
        let i = Self::index(micros).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `q` quantile in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max) as f64 / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }
}

// ---------------------------------------------------------------- the run

struct Report {
    client: Client,
    sent: u64,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    value_bytes: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kb: i64,
    latency: Histogram,
    notes: String,
}

impl Report {
    fn records_per_sec(&self) -> f64 {
        self.acked as f64 / self.seconds
    }

    fn mb_per_sec(&self) -> f64 {
        self.value_bytes as f64 / self.seconds / 1e6
    }

    fn cpu_us_per_record(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.acked.max(1) as f64
    }

    fn print(&self, args: &Args) {
        let client = match self.client {
            Client::Smartkafka => "smartkafka",
            Client::Rdkafka => "rdkafka",
        };
        println!(
            "{client}: {} records of {} B ({}, acks={:?}, idempotence={}, linger {} ms, batch {} B, keys {})",
            self.acked,
            args.size,
            args.compression.name(),
            args.acks,
            args.idempotence,
            args.linger_ms,
            args.batch_size,
            args.key_pattern
        );
        println!(
            "  {:.0} records/s, {:.1} MB/s, {:.2} s",
            self.records_per_sec(),
            self.mb_per_sec(),
            self.seconds
        );
        println!(
            "  client CPU {:.3} us/record ({:.2} s user+sys), peak RSS {:.1} MiB",
            self.cpu_us_per_record(),
            self.cpu_seconds,
            self.peak_rss_kb as f64 / 1024.0
        );
        println!(
            "  delivery latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latency.quantile_ms(0.50),
            self.latency.quantile_ms(0.99),
            self.latency.max as f64 / 1000.0
        );
        if !self.notes.is_empty() {
            println!("  {}", self.notes);
        }
        println!(
            "  errors {}{}",
            self.errors,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
    }

    fn json(&self, args: &Args) -> String {
        let client = match self.client {
            Client::Smartkafka => "smartkafka",
            Client::Rdkafka => "rdkafka",
        };
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            concat!(
                "{{\"label\":\"{}\",\"client\":\"{}\",\"size\":{},\"compression\":\"{}\",\"level\":{},",
                "\"acks\":\"{:?}\",\"idempotence\":{},\"linger_ms\":{},\"batch_size\":{},\"partitions\":{},\"topics\":{},",
                "\"keys\":\"{}\",\"headers\":{},\"sent\":{},\"acked\":{},\"errors\":{},\"seconds\":{:.4},",
                "\"records_per_sec\":{:.1},\"mb_per_sec\":{:.3},\"cpu_seconds\":{:.4},",
                "\"cpu_us_per_record\":{:.4},\"peak_rss_kb\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},",
                "\"max_ms\":{:.3},\"first_error\":{}}}"
            ),
            escape(&args.label),
            client,
            args.size,
            args.compression.name(),
            args.level.map_or("null".to_owned(), |l| l.to_string()),
            args.acks,
            args.idempotence,
            args.linger_ms,
            args.batch_size,
            args.partitions,
            args.topics,
            args.key_pattern,
            args.headers,
            self.sent,
            self.acked,
            self.errors,
            self.seconds,
            self.records_per_sec(),
            self.mb_per_sec(),
            self.cpu_seconds,
            self.cpu_us_per_record(),
            self.peak_rss_kb,
            self.latency.quantile_ms(0.50),
            self.latency.quantile_ms(0.99),
            self.latency.max as f64 / 1000.0,
            self.first_error
                .as_ref()
                .map_or("null".to_owned(), |e| format!("\"{}\"", escape(e))),
        )
    }
}

/// user + sys CPU seconds of this process so far, and its peak RSS in KiB.
fn rusage() -> (f64, i64) {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    (
        secs(usage.user_time()) + secs(usage.system_time()),
        usage.max_rss(),
    )
}

/// Counters shared with the progress bar.
#[derive(Default)]
struct Progress {
    acked: AtomicU64,
    done: AtomicBool,
}

fn progress_bar(args: &Args, progress: Arc<Progress>) -> Option<std::thread::JoinHandle<()>> {
    if args.quiet || args.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match args.duration {
        None => indicatif::ProgressBar::new(args.records),
        Some(_) => indicatif::ProgressBar::new_spinner(),
    };
    let template = match args.duration {
        None => "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} acked, {msg}",
        Some(_) => "{spinner} [{elapsed_precise}] {human_pos} acked, {msg}",
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(std::thread::spawn(move || {
        let started = Instant::now();
        let (mut last, mut last_at) = (0, started);
        while !progress.done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let acked = progress.acked.load(Ordering::Relaxed);
            let now = Instant::now();
            let rate = (acked - last) as f64 / now.duration_since(last_at).as_secs_f64();
            (last, last_at) = (acked, now);
            bar.set_position(acked);
            bar.set_message(format!("{rate:.0} records/s"));
        }
        bar.finish_and_clear();
    }))
}

/// When the sending loop stops, and how it is paced.
struct Stop {
    records: u64,
    until: Option<Instant>,
    start: Instant,
    rate: Option<f64>,
}

impl Stop {
    fn new(args: &Args, start: Instant) -> Stop {
        match args.duration {
            Some(secs) => Stop {
                records: u64::MAX,
                until: Some(start + Duration::from_secs_f64(secs)),
                start,
                rate: args.rate,
            },
            None => Stop {
                records: args.records,
                until: None,
                start,
                rate: args.rate,
            },
        }
    }

    /// With `--rate`, how long to wait before record `i` (checked every 16).
    fn pause(&self, i: u64) -> Option<Duration> {
        let rate = self.rate?;
        if !i.is_multiple_of(16) {
            return None;
        }
        let due = self.start + Duration::from_secs_f64(i as f64 / rate);
        due.checked_duration_since(Instant::now())
    }

    /// Checked every record; reads the clock every 1024.
    fn done(&self, i: u64) -> bool {
        i >= self.records
            || (i.is_multiple_of(1024) && self.until.is_some_and(|until| Instant::now() >= until))
    }
}

/// Starts the broker (or creates the topic on an external cluster), runs
/// `f` with the bootstrap address, then stops the broker.
fn with_broker<T>(
    args: &Args,
    f: impl FnOnce(&Args, &str) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    if args.size < 2 {
        return Err("--size must be at least 2".into());
    }
    if args.tls && matches!(args.spawn, Some(Broker::Mock)) {
        return Err("the librdkafka mock cluster has no TLS listener: use --spawn fake".into());
    }
    if args.tls && args.spawn.is_none() && args.ca_file.is_none() {
        return Err("--tls with --bootstrap needs --ca-file".into());
    }
    let spawned = match (args.spawn, &args.bootstrap) {
        (Some(broker), _) => Some(Spawned::start(broker, &serve_spec(args))?),
        (None, Some(_)) => None,
        (None, None) => return Err("give --bootstrap ADDR or --spawn mock|fake".into()),
    };
    let bootstrap = spawned.as_ref().map_or_else(
        || args.bootstrap.clone().unwrap_or_default(),
        |s| s.bootstrap.clone(),
    );
    if spawned.is_none() && !args.no_fill {
        create_topic(args, &bootstrap)?;
    }
    let mut args = args.clone();
    if let Some(ca_file) = spawned.as_ref().and_then(|s| s.ca_file.clone()) {
        args.ca_file = Some(ca_file);
    }
    if args.tls && args.ca_file.is_none() {
        return Err("the broker announced no certificate authority".into());
    }
    let result = f(&args, &bootstrap);
    drop(spawned);
    result
}

fn run(args: &Args) -> Result<Report, BoxError> {
    with_broker(args, |args, bootstrap| {
        let payloads = Payloads::new(args);
        let progress = Arc::new(Progress::default());
        let report = match args.client {
            Client::Smartkafka => run_smartkafka(args, bootstrap, &payloads, &progress),
            Client::Rdkafka => run_rdkafka(args, bootstrap, &payloads, &progress),
        };
        progress.done.store(true, Ordering::Relaxed);
        report
    })
}

/// Creates the topics on an external cluster, unless they exist.
fn create_topic(args: &Args, bootstrap: &str) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin = smartkafka::AdminClient::connect(
            smartkafka::ClientConfig::new(bootstrap).client_id("perf"),
        )
        .await?;
        let topics: Vec<smartkafka::NewTopic> = topic_names(args)
            .iter()
            .map(|topic| smartkafka::NewTopic::new(topic, args.partitions))
            .collect();
        match admin.create_topics(&topics).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.kafka_code()
                    == Some(smartkafka::protocol::KafkaCode::TOPIC_ALREADY_EXISTS) =>
            {
                Ok(())
            }
            // A cluster without CreateTopics (librdkafka's mock) creates
            // the topic when the producer first asks for it.
            Err(e) if *e.kind() == smartkafka::ErrorKind::UnsupportedApi => {
                eprintln!(
                    "cannot create `{}` ({e}); relying on auto-creation",
                    args.topic
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    })
}

// ---------------------------------------------------------------- smartkafka

type Pending = (Instant, smartkafka::DeliveryFuture);

/// What one collector task saw.
struct Collected {
    latency: Histogram,
    acked: u64,
    value_bytes: u64,
    errors: u64,
    first_error: Option<String>,
    last_ack: Option<Instant>,
}

impl Collected {
    fn new() -> Collected {
        Collected {
            latency: Histogram::new(),
            acked: 0,
            value_bytes: 0,
            errors: 0,
            first_error: None,
            last_ack: None,
        }
    }

    fn settle(
        &mut self,
        sent: Instant,
        result: Result<smartkafka::RecordMetadata, smartkafka::Error>,
        value_size: u64,
        progress: &Progress,
    ) {
        match result {
            Ok(_) => {
                let now = Instant::now();
                self.acked += 1;
                self.value_bytes += value_size;
                self.latency
                    .record(now.saturating_duration_since(sent).as_micros() as u64);
                self.last_ack = Some(now);
                if self.acked.is_multiple_of(4096) {
                    progress.acked.fetch_add(4096, Ordering::Relaxed);
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Awaits the delivery futures of one partition in send order: they
/// complete in that order, so awaiting them one by one times each exactly,
/// and a whole batch costs one wake-up.
async fn collect_in_order(
    mut chunks: tokio::sync::mpsc::UnboundedReceiver<Vec<Pending>>,
    value_size: u64,
    progress: Arc<Progress>,
) -> Collected {
    let mut out = Collected::new();
    while let Some(chunk) = chunks.recv().await {
        for (sent, delivery) in chunk {
            let result = delivery.await;
            out.settle(sent, result, value_size, &progress);
        }
    }
    out
}

/// Awaits delivery futures in any order (`FuturesUnordered`), for keyless
/// records whose partition the sender does not know.
async fn collect_unordered(
    mut chunks: tokio::sync::mpsc::UnboundedReceiver<Vec<Pending>>,
    value_size: u64,
    progress: Arc<Progress>,
) -> Collected {
    let mut out = Collected::new();
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((sent, result)) = pending.next(), if !pending.is_empty() => {
                out.settle(sent, result, value_size, &progress);
            }
            chunk = chunks.recv(), if open => match chunk {
                Some(chunk) => {
                    for (sent, delivery) in chunk {
                        pending.push(async move { (sent, delivery.await) });
                    }
                }
                None => open = false,
            },
            else => break,
        }
    }
    out
}

fn run_smartkafka(
    args: &Args,
    bootstrap: &str,
    payloads: &Payloads,
    progress: &Arc<Progress>,
) -> Result<Report, BoxError> {
    use smartkafka::compression::Compression;
    use smartkafka::{Acks, ErrorKind, Producer, Record};

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        let mut builder = Producer::builder()
            .bootstrap_servers(bootstrap)
            .client_id("perf")
            .acks(match args.acks {
                AcksArg::None => Acks::None,
                AcksArg::Leader => Acks::Leader,
                AcksArg::All => Acks::All,
            })
            .idempotence(args.idempotence)
            .linger(Duration::from_millis(args.linger_ms))
            .batch_size(args.batch_size)
            .buffer_memory(args.buffer_mb << 20)
            .max_buffered_records(args.queue_messages)
            .max_in_flight(args.max_in_flight)
            .compression(match args.compression {
                Codec::None => Compression::None,
                Codec::Gzip => Compression::Gzip,
                Codec::Snappy => Compression::Snappy,
                Codec::Lz4 => Compression::Lz4,
                Codec::Zstd => Compression::Zstd,
            });
        if let (true, Some(ca_file)) = (args.tls, &args.ca_file) {
            builder = builder.tls(smartkafka::security::TlsConfig::new().ca_file(ca_file));
        }
        if let Some(level) = args.level {
            builder = builder.compression_level(level);
        }
        let tally = Arc::new(Tally::new(args.size as u64, Arc::clone(progress)));
        let counter = Arc::new(Counter::new(Arc::clone(progress)));
        match args.delivery {
            Delivery::Callback => {
                let tally = Arc::clone(&tally);
                builder = builder.on_delivery(move |sent_nanos, result| match result {
                    Ok(_) => tally.acked(sent_nanos),
                    Err(e) => tally.failed(e),
                });
            }
            Delivery::Count => {
                let counter = Arc::clone(&counter);
                builder = builder.on_delivery(move |_, result| match result {
                    Ok(_) => counter.acked(),
                    Err(e) => counter.failed(e),
                });
            }
            Delivery::Futures => {}
        }
        let producer = builder.build().await?;
        // Warm the topics' metadata so the first send does not wait for it.
        for topic in topic_names(args) {
            producer
                .send(Record::new(topic).key("warm-up").value("warm-up"))
                .await?
                .await?;
        }
        let bar = progress_bar(args, Arc::clone(progress));
        match args.delivery {
            Delivery::Callback => {
                return produce_tagged(
                    args,
                    payloads,
                    progress,
                    &producer,
                    Reports::Tally(&tally),
                    bar,
                )
                .await;
            }
            Delivery::Count => {
                return produce_tagged(
                    args,
                    payloads,
                    progress,
                    &producer,
                    Reports::Count(&counter),
                    bar,
                )
                .await;
            }
            Delivery::Futures => {}
        }

        // Keyed records: one in-order collector per partition (the lane is
        // the murmur2 partition the producer computes too). Keyless: one
        // unordered collector.
        let keyed = args.key_pattern != KeyPattern::None;
        let collectors = if keyed {
            args.partitions.max(1) as usize
        } else {
            1
        };
        let mut lanes = Vec::with_capacity(collectors);
        let mut tasks = Vec::with_capacity(collectors);
        for _ in 0..collectors {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            lanes.push(tx);
            let progress = Arc::clone(progress);
            let size = args.size as u64;
            tasks.push(if keyed {
                tokio::spawn(collect_in_order(rx, size, progress))
            } else {
                tokio::spawn(collect_unordered(rx, size, progress))
            });
        }
        let lane_of = |i: u64| -> usize {
            match payloads.key(i) {
                Some(key) => smartkafka::partitioner::murmur2_partition(key, collectors as u32)
                    .map_or(0, |p| p as usize),
                None => 0,
            }
        };

        // 32 pending deliveries (768 bytes): a chunk stays a small
        // allocation for the allocator.
        const CHUNK: usize = 32;
        let (cpu0, _) = rusage();
        let start = Instant::now();
        let stop = Stop::new(args, start);
        let mut chunks: Vec<Vec<Pending>> =
            (0..collectors).map(|_| Vec::with_capacity(CHUNK)).collect();
        let hand_over = |chunks: &mut Vec<Vec<Pending>>, lane: usize| {
            let chunk = std::mem::replace(&mut chunks[lane], Vec::with_capacity(CHUNK));
            let _ = lanes[lane].send(chunk);
        };
        let topics = RecordTopics::new(args);
        let mut i = 0u64;
        while !stop.done(i) {
            if let Some(pause) = stop.pause(i) {
                for lane in 0..collectors {
                    if !chunks[lane].is_empty() {
                        hand_over(&mut chunks, lane);
                    }
                }
                // The same pacing as the rdkafka loop: this task runs on the
                // main thread (block_on), not on a runtime worker, and the
                // thread's sleep is finer than tokio's 1 ms timer.
                std::thread::sleep(pause);
            }
            let mut record = Record::new(topics.get(i)).value(payloads.owned_value(i));
            if let Some(key) = payloads.key(i) {
                record = record.key(key.clone());
            }
            let record = payloads.with_headers(record);
            let sent = Instant::now();
            let delivery = match producer.try_send(record) {
                Ok(delivery) => delivery,
                Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                    // Full: hand over what we hold, then wait for space.
                    for lane in 0..collectors {
                        if !chunks[lane].is_empty() {
                            hand_over(&mut chunks, lane);
                        }
                    }
                    let mut record = Record::new(topics.get(i)).value(payloads.owned_value(i));
                    if let Some(key) = payloads.key(i) {
                        record = record.key(key.clone());
                    }
                    producer.send(payloads.with_headers(record)).await?
                }
                Err(e) => return Err(e.into()),
            };
            let lane = lane_of(i);
            chunks[lane].push((sent, delivery));
            if chunks[lane].len() == CHUNK || args.rate.is_some() {
                hand_over(&mut chunks, lane);
            }
            i += 1;
        }
        for lane in 0..collectors {
            if !chunks[lane].is_empty() {
                hand_over(&mut chunks, lane);
            }
        }
        drop(lanes);
        let mut latency = Histogram::new();
        let (mut acked, mut value_bytes, mut errors) = (0, 0, 0);
        let mut first_error = None;
        let mut end = start;
        for task in tasks {
            let c = task.await?;
            latency.merge(&c.latency);
            acked += c.acked;
            value_bytes += c.value_bytes;
            errors += c.errors;
            first_error = first_error.or(c.first_error);
            if let Some(t) = c.last_ack {
                end = end.max(t);
            }
        }
        let seconds = end.saturating_duration_since(start).as_secs_f64();
        let (cpu1, peak_rss_kb) = rusage();
        progress.done.store(true, Ordering::Relaxed);
        if let Some(bar) = bar {
            let _ = bar.join();
        }
        let stats = producer.stats();
        producer.close(Duration::from_secs(10)).await?;
        Ok(Report {
            client: Client::Smartkafka,
            sent: i,
            acked,
            errors: errors + stats.errors,
            first_error,
            value_bytes,
            seconds,
            cpu_seconds: cpu1 - cpu0,
            peak_rss_kb,
            latency,
            notes: smartkafka_notes(&stats),
        })
    })
}

/// Where a callback's delivery reports go.
enum Reports<'a> {
    /// Tags are send times; latency is measured.
    Tally(&'a Tally),
    /// Tags are unused; reports are only counted.
    Count(&'a Counter),
}

/// The smartkafka loop with `--delivery callback` or `count`: with a tally,
/// each record's tag is its send time and the callback records the latency;
/// with a counter, the callback only counts.
async fn produce_tagged(
    args: &Args,
    payloads: &Payloads,
    progress: &Arc<Progress>,
    producer: &smartkafka::Producer,
    reports: Reports<'_>,
    bar: Option<std::thread::JoinHandle<()>>,
) -> Result<Report, BoxError> {
    use smartkafka::{ErrorKind, Record};

    let (cpu0, _) = rusage();
    let start = Instant::now();
    let stop = Stop::new(args, start);
    let topics = RecordTopics::new(args);
    let record = |i: u64| {
        let record = Record::new(topics.get(i)).value(payloads.owned_value(i));
        payloads.with_headers(match payloads.key(i) {
            Some(key) => record.key(key.clone()),
            None => record,
        })
    };
    let mut i = 0u64;
    while !stop.done(i) {
        if let Some(pause) = stop.pause(i) {
            std::thread::sleep(pause);
        }
        let sent = match reports {
            Reports::Tally(tally) => Instant::now()
                .saturating_duration_since(tally.start)
                .as_nanos() as u64,
            Reports::Count(_) => 0,
        };
        match args.send {
            SendMode::Try => match producer.try_send_tagged(record(i), sent) {
                Ok(()) => {}
                // Full: wait for space.
                Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                    producer.send_tagged(record(i), sent).await?;
                }
                Err(e) => return Err(e.into()),
            },
            // Returns at once while there is room; waits while the buffer
            // is full or the producer's task is behind.
            SendMode::Wait => producer.send_tagged(record(i), sent).await?,
        }
        i += 1;
    }
    producer.flush().await?;
    let flushed = Instant::now();
    let (cpu1, peak_rss_kb) = rusage();
    progress.done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    let state = match reports {
        Reports::Tally(tally) => tally.take(),
        Reports::Count(counter) => counter.take(flushed),
    };
    let stats = producer.stats();
    producer.close(Duration::from_secs(10)).await?;
    let end = state.last_ack.unwrap_or(start);
    Ok(Report {
        client: Client::Smartkafka,
        sent: i,
        acked: state.acked,
        errors: state.errors + stats.errors,
        first_error: state.first_error,
        value_bytes: state.acked * args.size as u64,
        seconds: end.saturating_duration_since(start).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        peak_rss_kb,
        latency: state.latency,
        notes: smartkafka_notes(&stats),
    })
}

fn smartkafka_notes(stats: &smartkafka::ProducerStats) -> String {
    format!(
        "{} batches, {} requests, {} records and {} bytes per batch, {} retries",
        stats.batches_sent,
        stats.requests_sent,
        stats.avg_batch_records(),
        stats.avg_batch_bytes(),
        stats.retries
    )
}

// ---------------------------------------------------------------- rdkafka

/// Delivery reports as a client's callback sees them (rdkafka's polling
/// thread, smartkafka's task): the tag of each record is the nanoseconds
/// from `start` to its send.
struct Tally {
    start: Instant,
    value_size: u64,
    progress: Arc<Progress>,
    state: Mutex<TallyState>,
}

#[derive(Default)]
struct TallyState {
    latency: Histogram,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    last_ack: Option<Instant>,
}

impl Tally {
    fn new(value_size: u64, progress: Arc<Progress>) -> Tally {
        Tally {
            start: Instant::now(),
            value_size,
            progress,
            state: Mutex::new(TallyState::default()),
        }
    }

    fn acked(&self, sent_nanos: u64) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.acked += 1;
        let sent = self.start + Duration::from_nanos(sent_nanos);
        state
            .latency
            .record(now.saturating_duration_since(sent).as_micros() as u64);
        state.last_ack = Some(now);
        if state.acked.is_multiple_of(4096) {
            self.progress.acked.fetch_add(4096, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.errors += 1;
        state.first_error.get_or_insert_with(|| error.to_string());
    }

    /// What was counted so far; the tally starts again from zero.
    fn take(&self) -> TallyState {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Delivery reports only counted (`--delivery count`): atomics, no clock
/// read and no lock on the success path. The run ends when `flush` returns.
struct Counter {
    progress: Arc<Progress>,
    acked: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counter {
    fn new(progress: Arc<Progress>) -> Counter {
        Counter {
            progress,
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn acked(&self) {
        let n = self.acked.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(4096) {
            self.progress.acked.fetch_add(4096, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| error.to_string());
    }

    /// The counts as a tally (no latency), the run ending at `flushed`.
    fn take(&self, flushed: Instant) -> TallyState {
        TallyState {
            latency: Histogram::new(),
            acked: self.acked.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            last_ack: Some(flushed),
        }
    }
}

impl rdkafka::ClientContext for Counter {}

impl rdkafka::producer::ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.acked(),
            Err((e, _)) => self.failed(e),
        }
    }
}

impl rdkafka::ClientContext for Tally {}

impl rdkafka::producer::ProducerContext for Tally {
    /// Nanoseconds from the start of the run to the send.
    type DeliveryOpaque = usize;

    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        sent_nanos: Self::DeliveryOpaque,
    ) {
        match result {
            Ok(_) => self.acked(sent_nanos as u64),
            Err((e, _)) => self.failed(e),
        }
    }
}

// rdkafka's `send` hands the record back in its error; that size is rdkafka's.
#[allow(clippy::result_large_err)]
fn run_rdkafka(
    args: &Args,
    bootstrap: &str,
    payloads: &Payloads,
    progress: &Arc<Progress>,
) -> Result<Report, BoxError> {
    use rdkafka::producer::{Producer as _, ThreadedProducer};
    use rdkafka::util::Timeout;

    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "perf")
        .set(
            "acks",
            match args.acks {
                AcksArg::None => "0",
                AcksArg::Leader => "1",
                AcksArg::All => "all",
            },
        )
        .set("enable.idempotence", args.idempotence.to_string())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set(
            "queue.buffering.max.kbytes",
            (args.buffer_mb * 1024).to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            args.queue_messages.to_string(),
        )
        .set(
            "max.in.flight.requests.per.connection",
            args.max_in_flight.to_string(),
        )
        // The Java client's (and smartkafka's) partitioner for keyed records.
        .set("partitioner", "murmur2_random")
        .set("compression.type", args.compression.name());
    if let Some(level) = args.level {
        config.set("compression.level", level.to_string());
    }
    if let (true, Some(ca_file)) = (args.tls, &args.ca_file) {
        config
            .set("security.protocol", "ssl")
            .set("ssl.ca.location", ca_file);
    }
    if args.delivery == Delivery::Count {
        return run_rdkafka_counted(args, &config, payloads, progress);
    }
    let context = Tally::new(args.size as u64, Arc::clone(progress));
    let producer: ThreadedProducer<Tally> = config.create_with_context(context)?;
    let topics = topic_names(args);
    rdkafka_warm_up(
        &producer,
        &topics,
        || 0usize,
        |record| producer.send(record),
    )?;
    producer.context().take();
    let bar = progress_bar(args, Arc::clone(progress));

    let origin = producer.context().start;
    let (cpu0, _) = rusage();
    let start = Instant::now();
    let i = rdkafka_send_all(
        args,
        payloads,
        &topics,
        start,
        || Instant::now().saturating_duration_since(origin).as_nanos() as usize,
        |record| producer.send(record),
    )?;
    producer.flush(Timeout::After(Duration::from_secs(120)))?;
    let (cpu1, peak_rss_kb) = rusage();
    progress.done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    let state = producer.context().take();
    let end = state.last_ack.unwrap_or(start);
    let value_bytes = state.acked * producer.context().value_size;
    Ok(Report {
        client: Client::Rdkafka,
        sent: i,
        acked: state.acked,
        errors: state.errors,
        first_error: state.first_error,
        value_bytes,
        seconds: end.saturating_duration_since(start).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        peak_rss_kb,
        latency: state.latency,
        notes: String::new(),
    })
}

/// rdkafka with its cheapest report path (`--delivery count`): a
/// `BaseProducer` whose delivery callback only counts, served by one poll
/// thread of our own; the sending loop never polls.
// rdkafka's `send` hands the record back in its error; that size is rdkafka's.
#[allow(clippy::result_large_err)]
fn run_rdkafka_counted(
    args: &Args,
    config: &rdkafka::ClientConfig,
    payloads: &Payloads,
    progress: &Arc<Progress>,
) -> Result<Report, BoxError> {
    use rdkafka::producer::{BaseProducer, Producer as _};
    use rdkafka::util::Timeout;

    let producer: Arc<BaseProducer<Counter>> =
        Arc::new(config.create_with_context(Counter::new(Arc::clone(progress)))?);
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let producer = Arc::clone(&producer);
        let polling = Arc::clone(&polling);
        std::thread::Builder::new()
            .name("rdkafka-poll".into())
            .spawn(move || {
                while polling.load(Ordering::Relaxed) {
                    producer.poll(Duration::from_millis(100));
                }
            })?
    };
    let topics = topic_names(args);
    rdkafka_warm_up(&*producer, &topics, || (), |record| producer.send(record))?;
    producer.context().take(Instant::now());
    let bar = progress_bar(args, Arc::clone(progress));

    let (cpu0, _) = rusage();
    let start = Instant::now();
    let i = rdkafka_send_all(
        args,
        payloads,
        &topics,
        start,
        || (),
        |record| producer.send(record),
    )?;
    producer.flush(Timeout::After(Duration::from_secs(120)))?;
    let flushed = Instant::now();
    let (cpu1, peak_rss_kb) = rusage();
    polling.store(false, Ordering::Relaxed);
    let _ = poller.join();
    progress.done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    let state = producer.context().take(flushed);
    Ok(Report {
        client: Client::Rdkafka,
        sent: i,
        acked: state.acked,
        errors: state.errors,
        first_error: state.first_error,
        value_bytes: state.acked * args.size as u64,
        seconds: flushed.saturating_duration_since(start).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        peak_rss_kb,
        latency: state.latency,
        notes: String::new(),
    })
}

/// A record as rdkafka's `send` takes it, with delivery opaque `O`.
type RdRecord<'a, O> = rdkafka::producer::BaseRecord<'a, [u8], [u8], O>;

/// Connects and learns the topics before the clock starts, then delivers
/// one record to each (through `send`, the producer's own) so the producer
/// id is in place too.
#[allow(clippy::result_large_err)]
fn rdkafka_warm_up<C, O>(
    producer: &impl rdkafka::producer::Producer<C>,
    topics: &[String],
    mut opaque: impl FnMut() -> O,
    mut send: impl FnMut(RdRecord<'_, O>) -> Result<(), (rdkafka::error::KafkaError, RdRecord<'_, O>)>,
) -> Result<(), BoxError>
where
    C: rdkafka::producer::ProducerContext,
    O: rdkafka::util::IntoOpaque,
{
    for topic in topics {
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let record = RdRecord::with_opaque_to(topic, opaque())
            .key(&b"warm-up"[..])
            .payload(&b"warm-up"[..]);
        send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(rdkafka::util::Timeout::After(Duration::from_secs(10)))?;
    Ok(())
}

/// rdkafka's sending loop, for both report paths: sends the run's records
/// with `send` (the producer's own), each tagged with `opaque()`, waiting
/// briefly whenever the queue is full; returns how many were sent.
fn rdkafka_send_all<O: rdkafka::util::IntoOpaque>(
    args: &Args,
    payloads: &Payloads,
    topics: &[String],
    start: Instant,
    mut opaque: impl FnMut() -> O,
    mut send: impl FnMut(RdRecord<'_, O>) -> Result<(), (rdkafka::error::KafkaError, RdRecord<'_, O>)>,
) -> Result<u64, BoxError> {
    use rdkafka::types::RDKafkaErrorCode;

    let stop = Stop::new(args, start);
    let mut i = 0u64;
    while !stop.done(i) {
        if let Some(pause) = stop.pause(i) {
            std::thread::sleep(pause);
        }
        // With `--fresh-values` the application's value is a new allocation
        // here too (rdkafka copies it, and it is freed on this thread).
        let fresh: Vec<u8>;
        let value: &[u8] = if payloads.fresh {
            fresh = payloads.value(i).to_vec();
            &fresh
        } else {
            payloads.value(i)
        };
        let topic = &topics[(i % topics.len() as u64) as usize];
        let mut record = RdRecord::with_opaque_to(topic, opaque()).payload(value);
        if let Some(key) = payloads.key(i) {
            record = record.key(&key[..]);
        }
        if let Some(headers) = payloads.rdkafka_headers() {
            record = record.headers(headers);
        }
        loop {
            match send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        i += 1;
    }
    Ok(i)
}
