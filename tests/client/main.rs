//! The client's integration tests, one binary: the wire layer, first
//! contact, the producer and the partition reader against the in-process
//! fake cluster or a scripted broker, TLS and SASL, the smart strategy
//! configured by name, and health shared (and pushed) through Redis.
//!
//! The other binaries of `tests/` are the ones that must run alone or are
//! named elsewhere: `guard.rs` and `hostile_frames.rs` install the counting
//! allocator of `support/alloc.rs`, `producer_blocking.rs` times the
//! blocking API, and `fuzz_corpus.rs` replays the fuzz corpora (the fuzz
//! targets' README runs it by name).

#[path = "../support/mod.rs"]
mod support;

mod fake_cluster;
mod first_contact;
mod first_contact_producer;
mod health_redis;
mod health_redis_push;
mod partition_reader_hostile;
mod partition_reader_replica;
mod security;
mod smart_strategy;
mod testing_against_fake_cluster;
