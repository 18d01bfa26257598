//! Backpressure acceptance of the producer: with 1 MiB of buffer memory and
//! the broker down, resident memory stays bounded (measured), `send` waits
//! and then fails after `max_block` with [`ErrorKind::BufferExhausted`], the
//! records accepted before stay accounted (`stats().queued_bytes` never above
//! the buffer), and once the broker is back they are delivered exactly once,
//! in order, as reading the log back shows. Waiters for buffer space are
//! served in arrival order: a later record that would fit does not overtake
//! an earlier one that does not. And with a broker slower than the sender, a
//! waiting `send` holds a few requests' worth of records, not the buffer,
//! and a `try_send` faster than the producer's task, or than the broker, is
//! refused once the producer holds `max_buffered_records`, not once the
//! buffer is full; records its task has taken count until delivered (with
//! the fake broker holding its answers back, and with the librdkafka mock's
//! broker down).
//!
//! "Broker down" is two setups: the fake cluster with a fault that closes
//! every Produce connection without applying the request (metadata still
//! answers), and the librdkafka mock cluster with its only broker taken down
//! (`broker_down`: connections closed, new ones refused), then brought back.
//!
//! Every test here takes about a second or three; they measure the whole
//! process's memory and wall time, so they run one at a time. Run them with
//! `cargo test --test producer_backpressure`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use rdkafka::mocking::MockCluster;
use smartkafka::{DeliveryFuture, ErrorKind, Producer, ProducerBuilder, Record};

mod support;

use support::fixtures::{self, quick_retries};
use support::workload;

const MIB: usize = 1024 * 1024;
/// The producer's buffer memory in every test.
const BUFFER: usize = MIB;
const MAX_BLOCK: Duration = Duration::from_millis(300);
/// How early a wait may end and still count as "waited max_block": none,
/// the deadline is taken when the record is submitted; a little for clocks.
const EARLY: Duration = Duration::from_millis(5);
/// What a record takes of the buffer, besides its own charge, while it
/// waits in the producer's inbox (the size of its command there).
const QUEUED_ALLOWANCE: u64 = 256;
/// How late a failed `send` may return after max_block on a loaded machine.
const LATE: Duration = Duration::from_secs(2);

/// Tests here measure the process's memory and timing: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn builder(bootstrap: &str) -> ProducerBuilder {
    quick_retries(bootstrap)
        .buffer_memory(BUFFER)
        .max_block(MAX_BLOCK)
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(5))
        .delivery_timeout(Duration::from_secs(60))
}

/// A distinct value of `len` bytes: `tag-index-` then a filler byte that
/// depends on the index, so that every page of it is written.
fn payload(tag: &str, index: usize, len: usize) -> Vec<u8> {
    let mut v = vec![b'a' + (index % 26) as u8; len];
    let prefix = format!("{tag}-{index:06}-");
    let n = prefix.len().min(len);
    v[..n].copy_from_slice(&prefix.as_bytes()[..n]);
    v
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Watches resident memory and the producer's queued bytes from a thread of
/// its own, every millisecond. Where the kernel allows it the peak comes
/// from `VmHWM` after a reset (exact); the samples are taken either way.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
    baseline: u64,
    hwm_reset: bool,
}

impl Monitor {
    fn start(producer: &Producer) -> Monitor {
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let baseline = proc_status_bytes("VmRSS");
        let stop = Arc::new(AtomicBool::new(false));
        let producer = producer.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut rss, mut queued) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                rss = rss.max(proc_status_bytes("VmRSS"));
                let q = producer.stats().queued_bytes;
                assert!(
                    q <= BUFFER as u64,
                    "queued_bytes {q} above buffer_memory {BUFFER}"
                );
                queued = queued.max(q);
                std::thread::sleep(Duration::from_millis(1));
            }
            (rss, queued)
        });
        Monitor {
            stop,
            thread: Some(thread),
            baseline,
            hwm_reset,
        }
    }

    /// Stops watching: (baseline RSS, peak RSS, most bytes queued).
    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (sampled, queued) = self.thread.take().unwrap().join().unwrap();
        let peak = if self.hwm_reset {
            sampled.max(proc_status_bytes("VmHWM"))
        } else {
            sampled
        };
        (self.baseline, peak, queued)
    }
}

