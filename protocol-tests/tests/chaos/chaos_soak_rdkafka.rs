//! Validates the fake cluster's chaos and producer state against an
//! independent idempotent producer, rust-rdkafka (librdkafka): a soak with
//! every connection killed after 0.5-1.5 s (fault scenario 25), and producer
//! state expiring mid-run under both producer-state rules.
//!
//! Each run sends keyed records, takes rdkafka's delivery reports (with
//! librdkafka's persisted / not persisted / possibly persisted status) as the
//! outcomes, reads the log back from the fake cluster and lets the checker
//! compare the two.
//!
//! `SMARTKAFKA_SOAK_RECORDS` sets the soak's record count (default 100,000).

use crate::support::murmur::murmur2;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::checker::{Checker, Outcome, Report};
use protocol_tests::{FakeCluster, ProducerStateRules};
use rdkafka::ClientContext;
use rdkafka::bindings::{rd_kafka_message_status, rd_kafka_msg_status_t};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use tokio::runtime::Runtime;
use tokio::time::Instant;

const TOPIC: &str = "soak";
const PARTITIONS: i32 = 6;
const SEED: u64 = 0x5eed_2024;

fn key(id: u64) -> String {
    format!("key-{}", id % 1000)
}

fn partition_of(id: u64) -> i32 {
    ((murmur2(key(id).as_bytes()) & 0x7fff_ffff) % PARTITIONS as u32) as i32
}

fn value(id: u64) -> String {
    format!("{id}|{}", "v".repeat((id % 64) as usize))
}

/// The id a stored record was generated from.
fn id_of(record: &protocol_tests::StoredRecord) -> Option<u64> {
    let value = std::str::from_utf8(record.value.as_deref()?).ok()?;
    value.split('|').next()?.parse().ok()
}

/// What librdkafka reported, gathered by the producer context.
#[derive(Default)]
struct Observed {
    /// Per record id: `(partition, outcome)` from its delivery report.
    reports: Mutex<Vec<Option<(i32, Outcome)>>>,
    /// Global errors, fatal ones first noted in `fatal`.
    errors: Mutex<Vec<String>>,
    fatal: Mutex<Option<String>>,
    /// Request retries over all brokers, from the latest statistics
    /// (librdkafka counts resent requests here, not batches it requeues
    /// after a lost connection).
    tx_retries: AtomicU64,
    /// Disconnections over all brokers, from the latest statistics.
    disconnects: AtomicU64,
}

struct SoakContext(Arc<Observed>);

impl ClientContext for SoakContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            let mut fatal = self.0.fatal.lock().expect("lock");
            fatal.get_or_insert_with(|| format!("{error}: {reason}"));
        }
        let mut errors = self.0.errors.lock().expect("lock");
        if errors.len() < 1000 {
            errors.push(format!("{error}: {reason}"));
        }
    }

    fn stats(&self, statistics: Statistics) {
        let retries = statistics.brokers.values().map(|b| b.txretries).sum();
        self.0.tx_retries.fetch_max(retries, Ordering::Relaxed);
        let disconnects = statistics
            .brokers
            .values()
            .filter_map(|b| b.disconnects)
            .sum::<i64>();
        self.0
            .disconnects
            .fetch_max(u64::try_from(disconnects).unwrap_or(0), Ordering::Relaxed);
    }
}

impl ProducerContext for SoakContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let (partition, outcome) = match result {
            Ok(m) => (
                m.partition(),
                Outcome::Delivered {
                    offset: (m.offset() >= 0).then_some(m.offset()),
                },
            ),
            Err((_, m)) => {
                // SAFETY: `m.ptr()` is the live message librdkafka passed to
                // this delivery callback.
                let status = unsafe { rd_kafka_message_status(m.ptr()) };
                let outcome = match status {
                    rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => {
                        Outcome::FailedNotPersisted
                    }
                    rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => {
                        Outcome::FailedPossiblyPersisted
                    }
                    rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_PERSISTED => Outcome::Unknown,
                };
                (m.partition(), outcome)
            }
        };
        let mut reports = self.0.reports.lock().expect("lock");
        if let Some(slot) = reports.get_mut(id) {
            *slot = Some((partition, outcome));
        }
    }
}

