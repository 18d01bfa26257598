//! An in-process fake Kafka cluster, for smartkafka's protocol tests and for
//! testing your own code that talks to Kafka.
//!
//! Add it as a dev-dependency (by path or git until it is published), start a
//! cluster in a `#[tokio::test]`, point your client at
//! [`FakeCluster::bootstrap_servers`], create topics with
//! [`FakeClusterBuilder::topic`] or [`FakeCluster::create_topic`], inject
//! failures with [`FakeCluster::inject`] and a [`Fault`], and read back what
//! the cluster stored with [`FakeCluster::records`] (and every request it
//! saw with [`FakeCluster::requests`]). The README's "Testing your code
//! against an in-process cluster" section has a complete example.
//!
//! The cluster speaks the Kafka wire protocol over TCP on `127.0.0.1`, decoding
//! requests with [`kafka_protocol`]'s own message types and record batches
//! with its [`RecordBatchDecoder`](kafka_protocol::records::RecordBatchDecoder).
//! It never depends on the client under test, so it checks that client's
//! encoder instead of agreeing with it.
//!
//! ```no_run
//! # async fn demo() {
//! use kafka_protocol::ResponseError;
//! use kafka_protocol::messages::ApiKey;
//! use protocol_tests::{Fault, FakeCluster};
//!
//! let cluster = FakeCluster::builder().brokers(3).topic("events", 6).build().await;
//! let bootstrap = cluster.bootstrap_servers();
//! cluster.inject(Fault::new(ApiKey::Produce).error(ResponseError::NotLeaderOrFollower));
//! // ... run a client against `bootstrap` ...
//! let stored = cluster.records("events", 0);
//! # let _ = (bootstrap, stored);
//! # }
//! ```
//!
//! Implemented APIs: ApiVersions, Metadata, CreateTopics, Produce, Fetch,
//! ListOffsets, InitProducerId, FindCoordinator, OffsetFetch, OffsetCommit,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn and TxnOffsetCommit.
//!
//! Consumer groups follow Kafka's classic group protocol (see
//! [`group_coordinator`]): member ids required on first join (KIP-394),
//! delayed join phases with the initial rebalance delay
//! ([`FakeClusterBuilder::group_initial_rebalance_delay`]), protocol
//! selection, the leader's assignment handed out by SyncGroup, heartbeats
//! and session expiry, LeaveGroup batches, static membership (KIP-345) and
//! generation-checked OffsetCommit. [`FakeCluster::group_state`],
//! [`FakeCluster::group_generation`] and [`FakeCluster::rebalances`] show
//! the coordinator's view; [`FakeCluster::move_group_coordinator`] stages a
//! coordinator failover.
//!
//! Transactions follow Kafka's coordinator (see [`txn`]): transactional
//! producer ids and epochs with fencing, partitions and groups added to a
//! transaction, commit and abort markers, pending transactional offsets,
//! transaction timeouts, the last stable offset and read_committed Fetch and
//! ListOffsets. [`FakeCluster::committed_records`] is what a read_committed
//! reader sees; [`FakeCluster::move_transaction_coordinator`] and
//! [`FakeCluster::set_transaction_marker_delay`] stage coordinator moves and
//! slow commits, and [faults](Fault) apply to every transactional API.
//!
//! Beyond per-request [faults](Fault), the cluster can prove an idempotent
//! producer correct under sustained failure: [producer state](log) with
//! Kafka's duplicate, sequence and epoch rules (and
//! [`FakeCluster::expire_producers`] / [`FakeCluster::delete_records`] to
//! lose it), [connection lifetimes](chaos) that keep killing connections,
//! some right after applying a Produce, and a [`checker`] that compares what
//! a producer was told with what the log holds.
//!
//! Fetch v7+ goes through fetch sessions (KIP-227) as Kafka's session cache
//! keeps them: bounded per broker
//! ([`FakeClusterBuilder::fetch_session_cache_slots`]), random ids, epochs
//! checked, incremental answers naming only partitions with news.
//! [`FakeCluster::evict_fetch_sessions`] drops them on demand and
//! [`FakeCluster::fetch_partitions_listed`] counts what requests listed.
//!
//! Modules: [`cluster`] (the handle and builder), `server` (accept loops and
//! connections), `handlers` (one module per API), [`log`] (batch validation
//! and partition logs, with their transactional side), [`txn`] (transaction
//! coordinator state), [`group_coordinator`] (consumer group membership),
//! `state` (shared cluster state), `fetch_sessions` (the fetch session
//! cache), [`faults`],
//! [`chaos`], [`checker`] and [`versions`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chaos;
pub mod checker;
pub mod cluster;
pub mod faults;
mod fetch_sessions;
pub mod group_coordinator;
mod handlers;
pub mod log;
mod security;
mod server;
mod state;
pub mod txn;
mod txn_coordinator;
pub mod versions;

pub use chaos::ConnectionLifetime;
pub use checker::{Checker, Outcome, Report};
pub use cluster::{FakeCluster, FakeClusterBuilder};
pub use faults::{Fault, FaultAction};
pub use fetch_sessions::FetchSessionStats;
pub use group_coordinator::{GroupMemberSnapshot, GroupPhase, GroupSnapshot};
pub use log::{BatchError, BatchHeader, ControlMarker, ProducerStateRules, StoredRecord};
pub use state::RequestRecord;
pub use txn::{
    CompletedTransaction, EndCause, TransactionOutcome, TransactionState, TransactionStatus,
};
pub use versions::{ApiVersionTable, IMPLEMENTED_APIS};

/// Re-export of the protocol crate the fake cluster decodes with, so tests
/// can name API keys and error codes without a separate dependency.
pub use kafka_protocol;
