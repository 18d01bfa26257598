//! The fake cluster's ways of losing things on purpose: connection
//! lifetimes, expired producer state and deleted records, spoken to by hand
//! and soaked by librdkafka's idempotent producer.

#[path = "../support/mod.rs"]
mod support;

mod chaos_and_retention;
mod chaos_soak_rdkafka;
