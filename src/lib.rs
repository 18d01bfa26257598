//! # smartkafka
//!
//! A pure-Rust Kafka client that speaks the Kafka wire protocol itself: no
//! librdkafka, no OpenSSL, a static binary.
//!
//! ```text
//!   your code ──► Producer ──► producer runtime: driver task ──► engine (sans-IO: metadata
//!             │                     │              cache, accumulator, retries, partitioner)
//!             ├─► AdminClient ──────┤
//!             ├─► PartitionReader ──┤ consumer: fetcher per broker, batch decoding,
//!             │                     │           read_committed filter
//!             └─► lag collector ────┤
//!                                   ▼ net: one broker pool per client, one pipelined
//!                                   │      connection per broker, reconnect backoff
//!                                   ▼
//!                        protocol: framing · headers · versions · guard · error codes
//!                                               │  kafka-protocol message structs
//!                                               ▼
//!                                            broker
//! ```
//!
//! | layer | module | what it owns |
//! |---|---|---|
//! | wire | [`protocol`] | framing with a size cap, correlation ids, version negotiation, the error-code table, bounded decoding |
//! | I/O | `net` (private) | the broker pool every client shares: sockets, pipelined connections, ApiVersions, reconnect backoff, timeouts, the clock |
//! | producer | [`Producer`], [`blocking::Producer`] | send / delivery futures, flush, close, stats; transactions (`init_transactions`, `begin_transaction`, `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`, the [`Transaction`] guard); configuration in [`ProducerConfig`] |
//! | records | [`Record`], [`RecordMetadata`] | what is sent and where it landed |
//! | record batches | [`record_batch`] | Kafka's RecordBatch v2: encoded as records are appended on the produce path, read and verified on the fetch path, compressed per batch with the [`compression`] codecs |
//! | serialization | [`serialization`] | the [`serialization::Serializer`] / [`serialization::Deserializer`] traits; raw bytes, UTF-8, JSON (`json` feature), postcard (`postcard` feature) |
//! | typed sink | [`sink`] | [`sink::Sink`]: typed keys and values to one topic, message ids with a bounded delivery tracker, circuit breaker, retries and a dead-letter topic, metrics |
//! | admin | [`AdminClient`] | metadata, topic creation, offset lookups |
//! | consumer | [`consumer`] | the group [`consumer::Consumer`] (membership, assignors, commits, rebalance listener, a record stream) and the [`consumer::PartitionReader`] (assigned partitions from chosen offsets, read_committed filtering of aborted transactions, positions as offsets to commit), both fetching ahead; group metadata for transactional producers |
//! | processing | [`processor`] | the [`processor::Processor`] trait and its [`processor::ProcessorRunner`]: retries with backoff, retry and dead-letter topics, commits of finished records only, key-ordered concurrency |
//! | failures and metrics | [`failure_headers`], [`telemetry`] | the headers of retry and dead-letter records; counters, gauges and histograms through the `metrics` facade (`metrics` feature) |
//! | smart partitioning | [`health`] | consumer lag per partition, health scores, the lag-aware [`health::SmartPartitioner`] and its background [`health::HealthManager`] (with the `tokio-runtime` feature) |
//! | engine | `engine` (private), [`partitioner`] | sans-IO accumulator, metadata cache, retries, idempotence and transaction state machines; Java-compatible murmur2 with sticky keyless placement (KIP-794), librdkafka-compatible crc32, round-robin, the lag-aware smart strategy ([`partitioner::PartitionStrategy::Smart`]), custom |
//!
//! Every response is checked by [`protocol::guard`] before it is decoded, so
//! bytes from the network can neither panic the client nor make it allocate
//! more than a small multiple of the frame they arrived in.
//!
//! # Example
//!
//! Produce a record and wait for its delivery. This one runs against the
//! in-process cluster of the `protocol-tests` crate; point
//! `bootstrap_servers` at your own cluster instead.
//!
//! ```
//! # #[cfg(feature = "tokio-runtime")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use smartkafka::{Producer, Record};
//!
//! let cluster = protocol_tests::FakeCluster::builder().topic("events", 3).build().await;
//! let producer = Producer::builder()
//!     .bootstrap_servers(&cluster.bootstrap_servers())
//!     .build()
//!     .await?;
//! let delivery = producer.send(Record::new("events").key("user-42").value("clicked")).await?;
//! let metadata = delivery.await?;
//! assert_eq!(metadata.topic.as_str(), "events");
//! assert!(metadata.offset >= 0);
//! producer.close(std::time::Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio-runtime"))]
//! # fn main() {}
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
#[cfg(feature = "tokio-runtime")]
mod admin;
#[cfg(feature = "tokio-runtime")]
pub mod blocking;
mod client_config;
#[cfg(feature = "tokio-runtime")]
mod clock;
pub mod compression;
pub mod consumer;
mod engine;
mod error;
pub mod failure_headers;
mod group;
pub mod health;
pub mod metadata;
#[cfg(feature = "tokio-runtime")]
mod net;
pub mod partitioner;
#[cfg(feature = "tokio-runtime")]
pub mod processor;
#[cfg(feature = "tokio-runtime")]
mod producer;
mod properties;
pub mod protocol;
mod record;
pub mod record_batch;
pub mod security;
pub mod serialization;
#[cfg(feature = "tokio-runtime")]
pub mod sink;
pub mod telemetry;
mod topic_name;

#[cfg(feature = "tokio-runtime")]
pub use admin::{AdminClient, CommittedOffset, NewTopic, OffsetSpec};
pub use client_config::ClientConfig;
pub use engine::{Acks, BrokerStats, PartitionStats, ProducerStats};
pub use error::{Error, ErrorKind, Result};
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
#[cfg(feature = "tokio-runtime")]
pub use producer::{
    DeliveryCallback, DeliveryFuture, Producer, ProducerBuilder, ProducerConfig,
    StatisticsCallback, Transaction,
};
pub use record::{Header, Record, RecordMetadata, Topic};

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(all(doctest, feature = "tokio-runtime"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
