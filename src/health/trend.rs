//! Health that sees trends: a short window of (committed offset, end
//! offset, time) per partition, from which come the consumer's processing
//! rate, the producers' arrival rate, the lag's slope and a status in the
//! spirit of Burrow's consumer evaluation ([`PartitionStatus`]). A partition
//! draining a burst is then told apart from one whose consumer is dead.
//!
//! Everything here is pure: the time of each sample is passed in.
//!
//! The status rules, in order (the first that holds wins):
//!
//! | status | rule |
//! |---|---|
//! | [`Stalled`](PartitionStatus::Stalled) | lag > 0, the committed offset has not moved for longer than the stall limit, and new records keep arriving |
//! | [`Stopped`](PartitionStatus::Stopped) | lag > 0, the committed offset has not moved for longer than the stall limit, and nothing new arrives either |
//! | [`Ok`](PartitionStatus::Ok) | the newest lag is 0 |
//! | [`Lagging`](PartitionStatus::Lagging) | the lag grew over the last two intervals |
//! | [`CatchingUp`](PartitionStatus::CatchingUp) | the lag shrank over the last interval |
//! | [`Ok`](PartitionStatus::Ok) | the lag holds steady while commits move (a consumer that keeps up and commits every few seconds) |
//! | [`Unknown`](PartitionStatus::Unknown) | one sample only, or a steady lag without commits seen to move (lag reported without offsets): scored by its lag alone |
//!
//! The stall rules need committed offsets: lag reported without them
//! ([`PartitionLag::from_lag`]) is never called stalled or stopped.
//!
//! The stall limit learns how often the group commits: twice the longest
//! gap seen between two commit moves, and at least three sample intervals,
//! so a consumer that commits every 5 s while lag is sampled every second
//! is not taken for a stalled one. Before any commit has moved it is
//! [`TrendConfig::stall_after`].
//!
//! A consumer that reports its own processing time with its commits
//! ([`ProcessingReport`]) is routed by that capacity instead of by what its
//! commits and lag suggest (see [`TopicTrends::record`]).
//!
//! Offsets going backwards (a consumer reset to an earlier offset, a topic
//! recreated or truncated) restart the window; samples not newer than the
//! last one are ignored. Rates are never negative and never NaN.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::{PartitionLag, ProcessingReport};

/// What the window says about a partition's consumer, after Burrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartitionStatus {
    /// Keeping up: no lag, or a steady lag with commits moving.
    Ok,
    /// Behind, but the lag is shrinking: it keeps receiving records.
    CatchingUp,
    /// Behind and falling further behind while still committing.
    Lagging,
    /// Commits frozen while records keep arriving: avoided at once.
    Stalled,
    /// Commits frozen, nothing arriving, lag left over.
    Stopped,
    /// No trend to go by: a single sample, or a steady lag without
    /// commits seen to move. Scored by its lag alone.
    Unknown,
}

impl PartitionStatus {
    /// A short lower-case name (`ok`, `catching_up`, ...), for logs,
    /// tables and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            PartitionStatus::Ok => "ok",
            PartitionStatus::CatchingUp => "catching_up",
            PartitionStatus::Lagging => "lagging",
            PartitionStatus::Stalled => "stalled",
            PartitionStatus::Stopped => "stopped",
            PartitionStatus::Unknown => "unknown",
        }
    }

    /// Whether the consumer has stopped making progress (stalled or
    /// stopped): such a partition gets keyless records only when no other
    /// partition can take them.
    pub fn is_stuck(self) -> bool {
        matches!(self, PartitionStatus::Stalled | PartitionStatus::Stopped)
    }
}

/// The trend of one partition, from its window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Trend {
    /// The status.
    pub status: PartitionStatus,
    /// Records the consumer committed per second over the window (`None`
    /// without committed offsets on both ends).
    pub processing_rate: Option<f64>,
    /// Records produced to the partition per second over the window.
    pub arrival_rate: f64,
    /// How fast the lag changed over the last two intervals, in records
    /// per second (negative: shrinking).
    pub slope: f64,
    /// Samples in the window.
    pub samples: usize,
    /// The newest lag in the window.
    pub lag: i64,
    /// How much of the topic's keyless records the partition is given
    /// and why (see [`Routing`]); `None` until every partition of the
    /// topic has rates and committed offsets.
    pub routing: Option<Routing>,
}

/// Why a partition gets the routing weight it gets (trend scoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoutingReason {
    /// No constraint: an even share of what the constrained partitions
    /// leave (and more when its consumer shows room to spare).
    Even,
    /// Its consumer has a backlog (or falls behind what arrives): it gets
    /// its measured capacity minus the backlog over the drain horizon, and
    /// at least a small floor so it keeps receiving while it drains.
    Draining,
    /// Its backlog is gone: it gets a share below the capacity measured
    /// while it had a backlog, so the backlog does not build again.
    Settling,
    /// Its backlog has stayed gone: its share grows with time until
    /// it reaches an even share (a consumer that recovered gets its share
    /// back) or a backlog builds again (the share drops).
    Probing,
    /// Its consumer has a backlog and commits nothing (or it is stalled
    /// or stopped): it gets nothing.
    NotMoving,
    /// Every consumer of the topic reported its processing time
    /// ([`ProcessingReport`](super::ProcessingReport)): a share in
    /// proportion to the records per second its consumer can process,
    /// halved while it has a backlog. No probing: a consumer that recovers
    /// says so with its next commit.
    Reported,
}