fn producer(cluster: &FakeCluster, observed: &Arc<Observed>) -> ThreadedProducer<SoakContext> {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "20")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "200")
        .set("queue.buffering.max.messages", "1000000")
        .set("statistics.interval.ms", "250")
        .set("log.connection.close", "false")
        .create_with_context(SoakContext(Arc::clone(observed)))
        .expect("create producer")
}

/// Sends ids `range` in order, each to its murmur2 partition, spreading the
/// sends over at least `min_duration`. Calls `midway` once half are queued.
fn send_all(
    producer: &ThreadedProducer<SoakContext>,
    range: std::ops::Range<u64>,
    min_duration: Duration,
    mut midway: impl FnMut(),
) {
    let started = Instant::now();
    let total = range.end - range.start;
    let chunks = 50u64.min(total.max(1));
    let mut midway_done = false;
    for (n, id) in range.clone().enumerate() {
        let n = n as u64;
        if !midway_done && n >= total / 2 {
            midway();
            midway_done = true;
        }
        if n > 0 && n.is_multiple_of(total.div_ceil(chunks)) {
            let due = started + min_duration.mul_f64(n as f64 / total as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let (k, v) = (key(id), value(id));
        let mut record = BaseRecord::with_opaque_to(TOPIC, id as usize)
            .key(&k)
            .payload(&v)
            .partition(partition_of(id));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => panic!("enqueue record {id}: {e}"),
            }
        }
    }
    if !midway_done {
        midway();
    }
}

