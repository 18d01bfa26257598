//! Health scoring: [`HealthScorer`] turns a partition's lag into a score in
//! `0.0..=1.0`, [`LinearScorer`] is the default, and [`HealthSnapshot`] holds
//! the scores of one topic at one moment.
//!
//! Nothing here reads a clock: the moment a snapshot was taken is passed in.

use std::fmt;
use std::time::{Duration, Instant};

use super::PartitionLag;
use super::trend::{PartitionStatus, Routing, TopicTrends, Trend, TrendConfig, trend_score};

/// Turns lag into health: `1.0` is a partition whose consumers keep up,
/// `0.0` one that is as far behind as matters.
///
/// Scores outside `0.0..=1.0` are clamped, and NaN counts as `0.0`.
pub trait HealthScorer: Send + Sync + fmt::Debug {
    /// The health score of one partition.
    fn score(&self, lag: &PartitionLag) -> f64;
}

/// The default scorer: `1 - min(lag, max_lag_for_health) / max_lag_for_health`.
///
/// With the default `max_lag_for_health` of 1000 records, a partition 250
/// records behind scores 0.75 and one 1000 or more behind scores 0.0.
///
/// ```
/// use smartkafka::health::{HealthScorer, LinearScorer, PartitionLag};
///
/// let scorer = LinearScorer::new(1000);
/// assert_eq!(scorer.score(&PartitionLag::from_lag(0, 0)), 1.0);
/// assert_eq!(scorer.score(&PartitionLag::from_lag(0, 250)), 0.75);
/// assert_eq!(scorer.score(&PartitionLag::from_lag(0, 5_000)), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearScorer {
    max_lag_for_health: u64,
}

impl LinearScorer {
    /// A linear scorer reaching 0.0 at `max_lag_for_health` records of lag.
    /// A maximum of 0 scores any lag at all as 0.0 and no lag as 1.0.
    pub const fn new(max_lag_for_health: u64) -> Self {
        LinearScorer { max_lag_for_health }
    }

    /// The lag at which the score reaches 0.0.
    pub const fn max_lag_for_health(&self) -> u64 {
        self.max_lag_for_health
    }
}

impl Default for LinearScorer {
    /// `max_lag_for_health` = 1000 records.
    fn default() -> Self {
        LinearScorer::new(1000)
    }
}

impl HealthScorer for LinearScorer {
    #[allow(clippy::cast_precision_loss)]
    fn score(&self, lag: &PartitionLag) -> f64 {
        let lag = u64::try_from(lag.lag).unwrap_or(0);
        if self.max_lag_for_health == 0 {
            return if lag == 0 { 1.0 } else { 0.0 };
        }
        let max = self.max_lag_for_health as f64;
        1.0 - (lag.min(self.max_lag_for_health) as f64) / max
    }
}

/// A score clamped to `0.0..=1.0`, NaN counting as `0.0`.
fn clamp_score(raw: f64) -> f64 {
    if raw.is_nan() {
        0.0
    } else {
        raw.clamp(0.0, 1.0)
    }
}

/// One partition's lag and score in a [`HealthSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PartitionScore {
    /// The lag the score was computed from.
    pub lag: PartitionLag,
    /// The score, in `0.0..=1.0`.
    pub score: f64,
    /// Whether the score is at or above the snapshot's threshold.
    pub healthy: bool,
    /// The partition's trend, with trend scoring (`None` with threshold
    /// scoring, or before the first sample).
    pub trend: Option<Trend>,
}

/// Why a partition gets no keyless records by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusion {
    /// Its consumer stopped committing while records arrive.
    Stalled,
    /// Its consumer stopped committing with lag left over.
    Stopped,
    /// It falls further behind than its consumer can process.
    Lagging,
    /// Its lag alone puts it below the threshold.
    TooMuchLag,
}

impl Exclusion {
    /// A short lower-case name, for logs, tables and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Exclusion::Stalled => "stalled",
            Exclusion::Stopped => "stopped",
            Exclusion::Lagging => "lagging",
            Exclusion::TooMuchLag => "too_much_lag",
        }
    }
}

impl PartitionScore {
    /// The partition id.
    pub fn partition(&self) -> i32 {
        self.lag.partition
    }

    /// The partition's status, with trend scoring.
    pub fn status(&self) -> Option<PartitionStatus> {
        self.trend.map(|t| t.status)
    }