impl RoutingReason {
    /// A short lower-case name (`even`, `draining`, ...), for logs, tables
    /// and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            RoutingReason::Even => "even",
            RoutingReason::Draining => "draining",
            RoutingReason::Settling => "settling",
            RoutingReason::Probing => "probing",
            RoutingReason::NotMoving => "not_moving",
            RoutingReason::Reported => "reported",
        }
    }
}

/// The routing weight trend scoring gives one partition, apart from its
/// health score, and what it came from.
///
/// The weight is the partition's share of the topic's keyless records:
/// its target rate over the records per second arriving on the whole
/// topic. See [`TopicTrends::record`] for the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Routing {
    /// The share of the topic's keyless records, in `0.0..=1.0`.
    pub weight: f64,
    /// Records per second the partition should receive.
    pub target_rate: f64,
    /// Records its consumer had surely not processed at its newest commit:
    /// the end offset at the collection before the one that first saw that
    /// commit, less the committed offset (at least 0). The lag a group
    /// leaves between its commits is not backlog, whenever it commits.
    pub backlog: f64,
    /// Records per second its consumer processed while it had a backlog
    /// (the last measure is kept once the backlog is gone; `None` when it
    /// has had none, or once it is back to an even share), or, with
    /// [`RoutingReason::Reported`], the records per second its consumer
    /// reported it can process.
    pub capacity: Option<f64>,
    /// Why.
    pub reason: RoutingReason,
}

/// How the window behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrendConfig {
    /// Samples kept per partition (at least 2; default 10).
    pub window: usize,
    /// How long commits may stay still before a partition with lag counts
    /// as stalled, until the window has seen how often the group commits
    /// (default 10 s).
    pub stall_after: Duration,
    /// How soon a partition's backlog should be drained: a partition with
    /// a backlog is given its consumer's capacity minus the backlog over
    /// this horizon (default 2 s).
    pub drain_horizon: Duration,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            window: 10,
            stall_after: Duration::from_secs(10),
            drain_horizon: Duration::from_secs(2),
        }
    }
}

/// Gaps between commit moves remembered to learn the commit interval.
const COMMIT_GAPS: usize = 8;
/// Intervals the slope is taken over: short, so a change of direction
/// shows within two refreshes.
const SLOPE_INTERVALS: usize = 2;
/// Share of an even share a partition draining its backlog keeps
/// receiving (while its consumer moves).
const DRAIN_FLOOR: f64 = 0.25;
/// Backlog below this many seconds of an even share counts as none.
const BACKLOG_FLOOR_SECS: f64 = 0.1;
/// Share of the measured capacity a partition gets once drained.
const SETTLE: f64 = 0.7;
/// Growth of a probing partition's target per second: 1.25 times, and
/// at least a tenth of an even share more. Probes, waits and probation
/// are counted in seconds, so collecting lag more often sees a probe's
/// effect sooner without making probes bolder.
const PROBE_GROWTH: f64 = 1.25;
/// See [`PROBE_GROWTH`].
const PROBE_STEP: f64 = 0.1;
/// Seconds after a probe reaches an even share during which a backlog
/// counts at once (and makes the next wait longer).
const PROBATION_SECS: f64 = 3.0;
/// Longest a settled partition waits before probing upward, in seconds:
/// the wait doubles (from [`FIRST_HOLD_SECS`]) each time a probe brings a
/// backlog back, and restarts once the partition is back to an even
/// share.
const MAX_HOLD_SECS: f64 = 2.0;
/// See [`MAX_HOLD_SECS`].
const FIRST_HOLD_SECS: f64 = 1.0;
/// Seconds below which a wait or probation counts as over (what is left
/// of it after rounding).
const TICK: f64 = 1e-3;
/// Share of the partition's proportional share a partition with a backlog
/// gets while its consumer reports its processing time.
const REPORTED_DRAIN: f64 = 0.5;
/// The shortest time per record a report counts with (a microsecond), so a
/// consumer reporting no time at all does not take every record.
const MIN_PER_RECORD_SECS: f64 = 1e-6;
/// A consumer committing less than this share of what arrives, with its
/// lag growing, two refreshes running, is behind even before its lag
/// shows a backlog.
const BEHIND: f64 = 0.8;

/// A finite, non-negative rate or count; anything else is 0.
fn sane(x: f64) -> f64 {
    if x.is_finite() { x.max(0.0) } else { 0.0 }
}