/// An accepted record: its partition, value and delivery.
struct Accepted {
    partition: i32,
    value: Vec<u8>,
    delivery: DeliveryFuture,
}

/// Sends `len`-byte records round-robin over `partitions` until one is
/// refused, and checks the refusal: buffer exhausted, after max_block, not
/// persisted, with the buffer full. Returns the accepted records and the
/// queued bytes once full.
async fn fill_until_refused(
    producer: &Producer,
    topic: &str,
    partitions: i32,
    len: usize,
) -> (Vec<Accepted>, u64) {
    let mut accepted = Vec::new();
    loop {
        let i = accepted.len();
        assert!(i <= BUFFER / len, "the buffer never filled");
        let partition = i as i32 % partitions;
        let value = payload("fill", i, len);
        let started = Instant::now();
        let record = Record::new(topic).partition(partition).value(value.clone());
        match producer.send(record).await {
            Ok(delivery) => accepted.push(Accepted {
                partition,
                value,
                delivery,
            }),
            Err(e) => {
                let waited = started.elapsed();
                assert_eq!(e.kind(), &ErrorKind::BufferExhausted, "{e}");
                assert!(!e.possibly_persisted(), "{e}");
                assert!(
                    waited + EARLY >= MAX_BLOCK && waited <= MAX_BLOCK + LATE,
                    "send waited {waited:?} with max_block {MAX_BLOCK:?}"
                );
                break;
            }
        }
    }
    let queued = producer.stats().queued_bytes;
    assert!(queued <= BUFFER as u64, "{queued} queued");
    // Each record is charged its bytes and its bookkeeping (what the
    // accepted ones hold on average), and while it waits for the producer's
    // task also its command (at most QUEUED_ALLOWANCE): the refused one
    // did not fit with those.
    let per_record = queued / accepted.len() as u64;
    assert!(
        per_record >= len as u64 && per_record < len as u64 + 128,
        "{per_record} bytes charged per record of {len}"
    );
    assert!(
        queued + per_record + QUEUED_ALLOWANCE > BUFFER as u64,
        "refused with {queued} of {BUFFER} bytes in use: room was left"
    );
    (accepted, queued)
}

/// The values in the fake cluster's log of `topic`'s `partition`, in order.
fn logged_values(cluster: &FakeCluster, topic: &str, partition: i32) -> Vec<Vec<u8>> {
    cluster
        .records(topic, partition)
        .into_iter()
        .map(|r| r.value.expect("a record without a value").to_vec())
        .collect()
}

