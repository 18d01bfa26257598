//! The fake cluster validated against an independent client, librdkafka
//! (through rust-rdkafka): idempotent produce and consume, transactions,
//! consumer groups and SASL PLAIN, so the fake cluster the other suites rely on behaves as
//! a real broker does.

#[path = "../support/mod.rs"]
mod support;

mod groups_rdkafka;
mod rdkafka_interop;
mod rdkafka_transactions;
mod security_rdkafka;