/// What one partition's window measures for routing, at its newest sample.
#[derive(Debug, Clone, Copy)]
struct Measure {
    /// See [`Routing::backlog`].
    backlog: f64,
    /// The lag less half what arrives between two commits (the lag an
    /// average moment between commits leaves): what a partition known to
    /// be behind is drained of.
    queue: f64,
    /// Records committed per second over the recent span.
    processing: f64,
    /// Records arriving per second over the whole window.
    arrival: f64,
    stuck: bool,
    /// Records per second the consumer reported it can process, with its
    /// newest commit.
    reported: Option<f64>,
    /// Some backlog, and lag grew over the recent span while the consumer
    /// committed less than [`BEHIND`] of what arrived.
    behind: bool,
}

/// The routing state a window keeps between refreshes.
#[derive(Debug, Clone, Copy, Default)]
struct RouteState {
    routing: Option<Routing>,
    /// Seconds to wait before the next probe.
    hold_left: f64,
    /// The wait after the next settle, in seconds (0 before the first).
    hold: f64,
    /// Seconds left, after a probe reached an even share, during which a
    /// backlog counts at once.
    probation: f64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    committed: Option<i64>,
    end: i64,
    lag: i64,
    processing: Option<ProcessingReport>,
}

/// The window of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionWindow {
    samples: VecDeque<Sample>,
    /// When the window (re)started: commits count as still from here
    /// until they are seen to move.
    started_at: Option<Instant>,
    /// When the committed offset was last seen to move.
    commit_moved_at: Option<Instant>,
    /// Recent gaps between commit moves.
    commit_gaps: VecDeque<Duration>,
    /// Routing state, updated once per [`TopicTrends::record`].
    route: RouteState,
}

impl PartitionWindow {
    /// Adds a sample taken at `at`, keeping at most `window` samples.
    pub fn push(&mut self, lag: &PartitionLag, at: Instant, window: usize) {
        let sample = Sample {
            at,
            committed: lag.committed,
            end: lag.end,
            lag: lag.lag.max(0),
            processing: lag.processing,
        };
        if let Some(last) = self.samples.back().copied() {
            if at <= last.at {
                return;
            }
            let went_back = sample.end < last.end
                || matches!((sample.committed, last.committed), (Some(now), Some(before)) if now < before);
            if went_back {
                self.samples.clear();
                self.started_at = Some(at);
                self.commit_moved_at = None;
                self.commit_gaps.clear();
                self.route = RouteState::default();
            } else if sample.committed != last.committed {
                // Only the gap between two moves seen is a commit interval:
                // the window may have started in the middle of one.
                if let Some(moved) = self.commit_moved_at {
                    if self.commit_gaps.len() == COMMIT_GAPS {
                        self.commit_gaps.pop_front();
                    }
                    self.commit_gaps
                        .push_back(at.saturating_duration_since(moved));
                }
                self.commit_moved_at = Some(at);
            }
        } else {
            self.started_at = Some(at);
        }
        self.samples.push_back(sample);
        while self.samples.len() > window.max(2) {
            self.samples.pop_front();
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// How long the committed offset may stay still before the partition
    /// counts as stalled.
    fn stall_limit(&self, config: &TrendConfig) -> Duration {
        let interval = match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if self.samples.len() > 1 => {
                let span = last.at.saturating_duration_since(first.at);
                span / u32::try_from(self.samples.len() - 1).unwrap_or(u32::MAX)
            }
            _ => Duration::ZERO,
        };
        let learnt = self.commit_gaps.iter().max().map(|gap| *gap * 2);
        learnt.unwrap_or(config.stall_after).max(interval * 3)
    }

    /// The mean time between samples.
    fn interval(&self) -> Duration {
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if self.samples.len() > 1 => {
                let span = last.at.saturating_duration_since(first.at);
                span / u32::try_from(self.samples.len() - 1).unwrap_or(u32::MAX)
            }
            _ => Duration::ZERO,
        }
    }

    /// The median of the gaps seen between this partition's commit moves.
    fn learnt_gap(&self) -> Option<Duration> {
        let mut gaps: Vec<Duration> = self.commit_gaps.iter().copied().collect();
        gaps.sort_unstable();
        gaps.get(gaps.len() / 2).copied()
    }

    /// The group's usual gap between commits: the one learnt on this
    /// partition, or else on the topic's other partitions (`topic_gap`),
    /// or else, before the group is seen to commit twice anywhere, all the
    /// time the window has seen (the stall rules judge such a partition).
    fn commit_gap(&self, topic_gap: Option<Duration>) -> Duration {
        self.learnt_gap().or(topic_gap).unwrap_or_else(|| {
            match (self.started_at, self.samples.back()) {
                (Some(start), Some(last)) => last.at.saturating_duration_since(start),
                _ => Duration::ZERO,
            }
            .max(self.interval())
        })
    }

