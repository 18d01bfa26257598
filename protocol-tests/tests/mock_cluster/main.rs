//! Suites against librdkafka's mock cluster (`rdkafka::mocking`), a broker
//! and transaction coordinator independent of our fake one: the wire layer
//! with rust-rdkafka as the reference client, transactions under the errors
//! and coordinator moves the mock can inject, and our keyed partitioners
//! compared with librdkafka's.

#[path = "../support/mod.rs"]
mod support;

mod group_churn;
mod group_consumer;
mod mock_cluster;
mod partitioner_interop;
mod processor_mock;
mod sink_mock;
mod transactions_mock;
