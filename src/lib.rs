//! # smartkafka
//!
//! A pure-Rust Kafka client that speaks the Kafka wire protocol itself: no
//! librdkafka, no OpenSSL, a static binary.
//!
//! ```text
//!   your code ──► AdminClient / (producer) ──► net: tokio tasks, one per broker connection
//!                                               │  bytes in, bytes out
//!                                               ▼
//!                        protocol: framing · headers · versions · guard · error codes
//!                                               │  kafka-protocol message structs
//!                                               ▼
//!                                            broker
//! ```
//!
//! | layer | module | what it owns |
//! |---|---|---|
//! | wire | [`protocol`] | framing with a size cap, correlation ids, version negotiation, the error-code table, bounded decoding |
//! | I/O | `net` (private) | sockets, pipelined connections, timeouts, the clock |
//! | admin | [`AdminClient`] | metadata, topic creation, offset lookups |
//! | engine | [`partitioner`] | Java-compatible murmur2 with sticky keyless placement (KIP-794), librdkafka-compatible crc32, round-robin, custom |
//!
//! Every response is checked by [`protocol::guard`] before it is decoded, so
//! bytes from the network can neither panic the client nor make it allocate
//! more than a small multiple of the frame they arrived in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tokio-runtime")]
mod admin;
mod config;
mod engine;
mod error;
pub mod metadata;
#[cfg(feature = "tokio-runtime")]
mod net;
pub mod protocol;

#[cfg(feature = "tokio-runtime")]
pub use admin::{AdminClient, NewTopic, OffsetSpec};
pub use config::ClientConfig;
pub use engine::partitioner;
pub use error::{Error, ErrorKind, Result};
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
