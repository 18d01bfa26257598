//! Suites against our own fake cluster (`protocol-tests`): the raw protocol
//! and transaction protocol spoken by hand, record-batch compatibility with
//! kafka-protocol and librdkafka, transactions, the partition reader, and
//! the producer end to end, tagged, idempotent and smart-partitioned; the
//! SASL exchanges spoken by hand; fetch sessions.
//!
//! The other binaries of this directory group the suites by peer
//! (`mock_cluster`, `rdkafka_interop`, `chaos`) or keep alone what must run
//! alone: `producer_memory` installs the counting allocator,
//! `producer_faults` and `producer_backpressure` time the producer, and
//! `producer_volume` pushes the most records.

#[path = "../support/mod.rs"]
mod support;

mod fetch_sessions;
mod group_consumer_fake;
mod partition_reader;
mod processor_fake;
mod producer_e2e;
mod producer_idempotence;
mod producer_tagged;
mod raw_protocol;
mod records_compat;
mod sasl_protocol;
mod sink_fake;
mod smart_partitioner;
mod transactions_fake;
mod txn_protocol;
