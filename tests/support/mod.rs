//! What the client test binaries share: the counting allocator, the
//! scripted brokers, and fixtures (a one-topic fake cluster, sealed batches). Each binary includes this
//! module once (`#[path = "../support/mod.rs"] mod support;` from a
//! directory binary, `mod support;` from a single-file one) and uses what it
//! needs.

#![allow(dead_code)]

pub mod alloc;
pub mod scripted_broker;

use protocol_tests::FakeCluster;
use smartkafka::record_batch::{AppendOutcome, BatchBuilder, BatchConfig};

/// A sealed batch built by our own encoder, holding `values` (each with
/// `key`) and renumbered to start at `base_offset`, as a broker would
/// store it.
pub fn sealed_batch(
    config: BatchConfig,
    base_offset: i64,
    key: Option<&[u8]>,
    values: impl IntoIterator<Item = String>,
) -> Vec<u8> {
    let mut builder = BatchBuilder::new(config, 1_700_000_000_000);
    for value in values {
        let outcome = builder
            .try_append(1_700_000_000_000, key, Some(value.as_bytes()), &[])
            .unwrap();
        assert_eq!(outcome, AppendOutcome::Appended);
    }
    let mut bytes = builder.seal().unwrap().bytes().to_vec();
    bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes
}

/// A fake cluster of `brokers` brokers with one topic of `partitions`
/// partitions.
pub async fn cluster(brokers: usize, topic: &str, partitions: i32) -> FakeCluster {
    FakeCluster::builder()
        .brokers(brokers)
        .topic(topic, partitions)
        .build()
        .await
}