    /// Backlog and recent processing rate at the newest sample; `None`
    /// without two samples with committed offsets.
    fn measure(&self, config: &TrendConfig, topic_gap: Option<Duration>) -> Option<Measure> {
        let trend = self.trend(config)?;
        let last = *self.samples.back()?;
        let committed = last.committed?;
        if self.samples.len() < 2 {
            return None;
        }
        let interval = self.interval();
        let gap = self.commit_gap(topic_gap);
        // The recent span covers at least two commit intervals, so a group
        // that commits now and then is not measured between two commits,
        // and one commit late or early moves the rate little.
        let reach = (interval * 2).max(gap * 2 + interval / 2);
        let start = self
            .samples
            .iter()
            .rev()
            .skip(1)
            .find(|s| last.at.saturating_duration_since(s.at) >= reach)
            .or(self.samples.front())
            .copied()?;
        let span = last.at.saturating_duration_since(start.at).as_secs_f64();
        if span <= 0.0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let per_second = |delta: i64| sane(delta as f64 / span);
        let processing = per_second(committed.saturating_sub(start.committed?));
        let recent_arrival = per_second(last.end.saturating_sub(start.end));
        let backlog = self.sure_backlog(committed);
        #[allow(clippy::cast_precision_loss)]
        let queue = sane(last.lag as f64 - recent_arrival * gap.as_secs_f64() / 2.0);
        Some(Measure {
            backlog,
            queue,
            processing,
            arrival: trend.arrival_rate,
            stuck: trend.status.is_stuck(),
            reported: last
                .processing
                .map(|r| 1.0 / r.per_record().as_secs_f64().max(MIN_PER_RECORD_SECS)),
            behind: backlog > 0.0 && last.lag > start.lag && processing < BEHIND * recent_arrival,
        })
    }

    /// What the consumer had surely not processed when it made its newest
    /// commit (`committed`): the end offset at the collection before the
    /// one that first saw that commit, less the committed offset. The
    /// commit came after that collection, so every record counted had
    /// arrived by then; when the group commits or the lag is collected
    /// makes no difference, and a consumer keeping up shows none. Before
    /// a commit is seen to move: what arrived before the window began and
    /// is still not committed.
    fn sure_backlog(&self, committed: i64) -> f64 {
        let seen = (1..self.samples.len())
            .rev()
            .find(|i| self.samples[*i].committed != self.samples[i - 1].committed);
        let before = self.samples[seen.map_or(0, |i| i - 1)];
        #[allow(clippy::cast_precision_loss)]
        let behind = before.end.saturating_sub(committed) as f64;
        sane(behind)
    }

    /// The routing decided at the last [`TopicTrends::record`].
    pub fn routing(&self) -> Option<Routing> {
        self.route.routing
    }

    /// The trend, or `None` for an empty window.
    pub fn trend(&self, config: &TrendConfig) -> Option<Trend> {
        let last = *self.samples.back()?;
        let first = *self.samples.front()?;
        let samples = self.samples.len();
        let span = last.at.saturating_duration_since(first.at).as_secs_f64();
        let per_second = |delta: i64| {
            if span > 0.0 {
                #[allow(clippy::cast_precision_loss)]
                let rate = delta as f64 / span;
                if rate.is_finite() { rate } else { 0.0 }
            } else {
                0.0
            }
        };
        let processing_rate = match (first.committed, last.committed) {
            (Some(a), Some(b)) if samples > 1 => Some(per_second(b.saturating_sub(a)).max(0.0)),
            _ => None,
        };
        let arrival_rate = per_second(last.end.saturating_sub(first.end)).max(0.0);
        let recent = self.samples[samples.saturating_sub(SLOPE_INTERVALS + 1)];
        let recent_span = last.at.saturating_duration_since(recent.at).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let slope = if recent_span > 0.0 {
            let s = last.lag.saturating_sub(recent.lag) as f64 / recent_span;
            if s.is_finite() { s } else { 0.0 }
        } else {
            0.0
        };
        // Commits still since the last move seen, or since the window began.
        let still_since = self.commit_moved_at.or(self.started_at).unwrap_or(first.at);
        let still_for = last.at.saturating_duration_since(still_since);
        let previous = self.samples.get(samples.wrapping_sub(2)).copied();
        let before_previous = self.samples.get(samples.wrapping_sub(3)).copied();
        let status = match previous {
            None if last.lag == 0 => PartitionStatus::Ok,
            None => PartitionStatus::Unknown,
            Some(_)
                if last.lag > 0
                    && last.committed.is_some()
                    && still_for > self.stall_limit(config) =>
            {
                if last.end > first.end {
                    PartitionStatus::Stalled
                } else {
                    PartitionStatus::Stopped
                }
            }
            Some(_) if last.lag == 0 => PartitionStatus::Ok,
            // Growing over the last two intervals (or the only one).
            Some(prev)
                if last.lag > prev.lag && before_previous.is_none_or(|b| prev.lag >= b.lag) =>
            {
                PartitionStatus::Lagging
            }
            Some(prev) if last.lag < prev.lag => PartitionStatus::CatchingUp,
            // A steady lag is a consumer keeping up only if its commits
            // are seen to move.
            Some(_) if processing_rate.is_some_and(|r| r > 0.0) => PartitionStatus::Ok,
            Some(_) => PartitionStatus::Unknown,
        };
        Some(Trend {
            status,
            processing_rate,
            arrival_rate,
            slope,
            samples,
            lag: last.lag,
            routing: self.route.routing,
        })
    }

