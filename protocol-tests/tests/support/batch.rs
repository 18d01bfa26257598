//! Record batches as kafka-protocol encodes them, for the suites that hand
//! the fake cluster bytes the client under test never touched.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use protocol_tests::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Record `i` of a batch of `producer` (id, epoch): offset `i`, timestamp
/// `1_700_000_000_000 + i`, the given sequence, key and value, no headers,
/// not transactional.
pub fn record(
    (producer_id, producer_epoch): (i64, i16),
    i: usize,
    sequence: i32,
    key: Option<Bytes>,
    value: Bytes,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence,
        timestamp: 1_700_000_000_000 + i as i64,
        key,
        value: Some(value),
        headers: IndexMap::new(),
    }
}

/// `records` as one uncompressed v2 batch.
pub fn encode(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}
