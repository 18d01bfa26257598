//! An exactly-once pipeline: read `input` (read_committed), upper-case each
//! value, write it to `output`, and commit the input positions in the same
//! transaction. The pipeline process is killed (SIGKILL) mid-run and
//! started again; the output still holds every input record exactly once.
//!
//! ```text
//! cargo run --example transactional                                   # embedded 3-broker cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --example transactional    # your cluster
//! ```
//!
//! The example runs as a supervisor: it writes `PIPELINE_RECORDS` input
//! records (default 20,000), starts the pipeline as a child process
//! (`transactional worker <bootstrap>`), kills it once a third of the
//! output is committed, starts it again, and when the worker has caught
//! up reads `output` back read_committed and checks it: no record lost,
//! none twice. It exits non-zero otherwise.
//!
//! Every run names its topics, group and transactional id after a run id
//! (`input-<run>`, `output-<run>`, ...), so the example can be run again
//! and again against the same cluster.
//!
//! The worker's loop is the part to copy:
//!
//! ```text
//! producer.init_transactions()           fences an older worker, aborts what it left open
//! loop:
//!     records = consumer.poll()          a group member, from the group's committed offsets
//!     for each chunk of 100 records:
//!         producer.begin_transaction()
//!         send(transform(record)) for each
//!         producer.send_offsets_to_transaction(next offsets of the chunk, consumer.group_metadata())
//!         producer.commit_transaction()  output and offsets, or neither
//! ```

// The clock rule is for the library's engine; an example may time itself.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smartkafka::consumer::{
    AutoOffsetReset, Consumer, IsolationLevel, OffsetToCommit, PartitionReader, ReaderConfig,
    StartOffset,
};
use smartkafka::{AdminClient, ClientConfig, NewTopic, Producer, Record};

const PARTITIONS: i32 = 3;
const RECORDS_PER_TRANSACTION: usize = 100;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The names one run uses, derived from its run id so that a second run
/// against the same cluster starts from empty topics and a fresh group.
struct Names {
    run: String,
    input: String,
    output: String,
    group: String,
    transactional_id: String,
}

impl Names {
    fn new(run: &str) -> Names {
        Names {
            run: run.to_string(),
            input: format!("input-{run}"),
            output: format!("output-{run}"),
            group: format!("uppercaser-{run}"),
            transactional_id: format!("uppercaser-{run}-0"),
        }
    }

    /// A run id unlikely to repeat: the start time and the process id.
    fn fresh() -> Names {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Names::new(&format!(
            "{:x}{:x}",
            since_epoch.as_millis(),
            std::process::id()
        ))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        let (Some(bootstrap), Some(run)) = (args.get(2), args.get(3)) else {
            return Err("usage: transactional worker <bootstrap> <run-id>".into());
        };
        return worker(bootstrap, &Names::new(run)).await;
    }
    supervise().await
}

/// The pipeline: consume, transform, produce, commit offsets, in one
/// transaction per polled batch, until the input is drained.
async fn worker(bootstrap: &str, names: &Names) -> Result<()> {
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .transactional_id(&names.transactional_id)
        .linger(Duration::from_millis(5))
        .build()
        .await?;
    // Fences any earlier worker with the same id and aborts its open
    // transaction, so its half-written output never becomes visible.
    producer.init_transactions().await?;

    // A group member (KIP-447): its generation goes with the offsets, so a
    // zombie worker that lost its partitions cannot commit them.
    let mut consumer = Consumer::builder()
        .bootstrap_servers(bootstrap)
        .group_id(&names.group)
        .isolation_level(IsolationLevel::ReadCommitted)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .enable_auto_commit(false) // offsets are committed in the transactions
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .await?;
    consumer.subscribe(&[names.input.as_str()])?;

    let mut idle_polls = 0;
    while idle_polls < 20 {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        if records.is_empty() {
            // Idle only counts once the group has given us the input.
            if !consumer.assignment().is_empty() {
                idle_polls += 1;
            }
            continue;
        }
        idle_polls = 0;
        // Small transactions, so that a crash lands in the middle of some.
        for chunk in records.chunks(RECORDS_PER_TRANSACTION) {
            producer.begin_transaction().await?;
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for r in chunk {
                let value = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).to_uppercase())
                    .unwrap_or_default();
                let mut out = Record::new(names.output.as_str()).value(value);
                if let Some(key) = &r.key {
                    out = out.key(key.clone());
                }
                // Delivery is confirmed by the commit below.
                let _delivery = producer.send(out).await?;
                next.insert(r.partition, r.offset + 1);
            }
            // The positions after this chunk: committed with its output.
            let offsets = next
                .into_iter()
                .map(|(partition, offset)| OffsetToCommit::new(&names.input, partition, offset))
                .collect();
            producer
                .send_offsets_to_transaction(offsets, consumer.group_metadata())
                .await?;
            producer.commit_transaction().await?;
        }
    }
    consumer.close().await?;
    producer.close(Duration::from_secs(10)).await?;
    Ok(())
}

