//! `perf --mode consume`: fill a topic, then read it all back from the
//! beginning as a group consumer, smartkafka's [`Consumer`] or rust-rdkafka's
//! `BaseConsumer`.
//!
//! The fill runs in a separate process (this binary in produce mode, with
//! `--fill-client` as the producer), so neither its CPU time nor its memory
//! lands in the consumer's figures; the broker has its own process too.
//! What is counted is this process alone, from just before the consumer is
//! created until the last expected record has been returned to the loop:
//! user + sys CPU (getrusage before and after) and peak RSS. The rate is
//! taken from the first record returned to the last, and the time to the
//! first record (connecting, joining the group, the first fetch) is
//! reported on its own.
//!
//! [`Consumer`]: smartkafka::consumer::Consumer

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Args, BoxError, Client, rusage};

/// How long the loop waits for the first record (the group join included),
/// and then between two records, before it gives up.
const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The producer of the fill writes one warm-up record before the counted
/// ones (see `run_smartkafka` and `run_rdkafka`), so the topic holds one
/// record more than `--records`.
const WARM_UP_RECORDS: u64 = 1;

pub(super) struct ConsumeReport {
    client: Client,
    /// Records the topic holds (the fill's and its warm-up record).
    expected: u64,
    consumed: u64,
    value_bytes: u64,
    /// From the first record returned to the last.
    seconds: f64,
    /// From creating the consumer to the first record returned.
    first_record_seconds: f64,
    cpu_seconds: f64,
    peak_rss_kb: i64,
    fill_seconds: f64,
    fill_records_per_sec: f64,
}

impl ConsumeReport {
    pub(super) fn complete(&self) -> bool {
        self.consumed == self.expected
    }

    fn records_per_sec(&self) -> f64 {
        self.consumed as f64 / self.seconds
    }

    fn mb_per_sec(&self) -> f64 {
        self.value_bytes as f64 / self.seconds / 1e6
    }

    fn cpu_us_per_record(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.consumed.max(1) as f64
    }

    fn client_name(&self) -> &'static str {
        match self.client {
            Client::Smartkafka => "smartkafka",
            Client::Rdkafka => "rdkafka",
        }
    }

    pub(super) fn print(&self, args: &Args) {
        println!(
            "{} consumer: {} of {} records of {} B ({}), max_poll_records {} (smartkafka), auto-commit {}",
            self.client_name(),
            self.consumed,
            self.expected,
            args.size,
            args.compression.name(),
            args.max_poll_records,
            args.auto_commit,
        );
        println!(
            "  {:.0} records/s, {:.1} MB/s, {:.2} s (first record after {:.2} s)",
            self.records_per_sec(),
            self.mb_per_sec(),
            self.seconds,
            self.first_record_seconds
        );
        println!(
            "  client CPU {:.3} us/record ({:.2} s user+sys), peak RSS {:.1} MiB",
            self.cpu_us_per_record(),
            self.cpu_seconds,
            self.peak_rss_kb as f64 / 1024.0
        );
        println!(
            "  fill ({} producer, own process): {:.2} s, {:.0} records/s",
            match args.fill_client {
                Client::Smartkafka => "smartkafka",
                Client::Rdkafka => "rdkafka",
            },
            self.fill_seconds,
            self.fill_records_per_sec
        );
    }

    pub(super) fn json(&self, args: &Args) -> String {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            concat!(
                "{{\"label\":\"{}\",\"mode\":\"consume\",\"client\":\"{}\",\"size\":{},",
                "\"compression\":\"{}\",\"level\":{},\"partitions\":{},\"expected\":{},",
                "\"consumed\":{},\"errors\":{},\"seconds\":{:.4},\"first_record_seconds\":{:.4},",
                "\"records_per_sec\":{:.1},\"mb_per_sec\":{:.3},\"cpu_seconds\":{:.4},",
                "\"cpu_us_per_record\":{:.4},\"peak_rss_kb\":{},\"max_poll_records\":{},",
                "\"auto_commit\":{},\"check_crcs\":{},\"fill_seconds\":{:.4}}}"
            ),
            escape(&args.label),
            self.client_name(),
            args.size,
            args.compression.name(),
            args.level.map_or("null".to_owned(), |l| l.to_string()),
            args.partitions,
            self.expected,
            self.consumed,
            u64::from(!self.complete()),
            self.seconds,
            self.first_record_seconds,
            self.records_per_sec(),
            self.mb_per_sec(),
            self.cpu_seconds,
            self.cpu_us_per_record(),
            self.peak_rss_kb,
            args.max_poll_records,
            args.auto_commit,
            args.check_crcs,
            self.fill_seconds,
        )
    }
}