    /// The partition's routing weight and why, with trend scoring (see
    /// [`Routing`]).
    pub fn routing(&self) -> Option<Routing> {
        self.trend.and_then(|t| t.routing)
    }

    /// Why the partition is not healthy; `None` when it is.
    pub fn exclusion(&self) -> Option<Exclusion> {
        if self.healthy {
            return None;
        }
        Some(match self.status() {
            Some(PartitionStatus::Stalled) => Exclusion::Stalled,
            Some(PartitionStatus::Stopped) => Exclusion::Stopped,
            Some(PartitionStatus::Lagging) => Exclusion::Lagging,
            _ => Exclusion::TooMuchLag,
        })
    }
}

/// The health of one topic's partitions at one moment.
///
/// ```
/// use std::time::{Duration, Instant};
/// use smartkafka::health::{HealthSnapshot, LinearScorer, PartitionLag};
///
/// let lags = [PartitionLag::from_lag(0, 10), PartitionLag::from_lag(1, 900), PartitionLag::from_lag(2, 0)];
/// let taken_at = Instant::now();
/// let snapshot = HealthSnapshot::new("orders", lags, &LinearScorer::new(1000), 0.5, taken_at);
/// assert_eq!(snapshot.healthy_partitions(), vec![0, 2]);
/// assert!(!snapshot.is_healthy(1));
/// assert_eq!(snapshot.total_lag(), 910);
/// assert!(!snapshot.is_stale(taken_at + Duration::from_secs(1), Duration::from_secs(15)));
/// assert!(snapshot.is_stale(taken_at + Duration::from_secs(16), Duration::from_secs(15)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    topic: String,
    taken_at: Instant,
    threshold: f64,
    partitions: Vec<PartitionScore>,
}

impl HealthSnapshot {
    /// Scores `lags` with `scorer`; a partition is healthy at or above
    /// `threshold`. `taken_at` is when the lags were collected. Partitions
    /// are kept in ascending order; a partition reported twice keeps its
    /// last figure.
    pub fn new(
        topic: impl Into<String>,
        lags: impl IntoIterator<Item = PartitionLag>,
        scorer: &dyn HealthScorer,
        threshold: f64,
        taken_at: Instant,
    ) -> Self {
        HealthSnapshot::scored(topic, lags, threshold, taken_at, |lag| {
            (clamp_score(scorer.score(lag)), None)
        })
    }

    /// Like [`new`](Self::new), with trend scoring: each partition's score
    /// is [`trend_score`] of its linear score and its trend in `trends`
    /// (which should already hold these lags, see [`TopicTrends::record`]).
    pub fn with_trends(
        topic: impl Into<String>,
        lags: impl IntoIterator<Item = PartitionLag>,
        scorer: &dyn HealthScorer,
        threshold: f64,
        taken_at: Instant,
        trends: &TopicTrends,
        config: &TrendConfig,
    ) -> Self {
        HealthSnapshot::scored(topic, lags, threshold, taken_at, |lag| {
            let linear = clamp_score(scorer.score(lag));
            match trends.trend(lag.partition, config) {
                Some(trend) => (trend_score(linear, &trend), Some(trend)),
                None => (linear, None),
            }
        })
    }

    fn scored(
        topic: impl Into<String>,
        lags: impl IntoIterator<Item = PartitionLag>,
        threshold: f64,
        taken_at: Instant,
        mut score: impl FnMut(&PartitionLag) -> (f64, Option<Trend>),
    ) -> Self {
        let mut partitions: Vec<PartitionScore> = Vec::new();
        for lag in lags {
            let (score, trend) = score(&lag);
            let entry = PartitionScore {
                lag,
                score,
                healthy: score >= threshold,
                trend,
            };
            match partitions.binary_search_by_key(&lag.partition, PartitionScore::partition) {
                Ok(i) => partitions[i] = entry,
                Err(i) => partitions.insert(i, entry),
            }
        }
        HealthSnapshot {
            topic: topic.into(),
            taken_at,
            threshold,
            partitions,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// When the lags were collected.
    pub fn taken_at(&self) -> Instant {
        self.taken_at
    }

    /// The score at or above which a partition is healthy.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Every partition reported, ascending.
    pub fn partitions(&self) -> &[PartitionScore] {
        &self.partitions
    }

    /// The entry for `partition`, if reported.
    pub fn get(&self, partition: i32) -> Option<&PartitionScore> {
        self.partitions
            .binary_search_by_key(&partition, PartitionScore::partition)
            .ok()
            .map(|i| &self.partitions[i])
    }

    /// The score of `partition`, if reported.
    pub fn score(&self, partition: i32) -> Option<f64> {
        self.get(partition).map(|p| p.score)
    }

    /// Whether `partition` was reported and scores at or above the threshold.
    pub fn is_healthy(&self, partition: i32) -> bool {
        self.get(partition).is_some_and(|p| p.healthy)
    }

    /// The healthy partitions, ascending.
    pub fn healthy_partitions(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|p| p.healthy)
            .map(PartitionScore::partition)
            .collect()
    }

    /// The reported partitions that are not healthy, ascending.
    pub fn unhealthy_partitions(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|p| !p.healthy)
            .map(PartitionScore::partition)
            .collect()
    }