async fn supervise() -> Result<()> {
    let names = Names::fresh();
    let records: usize = std::env::var("PIPELINE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder()
                .brokers(3)
                .build()
                .await;
            println!(
                "embedded 3-broker cluster at {}",
                cluster.bootstrap_servers()
            );
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap)).await?;
    admin
        .create_topics(&[
            NewTopic::new(&names.input, PARTITIONS),
            NewTopic::new(&names.output, PARTITIONS),
        ])
        .await?;

    // The input: distinct values, so the check can name what went wrong.
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await?;
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        let record = Record::new(names.input.as_str())
            .key(format!("k{}", i % 97))
            .value(format!("event-{i:06}"));
        deliveries.push(producer.send(record).await?);
    }
    for d in deliveries {
        d.await?;
    }
    producer.close(Duration::from_secs(10)).await?;
    println!("wrote {records} input records");

    let started = Instant::now();
    let mut first = spawn_worker(&bootstrap, &names)?;
    let target = records / 3;
    let mut progress = output_reader(&bootstrap, &names, IsolationLevel::ReadCommitted).await?;
    let mut done = 0;
    loop {
        done += progress.poll(Duration::from_millis(50)).await?.len();
        if done >= target {
            first.kill()?;
            first.wait()?;
            println!("killed the pipeline after {done} committed output records");
            break;
        }
        if let Some(status) = first.try_wait()? {
            return Err(format!("the worker exited early: {status}").into());
        }
    }
    let mut second = spawn_worker(&bootstrap, &names)?;
    let status = second.wait()?;
    if !status.success() {
        return Err(format!("the restarted worker failed: {status}").into());
    }
    println!(
        "restarted pipeline drained the input in {:.1?} in total",
        started.elapsed()
    );

    let output = read_output(&bootstrap, &names, IsolationLevel::ReadCommitted).await?;
    let in_log = read_output(&bootstrap, &names, IsolationLevel::ReadUncommitted)
        .await?
        .len();
    println!(
        "the output log holds {in_log} records; {} of them from transactions the kill interrupted, aborted and invisible to read_committed",
        in_log.saturating_sub(output.len())
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for v in &output {
        *seen.entry(v.clone()).or_default() += 1;
    }
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let missing = (0..records)
        .filter(|i| !seen.contains_key(&format!("EVENT-{i:06}")))
        .count();
    let phantom = seen
        .keys()
        .filter(|v| {
            v.strip_prefix("EVENT-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_none_or(|n| n >= records)
        })
        .count();
    println!(
        "output: {} records read_committed; {missing} missing, {duplicated} duplicated, {phantom} unexpected",
        output.len()
    );
    if missing + duplicated + phantom > 0 || output.len() != records {
        return Err("the output does not hold each input record exactly once".into());
    }
    println!("exactly once: every input record is in the output once");
    Ok(())
}

fn spawn_worker(bootstrap: &str, names: &Names) -> Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args(["worker", bootstrap, &names.run])
        .stdin(Stdio::null())
        .spawn()?)
}

async fn output_reader(
    bootstrap: &str,
    names: &Names,
    isolation: IsolationLevel,
) -> Result<PartitionReader> {
    let mut reader = PartitionReader::connect(
        ReaderConfig::new(bootstrap)
            .isolation_level(isolation)
            .max_wait(Duration::from_millis(50)),
    )
    .await?;
    let assignment: Vec<(&str, i32, StartOffset)> = (0..PARTITIONS)
        .map(|p| (names.output.as_str(), p, StartOffset::Earliest))
        .collect();
    reader.assign(&assignment).await?;
    Ok(reader)
}

/// Every output value visible at `isolation`, read until two polls in a
/// row are empty.
async fn read_output(
    bootstrap: &str,
    names: &Names,
    isolation: IsolationLevel,
) -> Result<Vec<String>> {
    let mut reader = output_reader(bootstrap, names, isolation).await?;
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let batch = reader.poll(Duration::from_millis(100)).await?;
        if batch.is_empty() {
            empty += 1;
        }
        out.extend(
            batch.into_iter().map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            }),
        );
    }
    Ok(out)
}
