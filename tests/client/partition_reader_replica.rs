//! Fetching from a follower (KIP-392): with a client rack set, a leader
//! that names a preferred read replica is left for that replica, whose
//! records are read; without one, the reader stays at the leader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::BrokerId;
use smartkafka::consumer::ReaderConfig;
use smartkafka::record_batch::BatchConfig;

use crate::support::scripted_broker::{
    ScriptedCluster, TOPIC, assigned_reader, partition_data, serve_log,
};
use crate::support::sealed_batch;

const LEADER: i32 = 0;
const REPLICA: i32 = 2;

fn log() -> Vec<(i64, Bytes)> {
    (0..3i64)
        .map(|b| {
            let bytes = sealed_batch(
                BatchConfig::default(),
                b * 4,
                None,
                (0..4).map(|i| format!("batch {b} record {i}")),
            );
            (b * 4 + 3, Bytes::from(bytes))
        })
        .collect()
}

/// Three brokers; the leader sends readers in rack `east` to the replica.
async fn cluster() -> ScriptedCluster {
    let log = log();
    ScriptedCluster::start(
        3,
        LEADER,
        Arc::new(move |broker, offset, rack| {
            if broker == LEADER && rack == "east" {
                let mut data = partition_data(Bytes::new(), 12);
                data.preferred_read_replica = BrokerId(REPLICA);
                data
            } else {
                partition_data(serve_log(&log, offset), 12)
            }
        }),
    )
    .await
}

async fn read_all(config: ReaderConfig) -> Vec<String> {
    let mut reader = assigned_reader(config).await;
    let mut values = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while values.len() < 12 && tokio::time::Instant::now() < deadline {
        for r in reader.poll(Duration::from_millis(500)).await.unwrap() {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(reader.position(TOPIC, 0), Some(12));
    values
}

fn expected() -> Vec<String> {
    (0..3)
        .flat_map(|b| (0..4).map(move |i| format!("batch {b} record {i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_with_a_rack_reads_from_the_preferred_replica() {
    let cluster = cluster().await;
    let values = read_all(ReaderConfig::new(&cluster.bootstrap).client_rack("east")).await;
    assert_eq!(values, expected());
    let fetches = cluster.fetches();
    assert_eq!(
        fetches[0].broker, LEADER,
        "first at the leader: {fetches:?}"
    );
    assert!(fetches.iter().all(|f| f.rack == "east"));
    // The leader answered without records; everything came from the
    // replica, starting at the first offset.
    assert_eq!(fetches[1].broker, REPLICA, "{fetches:?}");
    assert_eq!(fetches[1].offset, 0, "{fetches:?}");
    assert!(
        fetches[1..].iter().all(|f| f.broker == REPLICA),
        "{fetches:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_without_a_rack_reads_from_the_leader() {
    let cluster = cluster().await;
    let values = read_all(ReaderConfig::new(&cluster.bootstrap)).await;
    assert_eq!(values, expected());
    let fetches = cluster.fetches();
    assert!(
        fetches
            .iter()
            .all(|f| f.broker == LEADER && f.rack.is_empty()),
        "{fetches:?}"
    );
}