    /// The sum of the lags of every reported partition.
    pub fn total_lag(&self) -> i64 {
        self.partitions
            .iter()
            .fold(0i64, |sum, p| sum.saturating_add(p.lag.lag))
    }

    /// How old the snapshot is at `now` (zero if `now` is earlier).
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.taken_at)
    }

    /// Whether the snapshot is older than `max_age` at `now`.
    pub fn is_stale(&self, now: Instant, max_age: Duration) -> bool {
        self.age(now) > max_age
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tests need some instant to start from; the logic never reads the clock.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn t0() -> Instant {
        Instant::now()
    }

    #[derive(Debug)]
    struct Wild;
    impl HealthScorer for Wild {
        fn score(&self, lag: &PartitionLag) -> f64 {
            match lag.partition {
                0 => f64::NAN,
                1 => 7.0,
                _ => -3.0,
            }
        }
    }

    #[test]
    fn health_linear_scores_follow_the_formula() {
        let s = LinearScorer::default();
        assert_eq!(s.max_lag_for_health(), 1000);
        for (lag, expected) in [
            (0, 1.0),
            (100, 0.9),
            (500, 0.5),
            (999, 0.001),
            (1000, 0.0),
            (10_000, 0.0),
            (-5, 1.0),
        ] {
            let got = s.score(&PartitionLag::from_lag(0, lag));
            assert!(
                (got - expected).abs() < 1e-12,
                "lag {lag}: {got} != {expected}"
            );
        }
        let zero = LinearScorer::new(0);
        assert_eq!(zero.score(&PartitionLag::from_lag(0, 0)), 1.0);
        assert_eq!(zero.score(&PartitionLag::from_lag(0, 1)), 0.0);
    }

    #[test]
    fn health_threshold_is_inclusive_and_scores_are_clamped() {
        let now = t0();
        let lags = [500, 501, 0]
            .iter()
            .enumerate()
            .map(|(p, l)| PartitionLag::from_lag(p as i32, *l));
        let snap = HealthSnapshot::new("t", lags, &LinearScorer::new(1000), 0.5, now);
        assert_eq!(snap.healthy_partitions(), vec![0, 2]);
        assert_eq!(snap.unhealthy_partitions(), vec![1]);
        assert!(!snap.is_healthy(9));
        assert_eq!(snap.score(9), None);

        let wild = HealthSnapshot::new(
            "t",
            (0..3).map(|p| PartitionLag::from_lag(p, 0)),
            &Wild,
            0.5,
            now,
        );
        assert_eq!(wild.score(0), Some(0.0));
        assert_eq!(wild.score(1), Some(1.0));
        assert_eq!(wild.score(2), Some(0.0));
    }

    #[test]
    fn health_snapshot_sorts_and_keeps_the_last_duplicate() {
        let now = t0();
        let lags = [
            PartitionLag::from_lag(3, 0),
            PartitionLag::from_lag(1, 0),
            PartitionLag::from_lag(3, 5000),
        ];
        let snap = HealthSnapshot::new("t", lags, &LinearScorer::default(), 0.5, now);
        let ids: Vec<i32> = snap
            .partitions()
            .iter()
            .map(PartitionScore::partition)
            .collect();
        assert_eq!(ids, vec![1, 3]);
        assert!(!snap.is_healthy(3));
        assert_eq!(snap.age(now - Duration::from_secs(1)), Duration::ZERO);
    }
}
