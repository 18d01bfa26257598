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
use std::time::{Duration, Instant};

use crate::engine::metadata_cache::TopicInfo;

/// The weight of the newest answer in a broker's average when answers come
/// close together: about the last six answers count.
const NEWEST_WEIGHT: f64 = 0.3;

/// How fast the rest of the average loses weight with the time since the
/// broker's previous answer: halved per `HISTORY_HALF_LIFE` of silence, on
/// top of [`NEWEST_WEIGHT`]. A broker that routing avoids answers rarely,
/// and an average over its last six answers would describe the broker as
/// it was seconds ago: after a second without answers, the next answer
/// outweighs the history about twenty to one, so a broker that turned fast
/// again draws its share back after one answer instead of six.
const HISTORY_HALF_LIFE: Duration = Duration::from_millis(250);

/// How often at most a topic's partitions all take their leaders' figures.
pub(super) const REFRESH: Duration = Duration::from_millis(250);

/// One broker's running average.
#[derive(Debug, Clone, Copy)]
struct Average {
    /// In microseconds.
    us: f64,
    /// When the last answer joined it.
    at: Instant,
}

/// Each broker's Produce latency, averaged over its answers.
#[derive(Debug, Default)]
pub(super) struct LeaderLatency {
    by_node: BTreeMap<i32, Average>,
}

impl LeaderLatency {
    /// `node` answered a Produce request at `now` after `latency`: returns
    /// the node's new average in microseconds, at least 1 (0 stands for
    /// "unknown" in the partitions' figures).
    pub(super) fn observe(&mut self, node: i32, now: Instant, latency: Duration) -> u32 {
        let sample = latency.as_secs_f64() * 1e6;
        self.by_node
            .entry(node)
            .and_modify(|a| {
                let silence = now.saturating_duration_since(a.at);
                let kept = (1.0 - NEWEST_WEIGHT)
                    * 0.5f64.powf(silence.as_secs_f64() / HISTORY_HALF_LIFE.as_secs_f64());
                a.us = sample + kept * (a.us - sample);
                a.at = now;
            })
            .or_insert(Average {
                us: sample,
                at: now,
            });
        self.of(node)
    }

    /// `node`'s average in microseconds; 0 before its first answer.
    fn of(&self, node: i32) -> u32 {
        // In range by the clamp; the cast only drops the fraction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.by_node
            .get(&node)
            .map_or(0, |a| a.us.round().clamp(1.0, f64::from(u32::MAX)) as u32)
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
        let t0 = crate::clock::now();
        assert_eq!(l.observe(1, t0, Duration::from_millis(2)), 2_000);
        assert_eq!(
            l.observe(2, t0, Duration::from_micros(0)),
            1,
            "known, not 0"
        );
        let mut last = 0;
        for _ in 0..10 {
            // Answers close together: each weighs 0.3.
            last = l.observe(1, t0, Duration::from_millis(200));
        }
        // 0.7^10 of the old figure is left: 2 ms + (198 ms × 0.972).
        assert!((194_000..=195_000).contains(&last), "{last}");
        assert_eq!(l.observe(2, t0, Duration::from_micros(0)), 1);
    }

    #[test]
    fn after_a_silence_the_next_answer_outweighs_the_history() {
        let mut l = LeaderLatency::default();
        let t0 = crate::clock::now();
        for _ in 0..10 {
            l.observe(3, t0, Duration::from_millis(100));
        }
        // 250 ms later: the history keeps 0.7 × 0.5 of its weight.
        let at = t0 + HISTORY_HALF_LIFE;
        let figure = l.observe(3, at, Duration::from_millis(1));
        assert_eq!(figure, 1_000 + 35_000 - 350, "{figure}");
        // A second later still: 0.7 / 16 of the history is left.
        let figure = l.observe(3, at + Duration::from_secs(1), Duration::from_millis(1));
        assert!((2_510..=2_520).contains(&figure), "{figure}");
        // The same answers close together leave most of the slow figure.
        let mut close = LeaderLatency::default();
        for _ in 0..10 {
            close.observe(3, t0, Duration::from_millis(100));
        }
        let figure = close.observe(3, t0 + Duration::from_millis(1), Duration::from_millis(1));
        assert!((70_000..=71_000).contains(&figure), "{figure}");
    }
}
