//! The hidden `--consumer` mode: one rust-rdkafka consumer of the group in
//! its own process, so the slow side of the pipeline is not smartkafka's code.
//!
//! It is assigned its partitions (`--assign`, with `group.id` set, so its
//! ownership is fixed and its offsets are committed under the group). Every
//! `--commit-interval` it commits the offsets it has processed (an
//! asynchronous commit, as librdkafka's automatic commit makes); with
//! `--report-processing` each offset carries the consumer's time per record
//! since its last commit as metadata (`smartkafka::health::ProcessingMeter`),
//! the time being the simulated work, and a partition whose pace halves or
//! doubles (over 10 records) is committed at once (at most every 100 ms).
//! Each record costs
//! `--work-us` microseconds of simulated processing (a sleep, not CPU), times
//! `--slow-factor` while the slow window is open. The window comes on standard
//! input as `go FROM_US UNTIL_US` (Unix microseconds; `go 0 0` for none);
//! standard input closing stops the consumer.
//!
//! Standard output: `ready` once librdkafka has fetched every assigned
//! partition (see [`wait_until_fetching`]), then one line per record,
//! `r PARTITION SENT_US DONE_US` (produce time from the `sent-us` header, and
//! the time its processing finished), and `end ERRORS` when it stops.

use std::collections::BTreeSet;
use std::io::{BufRead, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use smartkafka::health::ProcessingMeter;

use super::{Args, BoxError, SENT_HEADER, unix_us};

/// Runs the consumer until standard input closes.
pub(crate) fn run(args: &Args) -> Result<(), BoxError> {
    let bootstrap = args
        .bootstrap
        .as_deref()
        .ok_or("--consumer needs --bootstrap")?;
    let group = args.group.as_deref().ok_or("--consumer needs --group")?;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .set("auto.offset.reset", "earliest")
        // Each partition's end is reported: the readiness check below.
        .set("enable.partition.eof", "true")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in &args.assign {
        assignment.add_partition_offset(&args.topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    wait_until_fetching(&consumer, &args.assign);

    let stop = Arc::new(AtomicBool::new(false));
    let slow_from = Arc::new(AtomicU64::new(0));
    let slow_until = Arc::new(AtomicU64::new(0));
    {
        let (stop, slow_from, slow_until) = (stop.clone(), slow_from.clone(), slow_until.clone());
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                if words.next() == Some("go") {
                    let mut next = || words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    slow_from.store(next(), Ordering::Relaxed);
                    slow_until.store(next(), Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "ready")?;
    out.flush()?;
    let base = args.work_us as f64;
    let mut busy_until = 0u64;
    let mut errors = 0u64;
    let mut flushed = Instant::now();
    let commit_every = Duration::from_secs_f64(args.commit_interval.max(0.001));
    let mut committed_at = Instant::now();
    let mut meter = ProcessingMeter::new();
    // The next offset to commit per partition (the last processed + 1).
    let mut positions: Vec<(i32, i64)> = args.assign.iter().map(|p| (*p, -1)).collect();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let sent = message
                    .headers()
                    .and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == SENT_HEADER)
                            .and_then(|h| h.value)
                    })
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
                let now = unix_us();
                let (from, until) = (
                    slow_from.load(Ordering::Relaxed),
                    slow_until.load(Ordering::Relaxed),
                );
                let slow = from > 0 && now >= from && now < until;
                let work = if slow { base * args.slow_factor } else { base };
                // One worker: a record starts when the previous one is done.
                busy_until = busy_until.max(now) + work.round() as u64;
                if busy_until > now + 1_000 {
                    std::thread::sleep(Duration::from_micros(busy_until - now));
                }
                if let Some(sent) = sent {
                    writeln!(out, "r {} {sent} {busy_until}", message.partition())?;
                }
                let partition = message.partition();
                meter.record(
                    &args.topic,
                    partition,
                    1,
                    Duration::from_micros(work.round() as u64),
                );
                if let Some(slot) = positions.iter_mut().find(|(p, _)| *p == partition) {
                    slot.1 = message.offset() + 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("hot_partition consumer {group}: {e}");
                }
            }
            None => {}
        }
        // A pace that halved or doubled is reported at once.
        let drifted = args.report_processing
            && committed_at.elapsed() >= Duration::from_millis(100)
            && args
                .assign
                .iter()
                .any(|p| meter.drifted(&args.topic, *p, 2.0, 10));
        if drifted || committed_at.elapsed() >= commit_every {
            committed_at = Instant::now();
            commit(&consumer, args, &positions, &mut meter, &mut errors)?;
        }
        if flushed.elapsed() >= Duration::from_millis(100) {
            out.flush()?;
            flushed = Instant::now();
        }
    }
    writeln!(out, "end {errors}")?;
    out.flush()?;
    Ok(())
}

/// Polls until librdkafka has fetched every partition in `partitions` once
/// (it reports each one's end as `PartitionEOF`; the topic is fresh and
/// empty), so records sent after `ready` do not wait for the consumer's
/// start-up (offset lookup, connections, the first fetch), which no
/// partitioning strategy has a say in. Gives up after 10 s.
fn wait_until_fetching(consumer: &BaseConsumer, partitions: &[i32]) {
    let mut waiting: BTreeSet<i32> = partitions.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiting.is_empty() && Instant::now() < deadline {
        if let Some(Err(KafkaError::PartitionEOF(p))) = consumer.poll(Duration::from_millis(50)) {
            waiting.remove(&p);
        }
    }
    if !waiting.is_empty() {
        eprintln!(
            "hot_partition consumer: partitions {waiting:?} not fetched within 10 s; starting anyway"
        );
    }
}

/// Commits `positions` (asynchronously), each with the meter's processing
/// report as metadata when `--report-processing` is on.
fn commit(
    consumer: &BaseConsumer,
    args: &Args,
    positions: &[(i32, i64)],
    meter: &mut ProcessingMeter,
    errors: &mut u64,
) -> Result<(), BoxError> {
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in positions.iter().filter(|(_, next)| *next >= 0) {
        let mut element = offsets.add_partition(&args.topic, *partition);
        element.set_offset(Offset::Offset(*next))?;
        if args.report_processing
            && let Some(report) = meter.metadata(&args.topic, *partition)
        {
            element.set_metadata(report);
        }
    }
    if offsets.count() > 0
        && let Err(e) = consumer.commit(&offsets, CommitMode::Async)
    {
        *errors += 1;
        if *errors <= 5 {
            eprintln!("hot_partition consumer: commit: {e}");
        }
    }
    Ok(())
}
