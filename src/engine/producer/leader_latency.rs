//! How long each broker takes to answer this producer's Produce requests: a
//! moving average per broker, handed to the partitioner per partition
//! ([`PartitionView::leader_latency`](crate::partitioner::PartitionView::leader_latency))
//! so a load-aware partitioner can steer keyless records away from a slow
//! leader (the smart partitioner does with `avoid_slow_brokers`).
//!
//! A partition's figure is its leader's average as of the last answer to
//! one of its batches (one store per batch) or the last refresh of its
//! topic, whichever came later: at most every [`REFRESH`], an answer to a
//! topic's batches also copies every broker's average to each partition it
//! leads. So a partition that routing starves, because its leader was
//! slow, still learns that the leader is fast again from the answers to
//! its siblings, and the walk over a topic's partitions is paid a few
//! times a second, not per answer.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::metadata_cache::TopicInfo;

/// The weight of the newest answer in a broker's average: about the last
/// six answers count, so a broker that turns fast again shows it after a
/// handful of answers even while it receives few records.
const NEWEST_WEIGHT: f64 = 0.3;

/// How often at most a topic's partitions all take their leaders' figures.
pub(super) const REFRESH: Duration = Duration::from_millis(250);

/// Each broker's Produce latency, averaged over its answers.
#[derive(Debug, Default)]
pub(super) struct LeaderLatency {
    /// Per broker id, the average in microseconds.
    by_node: BTreeMap<i32, f64>,
}

impl LeaderLatency {
    /// `node` answered a Produce request after `latency`: returns the
    /// node's new average in microseconds, at least 1 (0 stands for
    /// "unknown" in the partitions' figures).
    pub(super) fn observe(&mut self, node: i32, latency: Duration) -> u32 {
        let sample = latency.as_secs_f64() * 1e6;
        self.by_node
            .entry(node)
            .and_modify(|a| *a += NEWEST_WEIGHT * (sample - *a))
            .or_insert(sample);
        self.of(node)
    }

    /// `node`'s average in microseconds; 0 before its first answer.
    fn of(&self, node: i32) -> u32 {
        // In range by the clamp; the cast only drops the fraction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.by_node
            .get(&node)
            .map_or(0, |a| a.round().clamp(1.0, f64::from(u32::MAX)) as u32)
    }

    /// Gives each partition of `info` (index = partition) its leader's
    /// average; partitions without a leader, or whose leader has not
    /// answered yet, keep their figure.
    pub(super) fn refresh(&self, info: &TopicInfo, figures: &mut [u32]) {
        for (figure, partition) in figures.iter_mut().zip(&info.partitions) {
            if let Some(latency) = partition
                .leader
                .map(|node| self.of(node))
                .filter(|l| *l > 0)
            {
                *figure = latency;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_follows_a_broker_turning_slow_and_keeps_brokers_apart() {
        let mut l = LeaderLatency::default();
        assert_eq!(l.observe(1, Duration::from_millis(2)), 2_000);
        assert_eq!(l.observe(2, Duration::from_micros(0)), 1, "known, not 0");
        let mut last = 0;
        for _ in 0..10 {
            last = l.observe(1, Duration::from_millis(200));
        }
        // 0.7^10 of the old figure is left: 2 ms + (198 ms × 0.972).
        assert!((194_000..=195_000).contains(&last), "{last}");
        assert_eq!(l.observe(2, Duration::from_micros(0)), 1);
    }
}
