//! The Prometheus page: every [`HealthSummary`] becomes gauges through the
//! `metrics` facade, served by `metrics-exporter-prometheus` at
//! `http://<metrics_addr>/metrics`.
//!
//! Each exported figure is one line of a table below ([`PARTITION_GAUGES`],
//! [`TOPIC_GAUGES`], [`GROUP_GAUGES`]): a name, a description and how to
//! read it from the summary. A figure that is not known (a partition
//! without a committed offset, a topic without data yet) is not written.

use std::net::SocketAddr;

use metrics::{Unit, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use smartkafka::health::{HealthSummary, PartitionScore, TopicHealthSummary};

/// One gauge read from a summary item of type `T`.
struct Gauge<T: ?Sized> {
    name: &'static str,
    help: &'static str,
    unit: Unit,
    value: fn(&T) -> Option<f64>,
}

/// Converts a count to a gauge value; counts beyond 2^53 lose precision,
/// which no offset or lag reaches in practice.
#[allow(clippy::cast_precision_loss)]
fn f(n: i64) -> f64 {
    n as f64
}

#[allow(clippy::cast_precision_loss)]
fn fu(n: u64) -> f64 {
    n as f64
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Per partition, labelled `group`, `topic`, `partition`.
const PARTITION_GAUGES: &[Gauge<PartitionScore>] = &[
    Gauge {
        name: "smartkafka_monitor_partition_lag",
        help: "Records the group is behind on the partition (end offset - committed offset).",
        unit: Unit::Count,
        value: |p| Some(f(p.lag.lag)),
    },
    Gauge {
        name: "smartkafka_monitor_partition_committed_offset",
        help: "The group's committed offset on the partition (absent without a commit).",
        unit: Unit::Count,
        value: |p| p.lag.committed.map(f),
    },
    Gauge {
        name: "smartkafka_monitor_partition_end_offset",
        help: "The partition's end offset.",
        unit: Unit::Count,
        value: |p| Some(f(p.lag.end)),
    },
    Gauge {
        name: "smartkafka_monitor_partition_score",
        help: "The partition's health score, 0.0 (as far behind as matters) to 1.0 (keeping up).",
        unit: Unit::Count,
        value: |p| Some(p.score),
    },
    Gauge {
        name: "smartkafka_monitor_partition_healthy",
        help: "1 when the partition's score is at or above the health threshold, 0 otherwise.",
        unit: Unit::Count,
        value: |p| Some(flag(p.healthy)),
    },
    Gauge {
        name: "smartkafka_monitor_partition_processing_rate",
        help: "Records per second the group committed on the partition over the trend window.",
        unit: Unit::Count,
        value: |p| p.trend.and_then(|t| t.processing_rate),
    },
    Gauge {
        name: "smartkafka_monitor_partition_reported_capacity",
        help: "Records per second the partition's consumer reported it can process, from the processing report committed with its offset (absent without one).",
        unit: Unit::Count,
        value: |p| p.lag.processing.map(|r| r.capacity()),
    },
    Gauge {
        name: "smartkafka_monitor_partition_lag_slope",
        help: "How fast the lag changed over the last intervals, records per second.",
        unit: Unit::Count,
        value: |p| p.trend.map(|t| t.slope),
    },
    Gauge {
        name: "smartkafka_monitor_partition_routing_weight",
        help: "With trend scoring, the share of the topic's keyless records the partition is routed (0.0 to 1.0).",
        unit: Unit::Count,
        value: |p| p.routing().map(|r| r.weight),
    },
    Gauge {
        name: "smartkafka_monitor_partition_backlog",
        help: "With trend scoring, records the consumer had surely not processed at its last commit.",
        unit: Unit::Count,
        value: |p| p.routing().map(|r| r.backlog),
    },
    Gauge {
        name: "smartkafka_monitor_partition_stuck",
        help: "1 when the group's commits on the partition have frozen (stalled or stopped), 0 otherwise.",
        unit: Unit::Count,
        value: |p| p.status().map(|s| flag(s.is_stuck())),
    },
];

/// Per topic, labelled `group`, `topic`.
const TOPIC_GAUGES: &[Gauge<TopicHealthSummary>] = &[
    Gauge {
        name: "smartkafka_monitor_topic_lag",
        help: "The group's total lag on the topic.",
        unit: Unit::Count,
        value: |t| t.total_lag.map(f),
    },
    Gauge {
        name: "smartkafka_monitor_topic_healthy_partitions",
        help: "Partitions of the topic at or above the health threshold.",
        unit: Unit::Count,
        value: |t| Some(t.healthy.len() as f64),
    },
    Gauge {
        name: "smartkafka_monitor_topic_unhealthy_partitions",
        help: "Reported partitions of the topic below the health threshold.",
        unit: Unit::Count,
        value: |t| Some(t.unhealthy.len() as f64),
    },
    Gauge {
        name: "smartkafka_monitor_topic_stale",
        help: "1 when the topic's health is missing or older than max_age_ms.",
        unit: Unit::Count,
        value: |t| Some(flag(t.stale)),
    },
    Gauge {
        name: "smartkafka_monitor_topic_data_age_seconds",
        help: "How old the topic's health data is.",
        unit: Unit::Seconds,
        value: |t| t.age.map(|a| a.as_secs_f64()),
    },
];

/// Per group, labelled `group`.
const GROUP_GAUGES: &[Gauge<HealthSummary>] = &[
    Gauge {
        name: "smartkafka_monitor_refreshes",
        help: "Collection rounds completed since the monitor started.",
        unit: Unit::Count,
        value: |s| Some(fu(s.refreshes)),
    },
    Gauge {
        name: "smartkafka_monitor_failed_collections",
        help: "Collections (one topic each) that failed or timed out since the monitor started.",
        unit: Unit::Count,
        value: |s| Some(fu(s.failed_collections)),
    },
    Gauge {
        name: "smartkafka_monitor_publish_failures",
        help: "Writes of health to Redis that failed since the monitor started.",
        unit: Unit::Count,
        value: |s| Some(fu(s.routing.cache_failures)),
    },
    Gauge {
        name: "smartkafka_monitor_redis_unavailable",
        help: "1 when the last write of health to Redis failed.",
        unit: Unit::Count,
        value: |s| Some(flag(s.routing.cache_unavailable)),
    },
];

/// Starts serving the Prometheus page on `addr` and describes every gauge.
/// Must be called inside the tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    for (name, help, unit) in PARTITION_GAUGES
        .iter()
        .map(|g| (g.name, g.help, g.unit))
        .chain(TOPIC_GAUGES.iter().map(|g| (g.name, g.help, g.unit)))
        .chain(GROUP_GAUGES.iter().map(|g| (g.name, g.help, g.unit)))
    {
        describe_gauge!(name, unit, help);
    }
    Ok(())
}

/// Writes one group's summary to the gauges.
pub fn update(summary: &HealthSummary) {
    let group = summary.group.clone();
    for g in GROUP_GAUGES {
        if let Some(v) = (g.value)(summary) {
            gauge!(g.name, "group" => group.clone()).set(v);
        }
    }
    for topic in &summary.topics {
        for g in TOPIC_GAUGES {
            if let Some(v) = (g.value)(topic) {
                gauge!(g.name, "group" => group.clone(), "topic" => topic.topic.clone()).set(v);
            }
        }
        let Some(snapshot) = &topic.snapshot else {
            continue;
        };
        for partition in snapshot.partitions() {
            for g in PARTITION_GAUGES {
                if let Some(v) = (g.value)(partition) {
                    gauge!(
                        g.name,
                        "group" => group.clone(),
                        "topic" => topic.topic.clone(),
                        "partition" => partition.partition().to_string()
                    )
                    .set(v);
                }
            }
        }
    }
}
