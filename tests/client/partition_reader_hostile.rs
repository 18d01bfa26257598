//! The partition reader against a broker that serves malformed record
//! batches in well-formed Fetch responses: a batch whose CRC does not
//! match, a batch with a correct CRC over garbage records, and a good batch
//! followed by a bad one. The reader must fail the poll with a protocol
//! error, never panic, keep its position at the bad batch, and go on after
//! a seek past it.
//!
//! The broker is the scripted one of `support::scripted_broker`, so the Fetch bytes
//! are exactly what the test says.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smartkafka::ErrorKind;
use smartkafka::compression::Compression;
use smartkafka::consumer::{PartitionReader, ReaderConfig};
use smartkafka::record_batch::BatchConfig;

use crate::support::scripted_broker::{
    ScriptedCluster, TOPIC, assigned_reader, partition_data, serve_log,
};
use crate::support::sealed_batch;

/// A valid batch of `count` records at `base_offset`.
fn batch(base_offset: i64, count: usize, compression: Compression) -> Vec<u8> {
    sealed_batch(
        BatchConfig::new(compression),
        base_offset,
        Some(b"k"),
        (0..count).map(|i| format!("record {i} {}", "x".repeat(i * 3))),
    )
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

async fn reader(batches: Vec<(i64, Vec<u8>)>) -> PartitionReader {
    let log: Vec<(i64, Bytes)> = batches
        .into_iter()
        .map(|(last, bytes)| (last, Bytes::from(bytes)))
        .collect();
    let end = log.last().map_or(0, |(last, _)| last + 1);
    let cluster = ScriptedCluster::start(
        1,
        0,
        Arc::new(move |_, offset, _| partition_data(serve_log(&log, offset), end)),
    )
    .await;
    assigned_reader(ReaderConfig::new(&cluster.bootstrap).request_timeout(Duration::from_secs(5)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_wrong_crc_fails_the_poll() {
    let mut bytes = batch(0, 5, Compression::Lz4);
    let at = bytes.len() - 2;
    bytes[at] ^= 0x5a;
    let mut reader = reader(vec![(4, bytes)]).await;
    let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("CRC"), "{err}");
    assert_eq!(reader.position(TOPIC, 0), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_records_under_a_valid_crc_fail_the_poll() {
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut bytes = batch(0, 6, codec);
        for (i, b) in bytes[61..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(73) ^ 0xa5;
        }
        fix_crc(&mut bytes);
        let mut reader = reader(vec![(5, bytes)]).await;
        let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Protocol, "{codec:?}: {err}");
        assert_eq!(reader.position(TOPIC, 0), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_first_then_the_error_then_a_seek_past_it() {
    let good = batch(0, 4, Compression::Snappy);
    let mut bad = batch(4, 3, Compression::None);
    bad[70] ^= 0xff;
    let after = batch(7, 2, Compression::None);
    let mut reader = reader(vec![(3, good), (6, bad), (8, after)]).await;
    let records = reader.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        records[3].value.as_deref(),
        Some(&b"record 3 xxxxxxxxx"[..])
    );
    let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert_eq!(
        reader.position(TOPIC, 0),
        Some(4),
        "stopped at the bad batch"
    );
    // Polling again meets the same batch again.
    assert!(reader.poll(Duration::from_secs(2)).await.is_err());
    // Past it, reading goes on.
    reader.seek(TOPIC, 0, 7).unwrap();
    let records = reader.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8]);
    assert_eq!(reader.position(TOPIC, 0), Some(9));
}
