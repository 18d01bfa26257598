//! Suites against librdkafka's mock cluster (`rdkafka::mocking`), a broker
//! and transaction coordinator independent of our fake one: the wire layer
//! with rust-rdkafka as the reference client, transactions under the errors
//! and coordinator moves the mock can inject, our keyed partitioners
//! compared with librdkafka's, and our consumer's fetch sessions against a
//! broker that never opens one.

#[path = "../support/mod.rs"]
mod support;

/// The suites whose consumer groups mix librdkafka and smartkafka members
/// on the mock run one at a time. The mock hands out assignments as soon as
/// the leader's SyncGroup arrives and refuses a follower's SyncGroup that
/// comes after it (INVALID_REQUEST; a Kafka broker answers it with the
/// assignment), so a follower slowed down by other suites on the same cores
/// rejoins, and a group can go round that race for a long time. Suites
/// that keep the cores busy for seconds (steady keyless load) take the
/// same lock, so they do not slow those members down.
static GROUP_SUITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod fetch_sessions_mock;
mod group_churn;
mod group_consumer;
mod keyless_load;
mod mock_cluster;
mod partitioner_interop;
mod processor_mock;
mod reported_processing_mock;
mod sink_mock;
mod slow_broker_mock;
mod smart_trend_mock;
mod transactions_mock;
