//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, so an
//! application picks its exporter (Prometheus, StatsD, ...). With the
//! `metrics` feature off every function here compiles to nothing.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `smartkafka_sink_sent_total` | counter | topic | records a sink delivered |
//! | `smartkafka_sink_sent_bytes_total` | counter | topic | their key and value bytes |
//! | `smartkafka_sink_failed_total` | counter | topic, kind | records a sink failed to deliver (or refused) |
//! | `smartkafka_sink_retries_total` | counter | topic | sends tried again by a sink |
//! | `smartkafka_sink_latency_seconds` | histogram | topic | send to delivery acknowledgement |
//! | `smartkafka_sink_dead_lettered_total` | counter | topic | records a sink sent to its dead-letter topic |
//! | `smartkafka_breaker_trips_total` | counter | name | closed (or half-open) to open |
//! | `smartkafka_breaker_state` | gauge | name | 0 closed, 1 half-open, 2 open |
//! | `smartkafka_consumer_consumed_total` | counter | topic | records handed to a processor |
//! | `smartkafka_consumer_processed_total` | counter | topic | records processed successfully |
//! | `smartkafka_consumer_failed_total` | counter | topic | failed processing attempts |
//! | `smartkafka_consumer_retried_total` | counter | topic | records sent to a retry topic |
//! | `smartkafka_consumer_dead_lettered_total` | counter | topic | records sent to the dead-letter topic |
//! | `smartkafka_consumer_processing_seconds` | histogram | topic | one `process` call |
//! | `smartkafka_consumer_lag` | gauge | topic, partition | records behind the end of the partition |
//!
//! The metric names are also public constants in [`names`], for dashboards
//! and tests.

// The sink and the processor runner, which report these, need the tokio layer.
#![cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]

use std::time::Duration;

/// The metric names, as exported.
pub mod names {
    /// Records a sink delivered.
    pub const SINK_SENT: &str = "smartkafka_sink_sent_total";
    /// Key and value bytes a sink delivered.
    pub const SINK_SENT_BYTES: &str = "smartkafka_sink_sent_bytes_total";
    /// Records a sink failed to deliver or refused.
    pub const SINK_FAILED: &str = "smartkafka_sink_failed_total";
    /// Sends a sink tried again.
    pub const SINK_RETRIES: &str = "smartkafka_sink_retries_total";
    /// Send-to-acknowledgement latency of a sink, in seconds.
    pub const SINK_LATENCY: &str = "smartkafka_sink_latency_seconds";
    /// Records a sink sent to its dead-letter topic.
    pub const SINK_DEAD_LETTERED: &str = "smartkafka_sink_dead_lettered_total";
    /// Circuit-breaker trips.
    pub const BREAKER_TRIPS: &str = "smartkafka_breaker_trips_total";
    /// Circuit-breaker state: 0 closed, 1 half-open, 2 open.
    pub const BREAKER_STATE: &str = "smartkafka_breaker_state";
    /// Records handed to a processor.
    pub const CONSUMED: &str = "smartkafka_consumer_consumed_total";
    /// Records processed successfully.
    pub const PROCESSED: &str = "smartkafka_consumer_processed_total";
    /// Failed processing attempts.
    pub const PROCESS_FAILED: &str = "smartkafka_consumer_failed_total";
    /// Records sent to a retry topic.
    pub const RETRIED: &str = "smartkafka_consumer_retried_total";
    /// Records sent to the dead-letter topic by a processor runner.
    pub const DEAD_LETTERED: &str = "smartkafka_consumer_dead_lettered_total";
    /// Duration of one `process` call, in seconds.
    pub const PROCESSING_TIME: &str = "smartkafka_consumer_processing_seconds";
    /// Consumer lag per partition.
    pub const LAG: &str = "smartkafka_consumer_lag";
}

#[cfg(feature = "metrics")]
mod facade {
    use super::names;
    use std::time::Duration;

    pub fn sink_sent(topic: &str, bytes: usize, latency: Duration) {
        let topic = topic.to_string();
        metrics::counter!(names::SINK_SENT, "topic" => topic.clone()).increment(1);
        metrics::counter!(names::SINK_SENT_BYTES, "topic" => topic.clone())
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
        metrics::histogram!(names::SINK_LATENCY, "topic" => topic).record(latency.as_secs_f64());
    }

    pub fn sink_failed(topic: &str, kind: &str) {
        metrics::counter!(names::SINK_FAILED, "topic" => topic.to_string(), "kind" => kind.to_string())
            .increment(1);
    }

