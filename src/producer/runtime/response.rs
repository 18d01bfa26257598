//! What the producer's helper tasks report to its driver: one channel, so
//! that the driver sees each request's outcome in the order it happened
//! (the wire sizes of a Produce request before its answer).

use kafka_protocol::messages::ProduceResponse;

use crate::engine::{SendFailure, TxnAnswer};
use crate::error::Error;
use crate::metadata::ClusterMetadata;
use crate::producer::runtime::outbound::WireSizes;

/// What the driver's helper tasks report back, on one channel in the order
/// they happen: Produce answers (and the wire sizes that come before them)
/// from the dispatch, metadata, producer id and transactional answers from a
/// task each.
pub(crate) enum Response {
    /// A Produce request's answer (or why it has none).
    Produce {
        id: u64,
        result: Result<ProduceResponse, SendFailure>,
    },
    /// A Metadata answer.
    Metadata {
        id: u64,
        result: Result<ClusterMetadata, Error>,
    },
    /// An InitProducerId answer: error code, producer id and epoch.
    InitProducerId {
        id: u64,
        result: Result<(i16, i64, i16), Error>,
    },
    /// A transactional request's answer.
    Txn {
        id: u64,
        result: Result<TxnAnswer, Error>,
    },
    /// Sizes of request `id`'s batches as compressed on the way out; sent
    /// before the request is written, so before its answer.
    WireSizes { id: u64, sizes: WireSizes },
}
