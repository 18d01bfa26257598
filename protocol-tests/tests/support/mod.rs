//! What the interop test binaries share. Each binary includes this module
//! once (`#[path = "../support/mod.rs"] mod support;` from a directory
//! binary, `mod support;` from a single-file one) and uses what it needs:
//!
//! - [`alloc`]: the counting allocator, the same file as the client's
//!   tests use (`tests/support/alloc.rs` of the main crate);
//! - [`batch`]: record batches encoded by kafka-protocol;
//! - [`murmur`]: Kafka's murmur2, independent of the client;
//! - [`raw`]: a raw connection that speaks any request at any version;
//! - [`recorder`] and [`processor_runs`]: a processor that records its
//!   calls, and the processor runner's scenarios run against each cluster;
//! - [`workload`]: recognisable records and a rust-rdkafka reader.

#![allow(dead_code)]

#[path = "../../../tests/support/alloc.rs"]
pub mod alloc;
pub mod batch;
pub mod fixtures;
pub mod murmur;
pub mod processor_runs;
pub mod raw;
pub mod recorder;
pub mod workload;