    pub fn sink_retried(topic: &str) {
        metrics::counter!(names::SINK_RETRIES, "topic" => topic.to_string()).increment(1);
    }

    pub fn sink_dead_lettered(topic: &str) {
        metrics::counter!(names::SINK_DEAD_LETTERED, "topic" => topic.to_string()).increment(1);
    }

    pub fn breaker_tripped(name: &str) {
        metrics::counter!(names::BREAKER_TRIPS, "name" => name.to_string()).increment(1);
    }

    pub fn breaker_state(name: &str, state: u8) {
        metrics::gauge!(names::BREAKER_STATE, "name" => name.to_string()).set(f64::from(state));
    }

    pub fn consumed(topic: &str, records: usize) {
        metrics::counter!(names::CONSUMED, "topic" => topic.to_string())
            .increment(u64::try_from(records).unwrap_or(u64::MAX));
    }

    pub fn processed(topic: &str, took: Duration) {
        let topic = topic.to_string();
        metrics::counter!(names::PROCESSED, "topic" => topic.clone()).increment(1);
        metrics::histogram!(names::PROCESSING_TIME, "topic" => topic).record(took.as_secs_f64());
    }

    pub fn process_failed(topic: &str) {
        metrics::counter!(names::PROCESS_FAILED, "topic" => topic.to_string()).increment(1);
    }

    pub fn retried(topic: &str) {
        metrics::counter!(names::RETRIED, "topic" => topic.to_string()).increment(1);
    }

    pub fn dead_lettered(topic: &str) {
        metrics::counter!(names::DEAD_LETTERED, "topic" => topic.to_string()).increment(1);
    }

    pub fn lag(topic: &str, partition: i32, lag: i64) {
        #[allow(clippy::cast_precision_loss)]
        let lag = lag as f64;
        metrics::gauge!(names::LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
            .set(lag);
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(clippy::missing_const_for_fn)]
mod facade {
    use std::time::Duration;

    pub fn sink_sent(_: &str, _: usize, _: Duration) {}
    pub fn sink_failed(_: &str, _: &str) {}
    pub fn sink_retried(_: &str) {}
    pub fn sink_dead_lettered(_: &str) {}
    pub fn breaker_tripped(_: &str) {}
    pub fn breaker_state(_: &str, _: u8) {}
    pub fn consumed(_: &str, _: usize) {}
    pub fn processed(_: &str, _: Duration) {}
    pub fn process_failed(_: &str) {}
    pub fn retried(_: &str) {}
    pub fn dead_lettered(_: &str) {}
    pub fn lag(_: &str, _: i32, _: i64) {}
}

/// A sink delivered a record of `bytes` key and value bytes, `latency`
/// after it was sent.
pub(crate) fn sink_sent(topic: &str, bytes: usize, latency: Duration) {
    facade::sink_sent(topic, bytes, latency);
}

/// A sink failed to deliver a record, or refused it (`kind` says why).
pub(crate) fn sink_failed(topic: &str, kind: &str) {
    facade::sink_failed(topic, kind);
}

/// A sink tried a send again.
pub(crate) fn sink_retried(topic: &str) {
    facade::sink_retried(topic);
}

/// A sink sent a record to its dead-letter topic.
pub(crate) fn sink_dead_lettered(topic: &str) {
    facade::sink_dead_lettered(topic);
}

/// The breaker `name` opened.
pub(crate) fn breaker_tripped(name: &str) {
    facade::breaker_tripped(name);
}

/// The breaker `name` is now in `state` (0 closed, 1 half-open, 2 open).
pub(crate) fn breaker_state(name: &str, state: u8) {
    facade::breaker_state(name, state);
}

/// `records` records of `topic` were handed to a processor.
pub(crate) fn consumed(topic: &str, records: usize) {
    facade::consumed(topic, records);
}

/// A record of `topic` was processed successfully in `took`.
pub(crate) fn processed(topic: &str, took: Duration) {
    facade::processed(topic, took);
}

/// Processing a record of `topic` failed once.
pub(crate) fn process_failed(topic: &str) {
    facade::process_failed(topic);
}

/// A record of `topic` went to a retry topic.
pub(crate) fn retried(topic: &str) {
    facade::retried(topic);
}

/// A record of `topic` went to the dead-letter topic.
pub(crate) fn dead_lettered(topic: &str) {
    facade::dead_lettered(topic);
}

/// The lag of `topic`-`partition` is now `lag` records.
pub(crate) fn lag(topic: &str, partition: i32, lag: i64) {
    facade::lag(topic, partition, lag);
}