    /// Seconds since the previous sample (at most ten): how far one
    /// refresh moves the routing's clocks.
    fn last_gap(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let gap = self.samples[n - 1]
            .at
            .saturating_duration_since(self.samples[n - 2].at);
        gap.as_secs_f64().min(10.0)
    }

    /// Routing by the capacity the consumer reported: `share` of the
    /// topic's records (its capacity over the topic's), halved while it has
    /// a backlog, nothing while it is stuck or has a backlog and commits
    /// nothing. The probing state starts over, for when reports stop.
    fn step_reported(&mut self, m: Measure, share: f64, even: f64) {
        let floor_backlog = (even * BACKLOG_FLOOR_SECS).max(1.0);
        let backlog = m.backlog > floor_backlog;
        let target = if m.stuck || (backlog && m.processing <= 0.0) {
            0.0
        } else if backlog {
            share * REPORTED_DRAIN
        } else {
            share
        };
        self.route = RouteState {
            routing: Some(Routing {
                weight: 0.0,
                target_rate: sane(target),
                backlog: m.backlog,
                capacity: m.reported,
                reason: if target > 0.0 {
                    RoutingReason::Reported
                } else {
                    RoutingReason::NotMoving
                },
            }),
            ..RouteState::default()
        };
    }

    /// Moves this partition's routing state on by one refresh, given its
    /// measure and the topic's even share (records per second); sets the
    /// target rate, leaving the weight to the caller.
    fn step(&mut self, m: Measure, even: f64, horizon: f64) {
        let previous = self.route.routing;
        let was = previous.map(|r| r.reason);
        let dt = self.last_gap();
        let on_probation = self.route.probation > TICK;
        self.route.probation = (self.route.probation - dt).max(0.0);
        let floor_backlog = (even * BACKLOG_FLOOR_SECS).max(1.0);
        let mut capacity = previous.and_then(|r| r.capacity);
        // Falling behind counts only to catch a probe that went too far:
        // on its own, commit timing makes it too noisy.
        let probing = on_probation || was == Some(RoutingReason::Probing);
        let before = previous.map_or(0.0, |r| r.backlog);
        let over = m.backlog > floor_backlog || (m.behind && probing);
        let confirmed = over;
        let (reason, target) = if m.stuck || (confirmed && m.processing <= 0.0) {
            (RoutingReason::NotMoving, 0.0)
        } else if confirmed {
            if on_probation || matches!(was, Some(RoutingReason::Settling | RoutingReason::Probing))
            {
                // A backlog again after settling: wait longer before the
                // next probe.
                self.route.hold = (self.route.hold.max(FIRST_HOLD_SECS) * 2.0).min(MAX_HOLD_SECS);
            }
            capacity = if before > floor_backlog {
                // Busy with a backlog over the whole span: what it
                // processed is what it can.
                Some(m.processing)
            } else {
                // A backlog just seen: it may have processed all that came
                // until then, so it can do at least that, and at least
                // what was known before (an even share if nothing was).
                Some(capacity.unwrap_or(even).max(m.processing))
            };
            let drain = m.processing - m.backlog.max(m.queue) / horizon;
            (
                RoutingReason::Draining,
                drain.max(even * DRAIN_FLOOR).min(even),
            )
        } else {
            match (capacity, was) {
                (None, _) => (RoutingReason::Even, even),
                (Some(c), Some(RoutingReason::Draining | RoutingReason::NotMoving) | None) => {
                    self.route.hold_left = self.route.hold.max(FIRST_HOLD_SECS);
                    (RoutingReason::Settling, c * SETTLE)
                }
                (Some(_), _) if self.route.hold_left > TICK || over => {
                    self.route.hold_left = (self.route.hold_left - dt).max(0.0);
                    let kept = previous.map_or(0.0, |r| r.target_rate);
                    (
                        was.filter(|r| *r == RoutingReason::Probing)
                            .unwrap_or(RoutingReason::Settling),
                        kept,
                    )
                }
                (Some(_), _) => {
                    let before = previous.map_or(even, |r| r.target_rate);
                    if before >= even {
                        // A refresh at an even share kept up: back to even,
                        // on probation for a few seconds.
                        self.route.probation = PROBATION_SECS;
                        (RoutingReason::Even, even)
                    } else {
                        let grown = (before * PROBE_GROWTH.powf(dt))
                            .max(before + even * PROBE_STEP * dt)
                            .min(even);
                        (RoutingReason::Probing, grown)
                    }
                }
            }
        };
        let (reason, target, capacity) = if matches!(reason, RoutingReason::Even)
            || (reason == RoutingReason::Settling && target >= even)
        {
            // Back to an even share: forget the capacity and the waits.
            self.route.hold = FIRST_HOLD_SECS;
            self.route.hold_left = 0.0;
            (RoutingReason::Even, even, None)
        } else {
            (reason, sane(target), capacity)
        };
        self.route.routing = Some(Routing {
            weight: 0.0,
            target_rate: target,
            backlog: m.backlog,
            capacity,
            reason,
        });
    }
}