/// Checks `0..n` as sent against the fake cluster's log.
fn check(cluster: &FakeCluster, observed: &Observed, n: u64) -> Report {
    let reports = observed.reports.lock().expect("lock");
    let mut checker = Checker::new();
    for id in 0..n {
        let partition = partition_of(id);
        let outcome = match reports[id as usize] {
            Some((reported, outcome)) => {
                assert_eq!(
                    reported, partition,
                    "record {id} reported on another partition"
                );
                outcome
            }
            None => Outcome::Unknown,
        };
        checker.sent(TOPIC, partition, id, outcome);
    }
    for p in 0..PARTITIONS {
        checker.log_records(TOPIC, p, &cluster.records(TOPIC, p), id_of);
    }
    checker.report()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn soak_records() -> u64 {
    std::env::var("SMARTKAFKA_SOAK_RECORDS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000)
}

fn assert_no_fatal(producer: &ThreadedProducer<SoakContext>, observed: &Observed) {
    assert_eq!(
        producer.client().fatal_error(),
        None,
        "librdkafka fatal error"
    );
    let fatal = observed.fatal.lock().expect("lock").clone();
    assert_eq!(fatal, None, "fatal error reported to the context");
}

/// Fault scenario 25: every connection is killed after 0.5-1.5 s, half of
/// them right after a Produce was applied; the idempotent producer must
/// still write each record exactly once, in order.
#[test]
fn idempotent_producer_survives_connection_chaos() {
    let n = soak_records();
    let rt = runtime();
    let cluster = rt.block_on(
        FakeCluster::builder()
            .brokers(3)
            .topic(TOPIC, PARTITIONS)
            .connection_lifetime(
                Duration::from_millis(500),
                Duration::from_millis(1500),
                SEED,
            )
            .build(),
    );
    let observed = Arc::new(Observed::default());
    *observed.reports.lock().expect("lock") = vec![None; n as usize];
    let producer = producer(&cluster, &observed);

    let started = Instant::now();
    // Spread over at least 10 s, so the run outlives many connections
    // whatever the record count.
    send_all(&producer, 0..n, Duration::from_secs(10), || {});
    producer
        .flush(Duration::from_secs(180))
        .expect("flush within three minutes");
    let elapsed = started.elapsed();
    // One more statistics interval, for final retry counts.
    std::thread::sleep(Duration::from_millis(400));

    let report = check(&cluster, &observed, n);
    let duplicates: u64 = (0..PARTITIONS)
        .map(|p| cluster.duplicate_batches(TOPIC, p))
        .sum();
    let killed = cluster.connections_killed();
    let killed_after_produce = cluster.connections_killed_after_produce();
    let retries = observed.tx_retries.load(Ordering::Relaxed);
    let disconnects = observed.disconnects.load(Ordering::Relaxed);
    let errors = observed.errors.lock().expect("lock").clone();
    println!(
        "soak: {n} records in {:.1} s; {} connections accepted, {killed} killed \
         ({killed_after_produce} right after a Produce); {duplicates} duplicate batches \
         answered; librdkafka saw {disconnects} disconnects, counted {retries} request \
         retries and reported {} client errors {:?}; checker: {report}",
        elapsed.as_secs_f64(),
        cluster.connections_accepted(),
        errors.len(),
        &errors[..errors.len().min(3)],
    );

    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.delivered as u64, n,
        "every record delivered: {report}"
    );
    assert_no_fatal(&producer, &observed);
    assert!(killed > 0, "the cluster killed connections");
    assert!(
        killed_after_produce > 0,
        "some connections died after applying a Produce"
    );
    // Every connection killed after a Produce left batches written but
    // unacknowledged: their retries must have come back as duplicates.
    assert!(
        duplicates > 0,
        "retries of applied batches were answered as duplicates"
    );
    assert!(disconnects > 0, "librdkafka noticed the lost connections");
    drop(producer);
    drop(cluster);
}

/// Producer state expires in the middle of a run.
///
/// Under the current rules (Kafka 2.5+) the broker accepts the producer's
/// next batch at whatever sequence it carries, so librdkafka simply carries
/// on with the same producer id and epoch.
#[test]
fn idempotent_producer_continues_after_producer_expiry() {
    let (report, epochs) = expire_mid_run(ProducerStateRules::Current);
    assert!(report.is_clean(), "{report}");
    assert_eq!(epochs.after, epochs.before, "no epoch bump was needed");
}

/// Under the legacy rules (Kafka before 2.4) the next batch of each
/// partition gets UNKNOWN_PRODUCER_ID. librdkafka treats a first attempt at
/// the next expected sequence as safe: it drains, bumps its epoch itself and
/// resends from sequence 0, with no duplicate and no gap.
#[test]
fn idempotent_producer_bumps_epoch_after_unknown_producer_id() {
    let (report, epochs) = expire_mid_run(ProducerStateRules::Legacy);
    assert!(report.is_clean(), "{report}");
    assert!(
        epochs.after > epochs.before,
        "librdkafka bumped its epoch: {epochs:?}"
    );
}

#[derive(Debug)]
struct Epochs {
    /// Highest producer epoch stored before the expiry.
    before: i16,
    /// Producer epoch of the last record stored.
    after: i16,
}

/// Sends 3,000 records, expiring the producer state of every partition once
/// half are queued, and checks the result.
fn expire_mid_run(rules: ProducerStateRules) -> (Report, Epochs) {
    const N: u64 = 3_000;
    let rt = runtime();
    let cluster = rt.block_on(
        FakeCluster::builder()
            .brokers(3)
            .topic(TOPIC, PARTITIONS)
            .producer_state_rules(rules)
            .build(),
    );
    let observed = Arc::new(Observed::default());
    *observed.reports.lock().expect("lock") = vec![None; N as usize];
    let producer = producer(&cluster, &observed);
    let mut before = None;
    send_all(&producer, 0..N, Duration::from_secs(2), || {
        // Let the first half land, so every partition has producer state
        // with a sequence past 0, then forget it everywhere.
        producer
            .flush(Duration::from_secs(30))
            .expect("flush first half");
        for p in 0..PARTITIONS {
            assert!(
                !cluster.producer_ids(TOPIC, p).is_empty(),
                "partition {p} has state"
            );
            cluster.expire_producers(TOPIC, p);
            assert!(cluster.producer_ids(TOPIC, p).is_empty());
        }
        before = (0..PARTITIONS)
            .flat_map(|p| cluster.records(TOPIC, p))
            .map(|r| r.producer_epoch)
            .max();
    });
    producer.flush(Duration::from_secs(60)).expect("flush");
    let report = check(&cluster, &observed, N);
    println!("producer expiry under {rules:?}: {report}");
    assert_eq!(
        report.delivered as u64, N,
        "every record delivered: {report}"
    );
    assert_no_fatal(&producer, &observed);
    let last_epoch = |p| cluster.records(TOPIC, p).last().map(|r| r.producer_epoch);
    let after = (0..PARTITIONS).filter_map(last_epoch).min();
    for p in 0..PARTITIONS {
        assert!(
            !cluster.producer_ids(TOPIC, p).is_empty(),
            "partition {p} state rebuilt"
        );
    }
    let epochs = Epochs {
        before: before.expect("records before the expiry"),
        after: after.expect("records after the expiry"),
    };
    (report, epochs)
}