/// Waits for every accepted record's delivery: per partition, the offsets.
async fn delivered(accepted: Vec<Accepted>) -> Vec<(i32, i64, Vec<u8>)> {
    let mut out = Vec::with_capacity(accepted.len());
    for a in accepted {
        let md = tokio::time::timeout(Duration::from_secs(30), a.delivery)
            .await
            .expect("delivery after the broker came back")
            .unwrap_or_else(|e| panic!("an accepted record failed: {e}"));
        assert_eq!(md.partition, a.partition);
        out.push((md.partition, md.offset, a.value));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_memory_stays_bounded_and_send_fails_after_max_block() {
    let _serial = SERIAL.lock().await;
    const PARTITIONS: i32 = 3;
    const FILL_LEN: usize = 16_000;
    // 64 MiB through `send` (each waits max_block, then is refused), the
    // rest of 200 MiB through `try_send` (refused at once).
    const BIG_LEN: usize = 256 * 1024;
    const SENDERS: usize = 32;
    const ROUNDS: usize = 8;
    const ATTEMPTED: usize = 200 * MIB;

    let cluster = FakeCluster::builder()
        .brokers(1)
        .topic("t", PARTITIONS)
        .build()
        .await;
    let producer = builder(&cluster.bootstrap_servers()).build().await.unwrap();
    for p in 0..PARTITIONS {
        producer
            .send_and_wait(Record::new("t").partition(p).value(format!("warm-up-{p}")))
            .await
            .unwrap();
    }
    // The broker goes down for producing: every Produce request closes its
    // connection unapplied, until the fault is cleared.
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .drop_connection()
            .times(u32::MAX),
    );

    let monitor = Monitor::start(&producer);
    let (accepted, queued_full) = fill_until_refused(&producer, "t", PARTITIONS, FILL_LEN).await;
    assert!(
        accepted.len() >= BUFFER / (FILL_LEN + 1024),
        "only {} records of {FILL_LEN} bytes fit in {BUFFER} bytes",
        accepted.len()
    );

    // Keep pushing: SENDERS tasks block in `send` ROUNDS times each, while
    // `try_send` takes the rest of ATTEMPTED. Nothing is accepted.
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let producer = producer.clone();
        senders.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let value = payload("blocked", s * ROUNDS + r, BIG_LEN);
                let started = Instant::now();
                let err = producer
                    .send(Record::new("t").partition((s % 3) as i32).value(value))
                    .await
                    .expect_err("accepted with the buffer full and the broker down");
                let waited = started.elapsed();
                assert_eq!(err.kind(), &ErrorKind::BufferExhausted, "{err}");
                assert!(
                    waited + EARLY >= MAX_BLOCK && waited <= MAX_BLOCK + LATE,
                    "send waited {waited:?}"
                );
            }
        }));
    }
    let blocking_bytes = SENDERS * ROUNDS * BIG_LEN;
    let mut tried = 0usize;
    let mut i = 0;
    while blocking_bytes + tried < ATTEMPTED {
        let value = payload("tried", i, BIG_LEN);
        let err = producer
            .try_send(
                Record::new("t")
                    .partition(i as i32 % PARTITIONS)
                    .value(value),
            )
            .expect_err("try_send accepted with the buffer full");
        assert_eq!(err.kind(), &ErrorKind::BufferExhausted, "{err}");
        tried += BIG_LEN;
        i += 1;
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    let (baseline, peak, most_queued) = monitor.finish();

    // Bound: the buffer, the records of the senders blocked at one time
    // (held by their `send` calls, 8 MiB), and 32 MiB of slack for what is
    // not the producer's records: allocator arenas that keep freed chunks
    // per thread, the Produce requests being encoded and retried, the fake
    // broker's frames. 200 MiB went through; a producer keeping even a
    // fifth of what it refused, or its retries, would not fit.
    let bound = (BUFFER + SENDERS * BIG_LEN + 32 * MIB) as u64;
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB, bound {:.0} MiB) over {} MiB \
         attempted; at most {most_queued} bytes queued",
        baseline as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        growth as f64 / MIB as f64,
        bound as f64 / MIB as f64,
        ATTEMPTED / MIB,
    );
    assert!(growth <= bound, "resident memory grew by {growth} bytes");
    assert!(most_queued <= BUFFER as u64);

    // What was accepted is still held and accounted; the refusals are not.
    let stats = producer.stats();
    assert_eq!(stats.queued_bytes, queued_full, "{stats:?}");
    assert_eq!(stats.queued_records, accepted.len() as u64, "{stats:?}");
    assert_eq!(stats.errors, 1 + (SENDERS * ROUNDS) as u64, "{stats:?}");
    assert!(stats.retries >= 1, "the producer never retried: {stats:?}");
    assert!(cluster.triggered_faults() >= 1);

    // The broker comes back: every accepted record is delivered once, in
    // order, after the warm-up record of its partition.
    cluster.clear_faults();
    let results = delivered(accepted).await;
    for p in 0..PARTITIONS {
        let sent: Vec<&(i32, i64, Vec<u8>)> = results.iter().filter(|r| r.0 == p).collect();
        let log = cluster.records("t", p);
        assert_eq!(
            log.len(),
            1 + sent.len(),
            "partition {p}: records in the log"
        );
        assert_eq!(
            log[0].value.as_deref(),
            Some(format!("warm-up-{p}").as_bytes())
        );
        for (stored, (_, offset, value)) in log[1..].iter().zip(sent) {
            assert_eq!(stored.offset, *offset, "partition {p}: delivery report");
            assert_eq!(stored.value.as_deref(), Some(&value[..]), "partition {p}");
        }
    }
    let stats = producer.stats();
    assert_eq!(stats.queued_bytes, 0, "{stats:?}");
    assert_eq!(stats.queued_records, 0, "{stats:?}");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_broker_down_then_up_delivers_accepted_records_once() {
    let _serial = SERIAL.lock().await;
    const PARTITIONS: i32 = 2;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = builder(&bootstrap).build().await.unwrap();
    for p in 0..PARTITIONS {
        producer
            .send_and_wait(Record::new("t").partition(p).value(format!("warm-up-{p}")))
            .await
            .unwrap();
    }

    cluster.broker_down(1).unwrap();
    let monitor = Monitor::start(&producer);
    let (accepted, queued_full) = fill_until_refused(&producer, "t", PARTITIONS, 8_000).await;
    // It stays down a while: the producer keeps trying, nothing it accepted
    // expires or is dropped, nothing more is accepted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, most_queued) = monitor.finish();
    assert!(most_queued <= BUFFER as u64);
    let stats = producer.stats();
    assert_eq!(stats.queued_bytes, queued_full, "{stats:?}");
    assert_eq!(stats.queued_records, accepted.len() as u64, "{stats:?}");
    assert_eq!(stats.errors, 1, "only the refused send failed: {stats:?}");

    cluster.broker_up(1).unwrap();
    let results = delivered(accepted).await;
    // Offsets count up from the warm-up record, per partition.
    let mut next = [1i64; PARTITIONS as usize];
    for (p, offset, _) in &results {
        assert_eq!(*offset, next[*p as usize], "partition {p}");
        next[*p as usize] += 1;
    }
    let total = PARTITIONS as usize + results.len();
    let read = tokio::task::spawn_blocking(move || {
        workload::consume_all(&bootstrap, "t", PARTITIONS, total)
    })
    .await
    .unwrap();
    assert_eq!(read.len(), total, "records read back");
    for p in 0..PARTITIONS {
        let got: Vec<(i64, Vec<u8>)> = read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| (r.offset, r.value.clone().unwrap()))
            .collect();
        let mut want = vec![(0, format!("warm-up-{p}").into_bytes())];
        want.extend(
            results
                .iter()
                .filter(|r| r.0 == p)
                .map(|(_, offset, value)| (*offset, value.clone())),
        );
        assert_eq!(got, want, "partition {p}: exactly once, in order");
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_fits_does_not_overtake_an_earlier_one() {
    let _serial = SERIAL.lock().await;
    /// Free bytes left in the buffer before the two waiters arrive.
    const FREE: usize = 4_000;
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = builder(&cluster.bootstrap_servers())
        .max_block(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    assert_eq!(producer.stats().queued_bytes, 0);
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .drop_connection()
            .times(u32::MAX),
    );

    // Fill the buffer to exactly FREE bytes short: a probe gives the
    // per-record overhead of the accounting, then 16 kB records, then one
    // record sized to leave FREE.
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut deliveries = Vec::new();
    let mut send = async |value: Vec<u8>| {
        let record = Record::new("t").partition(0).value(value.clone());
        deliveries.push(producer.send(record).await.unwrap());
        values.push(value);
    };
    send(payload("probe", 0, 10_000)).await;
    let overhead = producer.stats().queued_bytes as usize - 10_000;
    assert!(overhead < FREE / 4, "{overhead} bytes of overhead");
    let mut i = 1;
    loop {
        let free = BUFFER - producer.stats().queued_bytes as usize;
        if free < 16_000 + overhead + FREE + overhead + 1 {
            break;
        }
        send(payload("fill", i, 16_000)).await;
        i += 1;
    }
    let free = BUFFER - producer.stats().queued_bytes as usize;
    send(payload("top-up", i, free - FREE - overhead)).await;
    assert_eq!(
        BUFFER - producer.stats().queued_bytes as usize,
        FREE,
        "free space before the waiters"
    );

    // A does not fit; B, which arrives after it, would.
    let a_value = payload("A", 0, FREE + 1);
    let b_value = payload("B", 0, FREE / 2);
    let a = tokio::spawn({
        let producer = producer.clone();
        let value = a_value.clone();
        async move {
            producer
                .send(Record::new("t").partition(0).value(value))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn({
        let producer = producer.clone();
        let value = b_value.clone();
        async move {
            producer
                .send(Record::new("t").partition(0).value(value))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!a.is_finished(), "A was accepted without room for it");
    assert!(
        !b.is_finished(),
        "B overtook A, which has waited for buffer space longer"
    );
    assert_eq!(BUFFER - producer.stats().queued_bytes as usize, FREE);

    // The broker comes back, space frees up: A goes first, then B.
    cluster.clear_faults();
    let a = a.await.unwrap().expect("A accepted once space was freed");
    let b = b.await.unwrap().expect("B accepted once space was freed");
    for d in deliveries {
        d.await.unwrap();
    }
    let a = a.await.unwrap();
    let b = b.await.unwrap();
    assert!(a.offset < b.offset, "A at {}, B at {}", a.offset, b.offset);
    values.push(a_value);
    values.push(b_value);
    let log = logged_values(&cluster, "t", 0);
    assert_eq!(log[0], b"warm-up");
    assert_eq!(log[1..], values[..], "log order is acceptance order");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// A sender faster than the producer's task (here the task cannot run at
/// all while the sender loops: the runtime has one thread) has `try_send`
/// refused once the producer holds its default `max_buffered_records` of
/// 100,000 (as librdkafka's `produce` at its default
/// `queue.buffering.max.messages`), before a 64 MiB buffer is full, with an
/// error that says why. Once the task has delivered them `try_send`
/// succeeds again, and the log holds every accepted record once, in the
/// order sent.
#[tokio::test(flavor = "current_thread")]
async fn try_send_is_refused_while_the_producers_task_is_behind() {
    let _serial = SERIAL.lock().await;
    const LARGE_BUFFER: usize = 64 * MIB;
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = builder(&cluster.bootstrap_servers())
        .buffer_memory(LARGE_BUFFER)
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;

    let mut values = Vec::new();
    let mut deliveries = Vec::new();
    let refusal = loop {
        let i = values.len();
        assert!(
            i < 150_000,
            "try_send never refused a sender that outran the task"
        );
        let value = format!("try-{i:06}").into_bytes();
        match producer.try_send(Record::new("t").value(value.clone())) {
            Ok(delivery) => {
                values.push(value);
                deliveries.push(delivery);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.kind(), &ErrorKind::BufferExhausted, "{refusal}");
    assert!(refusal.is_retriable(), "{refusal}");
    assert!(!refusal.possibly_persisted(), "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("max_buffered_records (100000)"),
        "the refusal does not say why: {refusal}"
    );
    // Every record before the cap was taken, none past it; the buffer
    // could have held about three times as many.
    let queued = producer.stats().queued_bytes;
    assert_eq!(values.len(), 100_000, "records taken before the refusal");
    assert!(
        queued < (LARGE_BUFFER / 2) as u64,
        "{queued} bytes queued when refused"
    );

    // The task catches up once the sender yields: try_send takes records
    // again.
    let value = b"after".to_vec();
    deliveries.push(
        try_send_until_taken(&producer, &value, Instant::now() + Duration::from_secs(10)).await,
    );
    values.push(value);
    assert_logged_in_send_order(&cluster, deliveries, &values).await;
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// The same limit against the librdkafka mock with its only broker down:
/// the records the producer holds while it is down count, so `try_send` is
/// refused at the limit and stays refused once the producer's task has
/// taken every record. Brought back, the broker gets every accepted record
/// once, in order, as an rdkafka consumer reads them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_broker_down_counts_held_records_against_max_buffered_records() {
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 2_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = builder(&bootstrap)
        .buffer_memory(64 * MIB)
        .max_buffered_records(LIMIT)
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, Some(0)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.broker_down(1).unwrap();

    let (mut values, mut deliveries) = try_send_until_refused(&producer, "down", LIMIT).await;
    // The task takes everything queued; the broker stays down, the records
    // stay held, and so does the refusal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = producer
        .try_send(Record::new("t").value("too-early"))
        .expect_err("try_send accepted while the producer held its limit");
    assert_eq!(again.kind(), &ErrorKind::BufferExhausted, "{again}");

    cluster.broker_up(1).unwrap();
    let value = b"after".to_vec();
    let deadline = Instant::now() + Duration::from_secs(30);
    deliveries.push(try_send_until_taken(&producer, &value, deadline).await);
    values.push(value);
    let offsets = delivered_offsets(deliveries).await;
    let want: Vec<i64> = (1..=values.len() as i64).collect();
    assert_eq!(offsets, want, "offsets after the warm-up, in send order");
    let total = values.len() + 1;
    let read =
        tokio::task::spawn_blocking(move || workload::consume_all(&bootstrap, "t", 1, total))
            .await
            .unwrap();
    let got: Vec<Vec<u8>> = read.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(got.len(), total, "records read back");
    assert_eq!(got[0], b"warm-up");
    assert!(
        got[1..] == values[..],
        "read back: not the accepted records, once, in order"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
    drop(cluster);
}

/// `try_send`s distinct records (`tag-000000` on) to "t", yielding to the
/// producer's task every 64, until it is refused, and checks the refusal:
/// retriable, naming `limit` as `max_buffered_records`, after `limit`
/// records at least and at most one take of the task past it (the task
/// says what it holds once per pass, and takes up to this many per pass).
/// Returns the values accepted and their deliveries.
async fn try_send_until_refused(
    producer: &Producer,
    tag: &str,
    limit: usize,
) -> (Vec<Vec<u8>>, Vec<DeliveryFuture>) {
    const ONE_TAKE: usize = 1_024;
    let mut values = Vec::new();
    let mut deliveries = Vec::new();
    let refusal = loop {
        let i = values.len();
        assert!(
            i <= limit + ONE_TAKE,
            "{i} records accepted with a limit of {limit}"
        );
        let value = format!("{tag}-{i:06}").into_bytes();
        match producer.try_send(Record::new("t").value(value.clone())) {
            Ok(delivery) => {
                values.push(value);
                deliveries.push(delivery);
            }
            Err(e) => break e,
        }
        if i % 64 == 0 {
            // Lets the task take what was sent.
            tokio::task::yield_now().await;
        }
    };
    assert_eq!(refusal.kind(), &ErrorKind::BufferExhausted, "{refusal}");
    assert!(refusal.is_retriable(), "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains(&format!("max_buffered_records ({limit})")),
        "the refusal does not say why: {refusal}"
    );
    assert!(
        values.len() >= limit,
        "refused after {} records",
        values.len()
    );
    (values, deliveries)
}

/// `try_send`s a record of `value` to partition 0 of "t" until it is taken,
/// a refusal at a time (each `BufferExhausted`), failing the test past
/// `deadline`.
async fn try_send_until_taken(
    producer: &Producer,
    value: &[u8],
    deadline: Instant,
) -> DeliveryFuture {
    loop {
        match producer.try_send(Record::new("t").value(value.to_vec())) {
            Ok(delivery) => return delivery,
            Err(e) => {
                assert_eq!(e.kind(), &ErrorKind::BufferExhausted, "{e}");
                assert!(Instant::now() < deadline, "still refused: {e}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// The offsets `deliveries` report, in their order; every one must succeed.
async fn delivered_offsets(deliveries: Vec<DeliveryFuture>) -> Vec<i64> {
    let mut offsets = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        offsets.push(delivery.await.expect("an accepted record failed").offset);
    }
    offsets
}

/// Waits for `deliveries`, the records of `values` sent to partition 0 of
/// "t" after a warm-up record, and checks them against the log read back:
/// consecutive offsets in send order, and the log holds each value once,
/// in order, after the warm-up.
async fn assert_logged_in_send_order(
    cluster: &FakeCluster,
    deliveries: Vec<DeliveryFuture>,
    values: &[Vec<u8>],
) {
    let offsets = delivered_offsets(deliveries).await;
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "offsets not consecutive in send order"
    );
    let log = logged_values(cluster, "t", 0);
    assert_eq!(log[0], b"warm-up");
    assert_eq!(log.len(), values.len() + 1, "records in the log");
    assert!(
        log[1..] == values[..],
        "the log is not the accepted records in order"
    );
}

/// Records the producer's task has taken count against
/// `max_buffered_records` until they are delivered, as librdkafka counts
/// its messages until their reports: with the broker holding back its
/// Produce answers, `try_send` is refused once the producer holds the limit,
/// and stays refused once its task has taken every record (its inbox is
/// empty, the records are in batches and in flight); a `send` waits, and
/// gives up at its timeout. When the answers come the waiting send goes on,
/// `try_send` takes records again, and the log holds every accepted record
/// once, in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_counts_records_in_flight_against_max_buffered_records() {
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 2_000;
    const HELD_BACK: Duration = Duration::from_secs(3);
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = builder(&cluster.bootstrap_servers())
        .buffer_memory(64 * MIB)
        .max_buffered_records(LIMIT)
        .max_block(HELD_BACK * 3)
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    // The task lets go of the warm-up record just after reporting it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.inject(Fault::new(ApiKey::Produce).delay(HELD_BACK));
    let held_back = Instant::now();

    let (mut values, mut deliveries) = try_send_until_refused(&producer, "held", LIMIT).await;

    // The task takes everything queued; the records stay held while the
    // broker holds its answer, and so does the refusal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = producer.try_send(Record::new("t").value("too-early"));
    assert!(
        held_back.elapsed() < HELD_BACK,
        "the machine was too slow to check before the answers came"
    );
    assert_eq!(
        logged_values(&cluster, "t", 0).len(),
        1,
        "only the warm-up logged"
    );
    let again = again.expect_err("try_send accepted while the producer held its limit");
    assert_eq!(again.kind(), &ErrorKind::BufferExhausted, "{again}");
    // A send that can wait waits for room under the limit too: here for
    // its timeout, and then it fails, not accepted.
    let started = Instant::now();
    let waited = producer
        .send_with_timeout(Record::new("t").value("gives-up"), MAX_BLOCK)
        .await
        .expect_err("send accepted while the producer held its limit");
    assert_eq!(waited.kind(), &ErrorKind::BufferExhausted, "{waited}");
    assert!(!waited.possibly_persisted(), "{waited}");
    assert!(
        waited.to_string().contains("max_buffered_records"),
        "the error does not say what it waited for: {waited}"
    );
    assert!(
        started.elapsed() + EARLY >= MAX_BLOCK,
        "send waited {:?}",
        started.elapsed()
    );
    // One that waits longer goes on once the records settle.
    let waiting = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(Record::new("t").value("waited")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "a waiting send went past the limit");
    assert!(
        held_back.elapsed() < HELD_BACK,
        "the machine was too slow to check before the answers came"
    );

    // The answers come: the waiting send goes on, and try_send takes
    // records again.
    let waited = waiting
        .await
        .unwrap()
        .expect("a waiting send failed once the records settled");
    deliveries.push(waited);
    values.push(b"waited".to_vec());
    let value = b"after".to_vec();
    let deadline = held_back + HELD_BACK + Duration::from_secs(10);
    deliveries.push(try_send_until_taken(&producer, &value, deadline).await);
    values.push(value);
    assert_logged_in_send_order(&cluster, deliveries, &values).await;
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// How a [`pace_run`] sends: `send`, which waits while the brokers are
/// behind, or `try_send` (waiting with `send` only when the buffer is full).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sending {
    Wait,
    Try,
}

/// Sends `count` records of 1 KiB to `topic` on a broker slower than the
/// sender, sampling `stats().queued_bytes` every millisecond: returns the
/// most bytes queued and every record's (partition, offset, value).
async fn pace_run(
    producer: &Producer,
    topic: &str,
    count: usize,
    sending: Sending,
) -> (u64, Vec<(i32, i64, Vec<u8>)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (producer, stop) = (producer.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut most = 0u64;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(producer.stats().queued_bytes);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        })
    };
    let mut accepted = Vec::with_capacity(count);
    for i in 0..count {
        let value = payload(&format!("{sending:?}"), i, 1024);
        let record = Record::new(topic.to_string()).value(value.clone());
        let delivery = match sending {
            Sending::Wait => producer.send(record).await.unwrap(),
            Sending::Try => match producer.try_send(record) {
                Ok(delivery) => delivery,
                Err(e) if *e.kind() == ErrorKind::BufferExhausted => producer
                    .send(Record::new(topic.to_string()).value(value.clone()))
                    .await
                    .unwrap(),
                Err(e) => panic!("{e}"),
            },
        };
        accepted.push((delivery, value));
    }
    let mut results = Vec::with_capacity(count);
    for (delivery, value) in accepted {
        let md = tokio::time::timeout(Duration::from_secs(30), delivery)
            .await
            .expect("delivered in time")
            .unwrap_or_else(|e| panic!("a record failed: {e}"));
        results.push((md.partition, md.offset, value));
    }
    stop.store(true, Ordering::Relaxed);
    (sampler.await.unwrap(), results)
}

/// A producer faster than its broker (the librdkafka mock with a 20 ms
/// round trip) holds a few requests' worth of records with a waiting
/// `send`, not its whole buffer: the records would only have waited longer.
/// `try_send`, which cannot wait, still fills the buffer (which shows the
/// broker really is the slower side). The log holds every record once (its
/// high watermarks count them: the mock keeps only the last few MiB of a
/// partition, so they cannot all be read back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_send_holds_a_few_requests_not_the_buffer_when_the_broker_is_slower() {
    let _serial = SERIAL.lock().await;
    const PARTITIONS: i32 = 3;
    const PACE_BUFFER: usize = 8 * MIB;
    const RECORDS: usize = 12_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("paced", PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = quick_retries(&bootstrap)
        .buffer_memory(PACE_BUFFER)
        .batch_size(16 * 1024)
        .linger(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    producer
        .send_and_wait(Record::new("paced").value("warm-up"))
        .await
        .unwrap();
    cluster
        .broker_round_trip_time(1, Duration::from_millis(20))
        .unwrap();

    let (held_waiting, waited) = pace_run(&producer, "paced", RECORDS, Sending::Wait).await;
    let (held_trying, tried) = pace_run(&producer, "paced", RECORDS, Sending::Try).await;
    // Three partitions of 16 KiB batches on one broker: eight requests
    // ahead are 384 KiB, five in flight 240 KiB; the inbox and a pass's lag
    // add a little.
    assert!(
        held_waiting < (PACE_BUFFER / 4) as u64,
        "a waiting send held {held_waiting} bytes of an {PACE_BUFFER}-byte buffer"
    );
    assert!(
        held_trying > (PACE_BUFFER / 2) as u64,
        "try_send held only {held_trying} bytes: the broker was not the slower side"
    );

    // The log holds every record once: as many records as were sent, and no
    // two reports on one offset.
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let mut reported: Vec<(i32, i64)> = waited
        .iter()
        .chain(&tried)
        .map(|(p, offset, _)| (*p, *offset))
        .collect();
    reported.sort();
    reported.dedup();
    assert_eq!(
        reported.len(),
        2 * RECORDS,
        "two records reported at one offset"
    );
    let logged: i64 = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        (0..PARTITIONS)
            .map(|p| {
                // The mock keeps a bounded log (its low watermark moves
                // up): the high watermark counts what was appended.
                let (_, high) = consumer
                    .fetch_watermarks("paced", p, Duration::from_secs(5))
                    .unwrap();
                high
            })
            .sum()
    })
    .await
    .unwrap();
    assert_eq!(logged, (1 + 2 * RECORDS) as i64, "records in the log");
    assert!(
        reported
            .iter()
            .all(|&(p, offset)| (0..PARTITIONS).contains(&p) && offset < logged),
        "a report named an offset past the log"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
    drop(cluster);
}