/// The windows of every partition of one topic.
#[derive(Debug, Clone, Default)]
pub struct TopicTrends {
    partitions: BTreeMap<i32, PartitionWindow>,
}

impl TopicTrends {
    /// Adds one collection's lags, taken at `at`; partitions no longer
    /// reported are forgotten. Then decides each partition's routing
    /// weight ([`Routing`]), once every partition has two samples with
    /// committed offsets and records arrive on the topic.
    ///
    /// When the newest commit of every partition carries its consumer's
    /// [`ProcessingReport`], each partition gets the topic's records in
    /// proportion to the records per second its consumer reported it can
    /// process, half that while it has a backlog, and nothing while it is
    /// stalled or stopped, or has a backlog and commits nothing
    /// ([`Reported`](RoutingReason::Reported)). A consumer given little
    /// work still says how fast it is, so nothing is probed. Otherwise
    /// (some consumer does not report) the rules go by commits and lag:
    ///
    /// - **backlog**: what the consumer had surely not processed at its
    ///   newest commit ([`Routing::backlog`]); less than a tenth of a
    ///   second of an even share counts as none;
    /// - right after a probe, some backlog with a consumer that committed
    ///   less than 0.8 of what arrived while its lag grew counts as a
    ///   backlog too;
    /// - then, with commits not moving, or for a stalled or stopped
    ///   partition: nothing ([`NotMoving`](RoutingReason::NotMoving));
    /// - otherwise `capacity − queue / drain horizon`, where the queue is
    ///   the lag less half what arrives between commits and the capacity
    ///   what its consumer committed per second over the last two commit
    ///   intervals (once the backlog has lasted two refreshes; when it is
    ///   first seen, that rate only raises what was known, or an even
    ///   share); at least a quarter of an even share (it keeps
    ///   receiving while it drains) and at most an even share
    ///   ([`Draining`](RoutingReason::Draining));
    /// - once drained: 0.7 × that capacity
    ///   ([`Settling`](RoutingReason::Settling)), then, after a wait of
    ///   one second (two once a probe has brought a backlog back), 1.25×
    ///   more each second and at least a tenth of an even share more per
    ///   second ([`Probing`](RoutingReason::Probing)) up to an even share,
    ///   kept ([`Even`](RoutingReason::Even)) once a refresh at it shows
    ///   no backlog (a backlog in the next three seconds counts at once).
    ///   Waits and probes are timed in seconds, not refreshes, so
    ///   collecting more often sees a probe's effect sooner without making
    ///   the probes bolder;
    /// - the others share evenly what the constrained ones leave.
    ///
    /// The weight is the target rate over the topic's arrival rate.
    pub fn record(&mut self, lags: &[PartitionLag], at: Instant, config: &TrendConfig) {
        self.partitions
            .retain(|p, _| lags.iter().any(|l| l.partition == *p));
        for lag in lags {
            self.partitions
                .entry(lag.partition)
                .or_default()
                .push(lag, at, config.window);
        }
        self.route(config);
    }

    /// Decides every partition's routing (see [`record`](Self::record)).
    fn route(&mut self, config: &TrendConfig) {
        let mut gaps: Vec<Duration> = self
            .partitions
            .values()
            .filter_map(PartitionWindow::learnt_gap)
            .collect();
        gaps.sort_unstable();
        let topic_gap = gaps.get(gaps.len() / 2).copied();
        let measures: Option<Vec<Measure>> = self
            .partitions
            .values()
            .map(|w| w.measure(config, topic_gap))
            .collect();
        let total: f64 = measures
            .as_ref()
            .map_or(0.0, |m| sane(m.iter().map(|m| m.arrival).sum()));
        let (Some(measures), true) = (measures, total > 0.0) else {
            for window in self.partitions.values_mut() {
                window.route = RouteState::default();
            }
            return;
        };
        #[allow(clippy::cast_precision_loss)]
        let even = total / self.partitions.len().max(1) as f64;
        let horizon = config.drain_horizon.as_secs_f64().max(0.001);
        let reported: Option<Vec<f64>> = measures
            .iter()
            .map(|m| m.reported.map(|r| if m.stuck { 0.0 } else { r }))
            .collect();
        let reported_total: f64 = reported.iter().flatten().sum();
        match reported {
            Some(capacities) if reported_total.is_finite() && reported_total > 0.0 => {
                let windows = self.partitions.values_mut().zip(&measures);
                for ((window, m), capacity) in windows.zip(capacities) {
                    window.step_reported(*m, total * capacity / reported_total, even);
                }
            }
            _ => {
                for (window, m) in self.partitions.values_mut().zip(&measures) {
                    window.step(*m, even, horizon);
                }
            }
        }
        let routings = || self.partitions.values().filter_map(|w| w.route.routing);
        let constrained: f64 = routings()
            .filter(|r| r.reason != RoutingReason::Even)
            .map(|r| r.target_rate)
            .sum();
        let evens = routings()
            .filter(|r| r.reason == RoutingReason::Even)
            .count();
        #[allow(clippy::cast_precision_loss)]
        let even_share = if evens > 0 {
            sane(total - constrained) / evens as f64
        } else {
            0.0
        };
        let sum: f64 = routings()
            .map(|r| {
                if r.reason == RoutingReason::Even {
                    even_share
                } else {
                    r.target_rate
                }
            })
            .sum();
        for window in self.partitions.values_mut() {
            if let Some(r) = window.route.routing.as_mut() {
                if r.reason == RoutingReason::Even {
                    r.target_rate = even_share;
                }
                r.weight = if sum > 0.0 {
                    sane(r.target_rate / sum).min(1.0)
                } else {
                    0.0
                };
            }
        }
    }

