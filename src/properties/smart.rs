//! The smart partitioner's settings by name, for string-keyed
//! configuration (see the [parent module](super) for the format and the error
//! rules). The keys are this client's own (Java has no such partitioner),
//! named in the Java style under `smart.`.

use super::{boolean, millis, not_one_of, number, strategy_by_name, unknown_key};
use crate::error::Error;
use crate::health::{MissingCommit, Scoring, SmartConfig};

/// The keys [`SmartConfig::set`] takes.
pub(crate) const SMART_KEYS: &[&str] = &[
    "smart.group",
    "smart.topics",
    "smart.health.threshold",
    "smart.max.lag.for.health",
    "smart.refresh.interval.ms",
    "smart.collection.timeout.ms",
    "smart.max.age.ms",
    "smart.missing.commit",
    "smart.key.stickiness",
    "smart.key.capacity",
    "smart.avoid.slow.brokers",
    "smart.fallback",
    "smart.scoring",
    "smart.trend.window",
    "smart.stall.after.ms",
    "smart.drain.horizon.ms",
];

impl SmartConfig {
    /// Sets one setting by name: `smart.group`, `smart.topics`
    /// (comma-separated), `smart.health.threshold` (`0.0..=1.0`),
    /// `smart.max.lag.for.health`, `smart.refresh.interval.ms`,
    /// `smart.collection.timeout.ms`, `smart.max.age.ms`,
    /// `smart.missing.commit` (`fully_lagging` or `healthy`),
    /// `smart.key.stickiness`, `smart.key.capacity`,
    /// `smart.avoid.slow.brokers`, `smart.fallback`
    /// (a partitioner name, as the producer's `partitioner` key takes),
    /// `smart.scoring` (`trend` or `threshold`), `smart.trend.window`
    /// (samples), `smart.stall.after.ms` and `smart.drain.horizon.ms`.
    /// [`ProducerConfig::set`](crate::ProducerConfig::set) passes every
    /// `smart.*` key here, so a `.properties` file can turn the smart
    /// partitioner on. The scorer, collector and caches are set in code.
    ///
    /// ```
    /// use smartkafka::health::SmartConfig;
    /// let smart = SmartConfig::new("")
    ///     .set("smart.group", "order-processors")?
    ///     .set("smart.topics", "orders, refunds")?
    ///     .set("smart.refresh.interval.ms", "2000")?;
    /// assert_eq!(smart.topics, ["orders", "refunds"]);
    /// smart.validate()?;
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn set(self, key: &str, value: &str) -> Result<SmartConfig, Error> {
        Ok(match key {
            "smart.group" => SmartConfig {
                group: value.to_owned(),
                ..self
            },
            "smart.topics" => SmartConfig {
                topics: Vec::new(),
                ..self
            }
            .topics(value.split(',').map(str::trim).filter(|t| !t.is_empty())),
            "smart.health.threshold" => {
                let threshold = value.parse::<f64>().map_err(|_| {
                    Error::config(
                        "smart.health_threshold",
                        format!("`{key}`: `{value}` is not a number"),
                    )
                })?;
                self.health_threshold(threshold)
            }
            "smart.max.lag.for.health" => {
                let lag = value.parse::<u64>().map_err(|_| {
                    Error::config(
                        "smart.max_lag_for_health",
                        format!("`{key}`: `{value}` is not a whole number"),
                    )
                })?;
                self.max_lag_for_health(lag)
            }
            "smart.refresh.interval.ms" => {
                self.refresh_interval(millis("smart.refresh_interval", key, value)?)
            }
            "smart.collection.timeout.ms" => {
                self.collection_timeout(millis("smart.collection_timeout", key, value)?)
            }
            "smart.max.age.ms" => self.max_age(millis("smart.max_age", key, value)?),
            "smart.missing.commit" => self.missing_commit(match value {
                "fully_lagging" => MissingCommit::FullyLagging,
                "healthy" => MissingCommit::Healthy,
                _ => {
                    return Err(not_one_of(
                        "smart.missing_commit",
                        key,
                        value,
                        "fully_lagging, healthy",
                    ));
                }
            }),
            "smart.key.stickiness" => {
                self.key_stickiness(boolean("smart.key_stickiness", key, value)?)
            }
            "smart.key.capacity" => self.key_capacity(number("smart.key_capacity", key, value)?),
            "smart.avoid.slow.brokers" => {
                self.avoid_slow_brokers(boolean("smart.avoid_slow_brokers", key, value)?)
            }
            "smart.fallback" => self.fallback(strategy_by_name("smart.fallback", key, value)?),
            "smart.scoring" => match Scoring::from_name(value) {
                Some(scoring) => self.scoring(scoring),
                None => return Err(not_one_of("smart.scoring", key, value, "trend, threshold")),
            },
            "smart.trend.window" => self.trend_window(number("smart.trend_window", key, value)?),
            "smart.stall.after.ms" => self.stall_after(millis("smart.stall_after", key, value)?),
            "smart.drain.horizon.ms" => {
                self.drain_horizon(millis("smart.drain_horizon", key, value)?)
            }
            _ => return Err(unknown_key(key, &[SMART_KEYS])),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn every_key_sets_its_field() {
        let smart = [
            ("smart.group", "g"),
            ("smart.topics", "a,b"),
            ("smart.health.threshold", "0.25"),
            ("smart.max.lag.for.health", "500"),
            ("smart.refresh.interval.ms", "1500"),
            ("smart.collection.timeout.ms", "4000"),
            ("smart.max.age.ms", "9000"),
            ("smart.missing.commit", "healthy"),
            ("smart.key.stickiness", "true"),
            ("smart.key.capacity", "64"),
            ("smart.avoid.slow.brokers", "true"),
            ("smart.fallback", "round_robin"),
            ("smart.scoring", "trend"),
            ("smart.trend.window", "5"),
            ("smart.stall.after.ms", "7000"),
            ("smart.drain.horizon.ms", "3000"),
        ]
        .into_iter()
        .try_fold(SmartConfig::new(""), |c, (k, v)| c.set(k, v))
        .expect("valid");
        assert_eq!(smart.group, "g");
        assert_eq!(smart.topics, ["a", "b"]);
        assert_eq!(smart.health_threshold, 0.25);
        assert_eq!(smart.max_lag_for_health, 500);
        assert_eq!(smart.refresh_interval, Duration::from_millis(1500));
        assert_eq!(smart.collection_timeout, Duration::from_secs(4));
        assert_eq!(smart.max_age, Duration::from_secs(9));
        assert_eq!(smart.missing_commit, MissingCommit::Healthy);
        assert!(smart.key_stickiness);
        assert_eq!(smart.key_capacity, 64);
        assert!(smart.avoid_slow_brokers);
        assert_eq!(smart.fallback.name(), "RoundRobin");
        assert_eq!(smart.scoring, Scoring::Trend);
        assert_eq!(smart.trend.window, 5);
        assert_eq!(smart.trend.stall_after, Duration::from_secs(7));
        assert_eq!(smart.trend.drain_horizon, Duration::from_secs(3));
        smart.validate().expect("valid together");
    }

    #[test]
    fn setting_topics_again_replaces_them() {
        let smart = SmartConfig::new("g")
            .set("smart.topics", "a")
            .and_then(|c| c.set("smart.topics", "b, c"))
            .expect("valid");
        assert_eq!(smart.topics, ["b", "c"]);
    }

    #[test]
    fn bad_keys_and_values_name_what_is_wrong() {
        let e = SmartConfig::new("g")
            .set("smart.refresh.intervl.ms", "1")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean `smart.refresh.interval.ms`"),
            "{e}"
        );
        for (key, value, field) in [
            ("smart.health.threshold", "high", "smart.health_threshold"),
            ("smart.max.lag.for.health", "-1", "smart.max_lag_for_health"),
            ("smart.max.age.ms", "soon", "smart.max_age"),
            ("smart.missing.commit", "maybe", "smart.missing_commit"),
            ("smart.key.stickiness", "yes", "smart.key_stickiness"),
            ("smart.avoid.slow.brokers", "on", "smart.avoid_slow_brokers"),
            ("smart.fallback", "smart", "smart.fallback"),
        ] {
            let e = SmartConfig::new("g").set(key, value).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::Config { field }, "{key}: {e}");
            assert!(e.to_string().contains(value), "{e}");
        }
    }
}
