//! The engine's interface types: its configuration, the requests it hands
//! out (`Transmit`), the events it reports, and the delivered-batch view the
//! runtime turns into per-record reports.

use std::time::Duration;

use kafka_protocol::messages::ProduceRequest;

use crate::compression::Compression;
use crate::engine::accumulator::{BatchRecords, PendingRecord};
use crate::engine::partitioner::PartitionerRecipe;
use crate::engine::txn::TxnRequest;
use crate::error::Error;
use crate::record::{RecordMetadata, Topic};

/// How many acknowledgements a Produce request waits for.
///
/// ```
/// use smartkafka::Acks;
/// assert_eq!(Acks::default(), Acks::All);
/// assert_eq!(Acks::Leader.as_i16(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Acks {
    /// No acknowledgement (`acks=0`): fire and forget; offsets are unknown
    /// and failures after the write go unnoticed.
    None,
    /// The leader wrote the records (`acks=1`).
    Leader,
    /// Every in-sync replica has the records (`acks=all`, the default).
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Who holds records back once `buffer_memory` is in use: the one owner
/// of the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferOwner {
    /// The engine: a record waits in its line until the bytes of settled
    /// records make room (the simulation and the engine's own tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Engine,
    /// Whoever calls `append` (the producer's buffer gate charges every
    /// record before it reaches the engine, in arrival order): the engine
    /// takes what arrives and only counts it.
    Caller,
}

/// Where a producer's batches are compressed: the one setting that
/// decides it, owned by the engine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompressAt {
    /// By the engine, as each batch is sealed (the simulation and the
    /// engine's own tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Seal,
    /// By the runtime's dispatch tasks, right before the request is written
    /// (the producer): the engine seals batches uncompressed and learns
    /// their compressed sizes afterwards (`note_wire_sizes`).
    Dispatch,
}

/// Engine settings (built from the producer configuration).
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) max_request_size: usize,
    /// How long a record appended without a deadline of its own may wait
    /// for its topic's metadata and for buffer space.
    pub(crate) max_block: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) compression: Compression,
    pub(crate) compression_level: Option<i32>,
    /// Who enforces `buffer_memory` (see [`BufferOwner`]).
    pub(crate) buffer_owner: BufferOwner,
    /// Where batches are compressed (see [`CompressAt`]).
    pub(crate) compress_at: CompressAt,
    pub(crate) metadata_max_age: Duration,
    pub(crate) partitioner: PartitionerRecipe,
    pub(crate) seed: u64,
    /// Idempotence (KIP-98): producer id, epochs and sequence numbers.
    pub(crate) idempotence: bool,
    /// Transactions (KIP-98): the transactional id and the timeout the
    /// coordinator aborts an open transaction after. Implies idempotence.
    pub(crate) transactional_id: Option<String>,
    pub(crate) transaction_timeout: Duration,
}

/// A request for the I/O layer to send.
#[derive(Debug)]
pub(crate) enum Transmit {
    /// A Produce request to one broker.
    Produce {
        id: u64,
        node: i32,
        addr: String,
        request: ProduceRequest,
        /// `false` with acks = 0: the broker sends no response.
        expects_response: bool,
    },
    /// An InitProducerId request (no transactional id), to `node` or
    /// (`None`) any bootstrap server. `producer_id`/`epoch` are -1 for a
    /// fresh id, or the identity to bump (KIP-360; a broker below
    /// InitProducerId v3 cannot bump, and the driver asks it for a fresh id).
    InitProducerId {
        id: u64,
        node: Option<(i32, String)>,
        producer_id: i64,
        epoch: i16,
    },
    /// A Metadata request, to `node` or (`None`) any bootstrap server.
    Metadata {
        id: u64,
        node: Option<(i32, String)>,
        topics: Vec<String>,
        /// Whether the broker may create a missing topic.
        allow_auto_topic_creation: bool,
    },
    /// A transactional request (see `txn`), to `node` (a coordinator) or
    /// (`None`) any broker.
    Txn {
        id: u64,
        node: Option<(i32, String)>,
        transactional_id: String,
        request: TxnRequest,
    },
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub(crate) error: Error,
    /// Whether the request may have reached the broker.
    pub(crate) written: bool,
}

impl SendFailure {
    /// A request that never left the client (not queued on a connection,
    /// no connection, compression failed): retrying it cannot duplicate.
    #[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
    pub(crate) fn unwritten(error: Error) -> Self {
        SendFailure {
            error,
            written: false,
        }
    }
}

/// What the engine reports about records.
#[derive(Debug)]
pub(crate) enum Event {
    /// The record is in the accumulator; `send` may return.
    Accepted { token: u64 },
    /// A batch of records is in the log (one event for all of them: no
    /// copy of the topic name per record).
    Delivered(DeliveredBatch),
    /// The record failed; `error.possibly_persisted()` says whether it may
    /// be in the log anyway. `reserved` is its size as appended
    /// (`Record::estimated_size`), so that the caller need not keep it.
    Failed {
        token: u64,
        reserved: usize,
        error: Error,
    },
    /// The producer has its first producer id (idempotence): it can send.
    Initialised,
    /// The producer cannot go on; every record failed with `error`, and so
    /// will every later one.
    Fatal { error: Error },
    /// A transactional call (`Engine::transaction`) completed.
    TxnDone { op: u64, result: Result<(), Error> },
}

/// The records of one acknowledged batch, in offset order.
#[derive(Debug)]
pub(crate) struct DeliveredBatch {
    pub(crate) topic: Topic,
    pub(crate) partition: i32,
    /// Offset of the first record; -1 when unknown (acks=0, a duplicate).
    pub(super) base_offset: i64,
    /// The broker's timestamp for the batch (LogAppendTime), or -1.
    pub(super) log_append_time: i64,
    /// The batch's base timestamp (the records' are relative to it).
    pub(super) base_timestamp: i64,
    /// Each record's token, timestamp and reserved size
    /// (`Record::estimated_size` as appended, so the caller need not keep
    /// it). Once the caller has looked the tokens up, it may put its own
    /// values in their place (the producer's runtime puts the caller's tags
    /// there for the delivery thread).
    pub(crate) records: BatchRecords,
}

impl DeliveredBatch {
    /// The offset of the batch's `index`th record (-1 when unknown).
    pub(crate) fn offset(&self, index: usize) -> i64 {
        if self.base_offset >= 0 {
            self.base_offset + index as i64
        } else {
            -1
        }
    }

    /// The timestamp the log holds for `record`.
    pub(crate) fn timestamp(&self, record: &PendingRecord) -> i64 {
        if self.log_append_time >= 0 {
            self.log_append_time
        } else {
            record.timestamp(self.base_timestamp)
        }
    }

    /// The metadata reported for the batch's `index`th record.
    pub(crate) fn metadata(&self, index: usize) -> RecordMetadata {
        RecordMetadata {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset(index),
            timestamp: self.records.get(index).map_or(-1, |r| self.timestamp(r)),
        }
    }
}
