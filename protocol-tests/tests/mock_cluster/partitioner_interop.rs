//! Keyed partitioning against librdkafka: the same keys are produced with
//! rust-rdkafka to the librdkafka mock cluster, and the partition each
//! delivery report names must be the partition our strategies choose.
//!
//! librdkafka's `murmur2_random` is the Java client's keyed partitioning, so
//! agreeing with it checks [`DefaultPartitioner`] and
//! [`Murmur2RandomPartitioner`] against both clients; `consistent_random` and
//! `consistent` check the CRC-32 strategies.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use smartkafka::partitioner::{
    ConsistentPartitioner, ConsistentRandomPartitioner, DefaultPartitioner,
    Murmur2RandomPartitioner, PartitionView, Partitioner, crc32_partition, murmur2_partition,
};

/// Keys per partition count and strategy.
const KEYS: usize = 100_000;

/// Records the partition of every delivery report, by record index.
struct Deliveries {
    partitions: Mutex<Vec<i32>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let partition = match result {
            Ok(message) => message.partition(),
            Err((err, _)) => panic!("record {index} was not delivered: {err}"),
        };
        let mut partitions = self.partitions.lock().unwrap();
        if let Some(slot) = partitions.get_mut(index) {
            *slot = partition;
        }
    }
}

/// Produces one record per key (`None` = no key) to a fresh mock cluster
/// whose topic `t` has `partition_count` partitions, with librdkafka's
/// `partitioner` setting and any `extra` settings; returns the partition
/// librdkafka chose for each record.
fn librdkafka_partitions(
    partitioner: &str,
    partition_count: i32,
    keys: &[Option<Vec<u8>>],
    extra: &[(&str, &str)],
) -> Vec<i32> {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    cluster.create_topic("t", partition_count, 1).unwrap();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("partitioner", partitioner)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    for (name, value) in extra {
        config.set(*name, *value);
    }
    let context = Deliveries {
        partitions: Mutex::new(vec![-1; keys.len()]),
    };
    let producer: BaseProducer<Deliveries> = config.create_with_context(context).unwrap();

    for (index, key) in keys.iter().enumerate() {
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to("t", index);
        if let Some(key) = key {
            record = record.key(&key[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((err, _)) => panic!("could not produce record {index}: {err}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let partitions = producer.context().partitions.lock().unwrap().clone();
    assert!(
        partitions
            .iter()
            .all(|&p| (0..partition_count).contains(&p)),
        "every record was delivered to a partition of the topic"
    );
    partitions
}

/// `count` keys drawn from a SplitMix64 seeded with `seed`, of lengths
/// `min_len..=40` bytes.
fn random_keys(seed: u64, count: usize, min_len: usize) -> Vec<Option<Vec<u8>>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let len = min_len + (next() % (41 - min_len as u64)) as usize;
            Some((0..len).map(|_| next() as u8).collect())
        })
        .collect()
}

/// Asserts that `ours` picks librdkafka's partition for every keyed record.
fn assert_same_partitions(
    what: &str,
    ours: &mut dyn Partitioner,
    partition_count: u32,
    keys: &[Option<Vec<u8>>],
    theirs: &[i32],
) {
    let all: Vec<i32> = (0..partition_count as i32).collect();
    let view = PartitionView::new("t", partition_count, &all);
    let mut mismatches = 0;
    for (key, &expected) in keys.iter().zip(theirs) {
        let key = key.as_deref();
        let chosen = ours.partition(key, None, &view).unwrap();
        if chosen != expected {
            mismatches += 1;
            assert!(
                mismatches > 5,
                "{what}, {partition_count} partitions: key {key:02x?} went to {expected} \
                 with librdkafka but {chosen} here"
            );
        }
    }
    assert_eq!(mismatches, 0, "{what}, {partition_count} partitions");
}

#[test]
fn murmur2_keys_land_where_librdkafka_murmur2_random_puts_them() {
    // Lengths from 0: empty (non-null) keys are hashed by murmur2 too.
    let keys = random_keys(0x6d75_726d_7572_3200, KEYS, 0);
    assert!(keys.iter().any(|k| k.as_ref().is_some_and(Vec::is_empty)));
    for partition_count in [6, 7] {
        let theirs = librdkafka_partitions("murmur2_random", partition_count, &keys, &[]);
        let count = partition_count as u32;
        let used: BTreeSet<i32> = theirs.iter().copied().collect();
        assert_eq!(used.len(), partition_count as usize);

        assert_same_partitions(
            "DefaultPartitioner",
            &mut DefaultPartitioner::new(1),
            count,
            &keys,
            &theirs,
        );
        assert_same_partitions(
            "Murmur2RandomPartitioner",
            &mut Murmur2RandomPartitioner::new(1),
            count,
            &keys,
            &theirs,
        );
        for (key, &expected) in keys.iter().zip(&theirs) {
            let key = key.as_deref().unwrap_or_default();
            assert_eq!(murmur2_partition(key, count), Ok(expected));
        }
    }
}

#[test]
fn crc32_keys_land_where_librdkafka_consistent_random_puts_them() {
    // Lengths from 1: consistent_random does not hash empty keys.
    let keys = random_keys(0x6372_6333_3200, KEYS, 1);
    for partition_count in [6, 7] {
        let theirs = librdkafka_partitions("consistent_random", partition_count, &keys, &[]);
        let count = partition_count as u32;
        let used: BTreeSet<i32> = theirs.iter().copied().collect();
        assert_eq!(used.len(), partition_count as usize);

        assert_same_partitions(
            "ConsistentRandomPartitioner",
            &mut ConsistentRandomPartitioner::new(1),
            count,
            &keys,
            &theirs,
        );
        assert_same_partitions(
            "ConsistentPartitioner",
            &mut ConsistentPartitioner::new(),
            count,
            &keys,
            &theirs,
        );
        for (key, &expected) in keys.iter().zip(&theirs) {
            let key = key.as_deref().unwrap_or_default();
            assert_eq!(crc32_partition(key, count), Ok(expected));
        }
    }
}

/// Empty and missing keys, where librdkafka's strategies differ: `consistent`
/// hashes both as no bytes (CRC-32 0, partition 0), `consistent_random`
/// hashes neither, and `murmur2_random` hashes an empty key but not a missing
/// one. With `sticky.partitioning.linger.ms` at 0 librdkafka draws a fresh
/// partition for every record it does not hash, so those spread over the
/// topic where ours stick until a batch completes.
#[test]
fn empty_and_missing_keys_follow_librdkafka() {
    let partition_count = 5;
    let empty: Vec<Option<Vec<u8>>> = vec![Some(Vec::new()); 300];
    let missing: Vec<Option<Vec<u8>>> = vec![None; 300];
    let no_linger = [("sticky.partitioning.linger.ms", "0")];
    let all = [0, 1, 2, 3, 4];
    let view = PartitionView::new("t", partition_count as u32, &all);
    let spread = |partitions: &[i32]| partitions.iter().copied().collect::<BTreeSet<_>>().len();

    // consistent: empty and missing keys both hashed to partition 0.
    let mut ours = ConsistentPartitioner::new();
    for keys in [&empty, &missing] {
        let theirs = librdkafka_partitions("consistent", partition_count, keys, &no_linger);
        assert!(theirs.iter().all(|&p| p == 0), "{theirs:?}");
        assert_eq!(ours.partition(keys[0].as_deref(), None, &view), Ok(0));
    }

    // consistent_random: empty keys drawn like missing ones.
    let theirs = librdkafka_partitions("consistent_random", partition_count, &empty, &no_linger);
    assert!(spread(&theirs) > 1, "empty keys are not hashed");
    let mut ours = ConsistentRandomPartitioner::new(2);
    let mut drawn = BTreeSet::new();
    for _ in 0..100 {
        let p = ours.partition(Some(b""), None, &view).unwrap();
        assert_eq!(ours.partition(None, None, &view), Ok(p));
        drawn.insert(p);
        ours.on_new_batch(p, &view);
    }
    assert!(drawn.len() > 1);

    // murmur2_random: empty keys hashed (like the Java client), missing keys
    // drawn.
    let theirs = librdkafka_partitions("murmur2_random", partition_count, &empty, &no_linger);
    let expected = murmur2_partition(b"", partition_count as u32).unwrap();
    assert!(theirs.iter().all(|&p| p == expected), "{theirs:?}");
    let mut ours = Murmur2RandomPartitioner::new(2);
    assert_eq!(ours.partition(Some(b""), None, &view), Ok(expected));
    let mut ours = DefaultPartitioner::new(2);
    assert_eq!(ours.partition(Some(b""), None, &view), Ok(expected));
    let theirs = librdkafka_partitions("murmur2_random", partition_count, &missing, &no_linger);
    assert!(spread(&theirs) > 1, "missing keys are not hashed");
}