/// What the loop counted. The clock is read at the first record, at the
/// last expected one and on empty polls, not per record (rdkafka returns
/// records one at a time).
struct Counted {
    consumed: u64,
    value_bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The count at the last empty poll, and when it last changed.
    seen: u64,
    progress_at: Instant,
}

impl Counted {
    fn new(created: Instant) -> Counted {
        Counted {
            consumed: 0,
            value_bytes: 0,
            first: None,
            last: None,
            seen: 0,
            progress_at: created,
        }
    }

    /// After a poll that returned `records` records.
    fn returned(&mut self, records: u64, value_bytes: u64) {
        if records == 0 {
            return;
        }
        if self.first.is_none() {
            self.first = Some(Instant::now());
        }
        self.consumed += records;
        self.value_bytes += value_bytes;
    }

    /// The loop is over: the last expected record has been returned.
    fn finished(&mut self) {
        self.last = Some(Instant::now());
    }

    /// After an empty poll: whether the loop should give up (no record for
    /// the timeout).
    fn stalled(&mut self) -> bool {
        let now = Instant::now();
        if self.consumed != self.seen {
            self.seen = self.consumed;
            self.progress_at = now;
            return false;
        }
        let limit = if self.first.is_none() {
            FIRST_RECORD_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        now.saturating_duration_since(self.progress_at) > limit
    }
}

pub(super) fn run(args: &Args, bootstrap: &str) -> Result<ConsumeReport, BoxError> {
    let (fill_seconds, fill_records_per_sec) = if args.no_fill {
        (0.0, 0.0)
    } else {
        fill(args, bootstrap)?
    };
    let expected = args.records + WARM_UP_RECORDS;
    let group = format!("perf-consume-{}", std::process::id());
    let (cpu0, _) = rusage();
    let created = Instant::now();
    let counted = match args.client {
        Client::Smartkafka => consume_smartkafka(args, bootstrap, &group, expected, created)?,
        Client::Rdkafka => consume_rdkafka(args, bootstrap, &group, expected, created)?,
    };
    let (cpu1, peak_rss_kb) = (counted.1, counted.2);
    let counted = counted.0;
    let first = counted.first.unwrap_or(created);
    let last = counted.last.unwrap_or(first);
    Ok(ConsumeReport {
        client: args.client,
        expected,
        consumed: counted.consumed,
        value_bytes: counted.value_bytes,
        seconds: last.saturating_duration_since(first).as_secs_f64(),
        first_record_seconds: first.saturating_duration_since(created).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        peak_rss_kb,
        fill_seconds,
        fill_records_per_sec,
    })
}

/// `--both`: fills the topic once, then reads it with `--client` and then
/// the other client, each as this binary in a process of its own
/// (`--bootstrap` the same broker, `--no-fill`), and prints their reports.
pub(super) fn run_both(args: &Args, bootstrap: &str) -> Result<(), BoxError> {
    let (fill_seconds, _) = fill(args, bootstrap)?;
    let order = match args.client {
        Client::Smartkafka => [Client::Smartkafka, Client::Rdkafka],
        Client::Rdkafka => [Client::Rdkafka, Client::Smartkafka],
    };
    // This run's own arguments, less those that pick the broker, the
    // client and the pairing.
    let mut passed = Vec::new();
    let mut skip_value = false;
    for arg in std::env::args().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.as_str() {
            "--both" => {}
            "--spawn" | "--client" | "--bootstrap" => skip_value = true,
            a if a.starts_with("--spawn=")
                || a.starts_with("--client=")
                || a.starts_with("--bootstrap=") => {}
            _ => passed.push(arg),
        }
    }
    for client in order {
        let output = Command::new(std::env::current_exe()?)
            .args(&passed)
            .args(["--bootstrap", bootstrap, "--no-fill"])
            .args([
                "--client",
                match client {
                    Client::Smartkafka => "smartkafka",
                    Client::Rdkafka => "rdkafka",
                },
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        if !output.status.success() {
            return Err(format!("the {client:?} reader failed ({})", output.status).into());
        }
    }
    if !args.quiet {
        eprintln!("fill (once, for both): {fill_seconds:.2} s");
    }
    Ok(())
}

/// Fills the topic with `--records` records: this binary in produce mode
/// against the same cluster. Returns its time and rate.
fn fill(args: &Args, bootstrap: &str) -> Result<(f64, f64), BoxError> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(["--mode", "produce"])
        .args([
            "--client",
            match args.fill_client {
                Client::Smartkafka => "smartkafka",
                Client::Rdkafka => "rdkafka",
            },
        ])
        .args(["--bootstrap", bootstrap])
        .args(["--topic", &args.topic])
        .args(["--partitions", &args.partitions.to_string()])
        .args(["--records", &args.records.to_string()])
        .args(["--size", &args.size.to_string()])
        .args(["--pool", &args.pool.to_string()])
        .args(["--key-pattern", &args.key_pattern.to_string()])
        .args(["--compression", args.compression.name()])
        .args(["--linger-ms", &args.linger_ms.to_string()])
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--label", "fill", "--json", "--quiet"]);
    if let Some(level) = args.level {
        command.args(["--level", &level.to_string()]);
    }
    let output = command.stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the fill failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let field = |name: &str| -> f64 {
        let key = format!("\"{name}\":");
        stdout
            .find(&key)
            .map(|i| &stdout[i + key.len()..])
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((field("seconds"), field("records_per_sec")))
}

/// The loop's counts, then the CPU seconds and peak RSS read right after
/// the last expected record (before the consumer closes).
type Consumed = (Counted, f64, i64);

fn consume_smartkafka(
    args: &Args,
    bootstrap: &str,
    group: &str,
    expected: u64,
    created: Instant,
) -> Result<Consumed, BoxError> {
    use smartkafka::consumer::{AutoOffsetReset, Consumer, ConsumerConfig, IsolationLevel};

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        let mut config = ConsumerConfig::new(bootstrap, group)
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .isolation_level(IsolationLevel::ReadCommitted)
            .enable_auto_commit(args.auto_commit)
            .max_poll_records(args.max_poll_records);
        config.reader = config
            .reader
            .client_id("perf")
            .max_fetch_bytes(args.max_fetch_bytes)
            .max_partition_bytes(args.max_partition_bytes)
            .min_bytes(1)
            .max_wait(Duration::from_millis(500));
        let mut consumer = Consumer::builder().config(config).build().await?;
        consumer.subscribe(&[args.topic.as_str()])?;
        let mut counted = Counted::new(created);
        while counted.consumed < expected {
            let records = consumer.poll(Duration::from_millis(100)).await?;
            let bytes: usize = records
                .iter()
                .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
                .sum();
            counted.returned(records.len() as u64, bytes as u64);
            if records.is_empty() && counted.stalled() {
                break;
            }
        }
        counted.finished();
        let (cpu, peak_rss_kb) = rusage();
        consumer.close().await?;
        Ok((counted, cpu, peak_rss_kb))
    })
}

fn consume_rdkafka(
    args: &Args,
    bootstrap: &str,
    group: &str,
    expected: u64,
    created: Instant,
) -> Result<Consumed, BoxError> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};

    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "perf")
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", args.auto_commit.to_string())
        .set("enable.partition.eof", "false")
        .set("check.crcs", args.check_crcs.to_string())
        .set("fetch.max.bytes", args.max_fetch_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            args.max_partition_bytes.to_string(),
        )
        .set("fetch.min.bytes", "1")
        .set("fetch.wait.max.ms", "500");
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[args.topic.as_str()])?;
    let mut counted = Counted::new(created);
    while counted.consumed < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let bytes = message.payload().map_or(0, <[u8]>::len);
                counted.returned(1, bytes as u64);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                if counted.stalled() {
                    break;
                }
            }
        }
    }
    counted.finished();
    let (cpu, peak_rss_kb) = rusage();
    drop(consumer);
    Ok((counted, cpu, peak_rss_kb))
}