    /// The trend of `partition`, if it has samples.
    pub fn trend(&self, partition: i32, config: &TrendConfig) -> Option<Trend> {
        self.partitions.get(&partition)?.trend(config)
    }
}

/// The score trend scoring gives a partition: the linear score from its
/// lag (`linear`) adjusted by its trend.
///
/// | status | score |
/// |---|---|
/// | ok | 1.0 |
/// | catching up | at least 0.8 (it keeps receiving while it drains) |
/// | lagging | `linear` × the share of arrivals the consumer processes (`processing_rate / arrival_rate`, at most 1; half without rates) |
/// | stalled, stopped | 0.0 |
/// | unknown | `linear` |
pub fn trend_score(linear: f64, trend: &Trend) -> f64 {
    let linear = if linear.is_nan() {
        0.0
    } else {
        linear.clamp(0.0, 1.0)
    };
    let score = match trend.status {
        PartitionStatus::Ok => 1.0,
        PartitionStatus::CatchingUp => linear.max(0.8),
        PartitionStatus::Lagging => {
            let keeps = match trend.processing_rate {
                Some(processing) if trend.arrival_rate > 0.0 => processing / trend.arrival_rate,
                _ => 0.5,
            };
            linear
                * if keeps.is_finite() {
                    keeps.clamp(0.0, 1.0)
                } else {
                    0.0
                }
        }
        PartitionStatus::Stalled | PartitionStatus::Stopped => 0.0,
        PartitionStatus::Unknown => linear,
    };
    score.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::MissingCommit;
    use crate::health::score::tests::t0;

    const S: Duration = Duration::from_secs(1);

    /// Feeds `(committed, end)` samples one second apart and returns the
    /// status after each.
    fn statuses(samples: &[(Option<i64>, i64)]) -> Vec<PartitionStatus> {
        let config = TrendConfig::default();
        let start = t0();
        let mut window = PartitionWindow::default();
        samples
            .iter()
            .enumerate()
            .map(|(i, (committed, end))| {
                let lag = PartitionLag::new(0, *committed, *end, MissingCommit::FullyLagging);
                window.push(&lag, start + S * u32::try_from(i).unwrap(), config.window);
                window.trend(&config).unwrap().status
            })
            .collect()
    }

    use PartitionStatus::*;

    #[test]
    fn a_burst_then_draining_is_catching_up_not_stalled() {
        // Keeping up, then 5,000 records arrive at once, then the
        // consumer drains them at 1,000/s.
        let got = statuses(&[
            (Some(100), 100),
            (Some(200), 200),
            (Some(300), 5_300),
            (Some(1_300), 5_300),
            (Some(2_300), 5_300),
            (Some(3_300), 5_300),
            (Some(5_300), 5_300),
        ]);
        assert_eq!(
            got,
            [Ok, Ok, Lagging, CatchingUp, CatchingUp, CatchingUp, Ok]
        );
    }

    #[test]
    fn frozen_commits_while_records_arrive_are_a_stall() {
        let mut samples = vec![(Some(0), 0)];
        for i in 1..=14 {
            samples.push((Some(100), 100 + 100 * i));
        }
        let got = statuses(&samples);
        // Lagging while commits might still come, stalled once they have
        // been still for longer than the default 10 s.
        assert_eq!(got[2], Lagging);
        assert_eq!(*got.last().unwrap(), Stalled);
        assert!(got.iter().all(|s| *s != CatchingUp));
    }

    #[test]
    fn a_group_that_stopped_with_lag_left_is_stopped() {
        let samples: Vec<_> = (0..13).map(|_| (Some(50), 400)).collect();
        let got = statuses(&samples);
        assert_eq!(got[0], Unknown);
        assert_eq!(*got.last().unwrap(), Stopped);
    }

    #[test]
    fn a_consumer_that_commits_every_five_seconds_is_not_stalled() {
        // 100 records/s arrive; the consumer keeps up but commits only
        // every 5 s, while lag is sampled every second.
        let samples: Vec<_> = (0..40)
            .map(|t: i64| (Some((t / 5) * 5 * 100), 100 * t))
            .collect();
        let got = statuses(&samples);
        assert!(
            got.iter().all(|s| !s.is_stuck()),
            "a slow committer taken for a stalled consumer: {got:?}"
        );
        // The learnt limit still catches a real stall: commits stop.
        let mut stalled = samples.clone();
        for t in 40..70 {
            stalled.push((Some(3_500), 100 * t));
        }
        assert_eq!(*statuses(&stalled).last().unwrap(), Stalled);
    }

    #[test]
    fn the_stall_limit_learns_a_group_that_commits_every_fifteen_seconds() {
        // Longer between commits than the default 10 s limit: once two
        // commit moves have been seen, the limit is twice their gap.
        let samples: Vec<_> = (0..90)
            .map(|t: i64| (Some((t / 15) * 15 * 10), 10 * t))
            .collect();
        let got = statuses(&samples);
        assert!(
            got[31..].iter().all(|s| !s.is_stuck()),
            "stalls reported after learning: {:?}",
            &got[31..]
        );
        // Before any gap is learnt the default limit applies.
        assert!(
            got[11..15].iter().all(|s| *s == Stalled),
            "{:?}",
            &got[..16]
        );
    }

    #[test]
    fn a_restarted_consumer_and_a_truncated_log_restart_the_window() {
        let got = statuses(&[
            (Some(1_000), 1_000),
            (Some(2_000), 2_000),
            // Reset to an earlier offset: a restart from scratch.
            (Some(0), 2_100),
            (Some(500), 2_200),
            // The topic was recreated: the end went backwards.
            (Some(0), 10),
            (Some(10), 20),
        ]);
        assert_eq!(got[2], Unknown, "one sample after the restart");
        assert_eq!(got[3], CatchingUp);
        assert_eq!(got[4], Unknown);
        assert_eq!(got[5], Ok, "a steady lag with commits moving");
    }

    #[test]
    fn rates_come_from_the_window_and_are_never_negative() {
        let config = TrendConfig::default();
        let start = t0();
        let mut w = PartitionWindow::default();
        for (i, (c, e)) in [(0, 0), (1_000, 1_500), (2_000, 3_000)].iter().enumerate() {
            let lag = PartitionLag::new(0, Some(*c), *e, MissingCommit::FullyLagging);
            w.push(&lag, start + S * u32::try_from(i).unwrap(), config.window);
        }
        let t = w.trend(&config).unwrap();
        assert_eq!(t.processing_rate, Some(1_000.0));
        assert_eq!(t.arrival_rate, 1_500.0);
        assert_eq!(t.slope, 500.0);
        assert_eq!(t.status, Lagging);
        assert!((trend_score(1.0, &t) - 2.0 / 3.0).abs() < 1e-9);
        // A sample that is not newer is ignored.
        let before = w.len();
        w.push(&PartitionLag::from_lag(0, 5), start, config.window);
        assert_eq!(w.len(), before);
    }

    proptest::proptest! {
        /// Whatever the samples (offsets going backwards, huge or negative
        /// values, repeated or earlier timestamps), the window neither
        /// panics nor yields a rate or score that is negative or NaN.
        #[test]
        fn hostile_samples_never_panic_or_give_nonsense(
            samples in proptest::collection::vec(
                (proptest::option::of(proptest::num::i64::ANY), proptest::num::i64::ANY, 0u64..5_000),
                1..40,
            ),
            window in 0usize..12,
        ) {
            let config = TrendConfig { window, ..TrendConfig::default() };
            let start = t0();
            let mut w = PartitionWindow::default();
            for (committed, end, at_ms) in samples {
                let lag = PartitionLag::new(0, committed, end, MissingCommit::FullyLagging);
                w.push(&lag, start + Duration::from_millis(at_ms), config.window);
                let t = w.trend(&config).expect("a sample was pushed or one is held");
                proptest::prop_assert!(t.arrival_rate >= 0.0 && t.arrival_rate.is_finite());
                proptest::prop_assert!(t.processing_rate.is_none_or(|r| r >= 0.0 && r.is_finite()));
                proptest::prop_assert!(t.slope.is_finite());
                let score = trend_score(1.0, &t);
                proptest::prop_assert!((0.0..=1.0).contains(&score));
                proptest::prop_assert!(w.len() <= window.max(2));
            }
        }
    }

    #[test]
    fn trend_scores_follow_the_status() {
        let trend = |status| Trend {
            status,
            processing_rate: None,
            arrival_rate: 0.0,
            slope: 0.0,
            samples: 3,
            lag: 100,
            routing: None,
        };
        assert_eq!(trend_score(0.1, &trend(Ok)), 1.0);
        assert_eq!(trend_score(0.1, &trend(CatchingUp)), 0.8);
        assert_eq!(trend_score(0.9, &trend(CatchingUp)), 0.9);
        assert_eq!(trend_score(0.9, &trend(Lagging)), 0.45);
        assert_eq!(trend_score(1.0, &trend(Stalled)), 0.0);
        assert_eq!(trend_score(1.0, &trend(Stopped)), 0.0);
        assert_eq!(trend_score(f64::NAN, &trend(Unknown)), 0.0);
    }
}
