//! [`SmartPartitioner`]: routes keyless records to healthy partitions, in
//! sticky batches weighted by health and by this producer's queue per
//! partition, and falls back to another partitioner when health is unknown.
//!
//! Per record and topic:
//!
//! 1. Read the topic's health from the [`HealthTable`] (one atomic load
//!    unless the table changed). No snapshot → fallback ("no data"); a
//!    snapshot older than `max_age` at the time the manager last recorded →
//!    fallback ("stale"); no healthy partition that currently has a leader →
//!    fallback ("no healthy partition"), or, with relative health on (trend
//!    scoring), the least lagging partitions that are not stalled. With
//!    trend scoring, once every partition has a routing weight
//!    ([`Routing`](super::Routing), see
//!    [`TopicTrends::record`](super::TopicTrends::record)) and one has no
//!    backlog, keyless records follow those weights instead of the health
//!    threshold: a partition draining a backlog gets less than its
//!    consumer processes (but not nothing), one whose commits froze gets
//!    nothing, and the others share the rest, those whose consumer shows
//!    spare capacity (it processed more than arrived) weighted up by it.
//! 2. Keyed records keep their hash partition (through the fallback
//!    partitioner, murmur2 by default) unless key stickiness is on: then a
//!    key is mapped once to a healthy partition (its hash partition when that
//!    is healthy, otherwise one chosen from the healthy ones by the key's
//!    hash) and stays there while that partition stays healthy. The map is
//!    bounded per topic; the oldest key is forgotten first.
//! 3. Keyless records stick to one healthy partition until the engine says
//!    its batch is complete ([`Partitioner::on_new_batch`]); then the next
//!    record draws a healthy partition with weight
//!    `score × 1 / (1 + queued_bytes / 16 KiB)`, so a partition scoring 1.0
//!    with nothing queued is twice as likely as one scoring 0.5 or one with a
//!    full default batch waiting; with `avoid_slow_brokers`, times
//!    `(fastest + 5 ms) / (leader + 5 ms)` over the latencies with which
//!    the partitions' leaders answer this producer, so a slow broker is
//!    avoided as well as a slow consumer. When the partition's consumer reported
//!    its processing time ([`RoutingReason::Reported`](super::RoutingReason::Reported)),
//!    the stint also ends once its records would take that consumer 20 ms
//!    (10 records on a consumer at 2 ms a record): a batch's worth of
//!    records handed to a slow consumer at once would otherwise wait behind
//!    each other however small the partition's share. Draws are then
//!    divided by each partition's mean stint, so records, not stints,
//!    follow the routing weights.
//!
//! The partitioner never reads a clock and draws from a seeded generator:
//! the same seed, table contents and calls give the same partitions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stint::{self, Stints};
use super::table::Fallback;
use super::{HealthSnapshot, HealthTable, RoutingCounters};
use crate::engine::partitioner::{
    DefaultPartitioner, PartitionError, PartitionView, Partitioner, murmur2, murmur2_partition,
    to_positive,
};

/// Queue depth, in bytes, that halves a partition's weight (the default
/// batch size).
const QUEUE_UNIT: f64 = 16_384.0;

/// With slow brokers avoided, the latency added to every leader's before
/// they are compared, so differences of a few milliseconds (noise on any
/// network) barely count: a leader answering in 205 ms against the
/// fastest's 5 ms weighs a partition `(5 + 5) / (205 + 5)`, about 1/21.
const LATENCY_SLACK_US: f64 = 5_000.0;

/// SplitMix64, as the built-in partitioners use: small, fast, seeded.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the last record of a topic was placed (to log changes only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Relative,
    Fallback(Fallback),
}

#[derive(Debug, Default)]
struct TopicState {
    /// Table version the cached health was read at; `None` before the first read.
    version: Option<u64>,
    snapshot: Option<Arc<HealthSnapshot>>,
    now: Option<Instant>,
    /// The sticky partition for keyless records.
    sticky: Option<i32>,
    /// How long keyless records stay on a partition.
    stints: Stints,
    /// How the last record was placed, to log changes only.
    last: Option<Route>,
    keys: HashMap<Vec<u8>, i32>,
    key_order: VecDeque<Vec<u8>>,
}

/// What this producer itself knows of a partition, as a factor on its
/// weight: `1 / (1 + queued_bytes / 16 KiB)` and, with slow brokers
/// avoided, `(fastest + 5 ms) / (leader + 5 ms)` over the leaders'
/// latencies.
struct ProducerSignals {
    /// The fastest known leader latency in microseconds plus the slack;
    /// `None` when leader latency is not weighed or not known.
    fastest: Option<f64>,
}

impl ProducerSignals {
    fn new(view: &PartitionView<'_>, avoid_slow_brokers: bool) -> Self {
        let fastest = avoid_slow_brokers
            .then(|| view.leader_latency_us.unwrap_or_default())
            .and_then(|l| l.iter().filter(|us| **us > 0).min().copied())
            .map(|us| f64::from(us) + LATENCY_SLACK_US);
        ProducerSignals { fastest }
    }

    fn factor(&self, view: &PartitionView<'_>, id: i32) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let queue = 1.0 / (1.0 + view.queued(id) as f64 / QUEUE_UNIT);
        let leader = match (self.fastest, view.leader_latency(id)) {
            (Some(fastest), Some(latency)) => {
                fastest / (latency.as_secs_f64() * 1e6 + LATENCY_SLACK_US)
            }
            _ => 1.0,
        };
        queue * leader
    }
}

/// A lag-aware partitioner reading health from a [`HealthTable`].
///
/// Usually built for you by
/// [`ProducerBuilder::smart_partitioner`](crate::ProducerBuilder::smart_partitioner);
/// build one yourself to drive it with your own table:
///
/// ```
/// use std::time::Instant;
/// use smartkafka::health::{HealthSnapshot, HealthTable, LinearScorer, PartitionLag, SmartPartitioner};
/// use smartkafka::partitioner::{PartitionView, Partitioner};
///
/// let table = HealthTable::new();
/// let mut partitioner = SmartPartitioner::new(table.clone(), 7);
/// let all = [0, 1, 2, 3];
/// let view = PartitionView::new("orders", 4, &all);
///
/// // No health yet: the fallback (the default partitioner) places the record.
/// partitioner.partition(None, None, &view).unwrap();
/// assert_eq!(partitioner.counters().stats().fallback_no_data, 1);
///
/// // Partition 2 is far behind: keyless records avoid it.
/// let now = Instant::now();
/// let lags = (0..4).map(|p| PartitionLag::from_lag(p, if p == 2 { 90_000 } else { 0 }));
/// table.publish(HealthSnapshot::new("orders", lags, &LinearScorer::default(), 0.5, now), now);
/// for _ in 0..100 {
///     let p = partitioner.partition(None, None, &view).unwrap();
///     assert_ne!(p, 2);
///     partitioner.on_new_batch(p, &view);
/// }
/// assert_eq!(partitioner.counters().stats().routed_by_health, 100);
/// ```
pub struct SmartPartitioner {
    table: HealthTable,
    counters: RoutingCounters,
    fallback: Box<dyn Partitioner>,
    rng: Rng,
    max_age: Duration,
    key_stickiness: bool,
    key_capacity: usize,
    /// With no healthy partition, route keyless records by relative health
    /// instead of the fallback.
    relative_health: bool,
    /// Weigh partitions down by their leader's latency against the fastest.
    avoid_slow_brokers: bool,
    topics: HashMap<String, TopicState>,
    /// Reused candidate buffers, so routing does not allocate once warm.
    candidates: Vec<(i32, f64)>,
}

impl std::fmt::Debug for SmartPartitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartPartitioner")
            .field("max_age", &self.max_age)
            .field("key_stickiness", &self.key_stickiness)
            .field("key_capacity", &self.key_capacity)
            .field("routing", &self.counters.stats())
            .finish_non_exhaustive()
    }
}

impl SmartPartitioner {
    /// A partitioner reading `table`, seeded with `seed`, falling back to
    /// [`DefaultPartitioner`] (seeded from `seed` too), with data older than
    /// 15 s counted as stale and key stickiness off.
    pub fn new(table: HealthTable, seed: u64) -> Self {
        SmartPartitioner {
            table,
            counters: RoutingCounters::new(),
            fallback: Box::new(DefaultPartitioner::new(seed ^ 0xfa11_bac4)),
            rng: Rng(seed),
            max_age: Duration::from_secs(15),
            key_stickiness: false,
            key_capacity: 10_000,
            relative_health: false,
            avoid_slow_brokers: false,
            topics: HashMap::new(),
            candidates: Vec::new(),
        }
    }

    /// The partitioner used when health cannot decide (and for keyed records
    /// without key stickiness).
    #[must_use]
    pub fn fallback(mut self, fallback: Box<dyn Partitioner>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Snapshots older than this, at the time the manager last recorded,
    /// are stale and not used (default 15 s).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Key stickiness: map each key once to a healthy partition and keep it
    /// there while the partition stays healthy (default off: keys keep their
    /// hash partition, which keeps per-key order across producers).
    #[must_use]
    pub fn key_stickiness(mut self, enabled: bool) -> Self {
        self.key_stickiness = enabled;
        self
    }

    /// How many keys per topic key stickiness remembers (default 10 000; at
    /// least 1); the oldest is forgotten first.
    #[must_use]
    pub fn key_capacity(mut self, keys: usize) -> Self {
        self.key_capacity = keys.max(1);
        self
    }

    /// With no healthy partition, place keyless records on the least
    /// lagging partitions that are not stalled or stopped (or, when every
    /// one is, the least lagging of all) instead of handing them to the
    /// fallback partitioner (default off; on with
    /// [`Scoring::Trend`](super::Scoring::Trend)).
    #[must_use]
    pub fn relative_health(mut self, enabled: bool) -> Self {
        self.relative_health = enabled;
        self
    }

    /// Weigh each partition also by how fast its leader answers this
    /// producer (see [`PartitionView::leader_latency`]):
    /// `(fastest + 5 ms) / (its leader's + 5 ms)`, so a leader ten times
    /// slower than the fastest (and well beyond 5 ms) draws about a tenth
    /// of the records and a slow broker is avoided as well as a slow
    /// consumer (default off). Partitions whose leader's latency is not
    /// known yet weigh as the fastest.
    #[must_use]
    pub fn avoid_slow_brokers(mut self, enabled: bool) -> Self {
        self.avoid_slow_brokers = enabled;
        self
    }

    /// Counts into `counters` (shared with whoever reads them) instead of
    /// counters of its own.
    #[must_use]
    pub fn counters_from(mut self, counters: RoutingCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The routing counters (a shared handle).
    pub fn counters(&self) -> RoutingCounters {
        self.counters.clone()
    }

    /// The current health of `view.topic`, or why it cannot be used.
    fn health(&mut self, topic: &str) -> Result<Arc<HealthSnapshot>, Fallback> {
        let version = self.table.version();
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_owned(), TopicState::default());
        }
        let state = self.topics.get_mut(topic).ok_or(Fallback::NoData)?;
        if state.version != Some(version) {
            let (snapshot, now) = self.table.read_topic(topic);
            state.snapshot = snapshot;
            state.now = now;
            state.version = Some(version);
        }
        let snapshot = state.snapshot.clone().ok_or(Fallback::NoData)?;
        match state.now {
            Some(now) if !snapshot.is_stale(now, self.max_age) => Ok(snapshot),
            _ => Err(Fallback::Stale),
        }
    }

    /// Fills `self.candidates` with the healthy partitions a record may go
    /// to now, with their weights.
    fn fill_candidates(&mut self, snapshot: &HealthSnapshot, view: &PartitionView<'_>) {
        self.candidates.clear();
        if self.relative_health && self.fill_by_routing(snapshot, view) {
            return;
        }
        let producer = ProducerSignals::new(view, self.avoid_slow_brokers);
        for p in snapshot.partitions() {
            let id = p.partition();
            let in_topic = u32::try_from(id).is_ok_and(|i| i < view.partition_count);
            let led = view.available.is_empty() || view.is_available(id);
            if p.healthy && in_topic && led {
                self.candidates.push((
                    id,
                    (p.score * producer.factor(view, id)).max(f64::MIN_POSITIVE),
                ));
            }
        }
        if self.relative_health {
            self.weigh_by_spare_capacity(snapshot, false);
        }
    }

    /// With trend scoring, fills `self.candidates` by the routing weights
    /// of the snapshot ([`Routing`](crate::health::Routing)) when every
    /// partition has one and at least one has no backlog (somewhere for
    /// the records to go): each partition a record may go to now with a
    /// weight above zero, weighted `weight × 1 / (1 + queued_bytes / 16
    /// KiB)`, and partitions on an even share weighted up by spare
    /// capacity. Returns whether it did.
    fn fill_by_routing(&mut self, snapshot: &HealthSnapshot, view: &PartitionView<'_>) -> bool {
        use crate::health::RoutingReason;
        let routings = || {
            snapshot
                .partitions()
                .iter()
                .map(|p| p.trend.and_then(|t| t.routing))
        };
        if snapshot.partitions().is_empty()
            || routings().any(|r| r.is_none())
            || !routings().flatten().any(|r| {
                matches!(
                    r.reason,
                    RoutingReason::Even
                        | RoutingReason::Settling
                        | RoutingReason::Probing
                        | RoutingReason::Reported
                )
            })
        {
            return false;
        }
        let producer = ProducerSignals::new(view, self.avoid_slow_brokers);
        for p in snapshot.partitions() {
            let id = p.partition();
            let in_topic = u32::try_from(id).is_ok_and(|i| i < view.partition_count);
            let led = view.available.is_empty() || view.is_available(id);
            let Some(routing) = p.trend.and_then(|t| t.routing) else {
                continue;
            };
            if in_topic && led && routing.weight > 0.0 {
                self.candidates.push((
                    id,
                    (routing.weight * producer.factor(view, id)).max(f64::MIN_POSITIVE),
                ));
            }
        }
        if self.candidates.is_empty() {
            return false;
        }
        self.weigh_by_spare_capacity(snapshot, true);
        let stints = self.topics.get(view.topic).map(|s| &s.stints);
        stint::weigh(&mut self.candidates, snapshot, stints);
        true
    }

    /// With trend scoring, multiplies each candidate's weight by
    /// `1 + spare / mean` when every candidate's rates are known: `spare`
    /// is what its consumer processed beyond what arrived (counted only for
    /// partitions whose status is ok: one still draining a backlog has
    /// nothing to spare), `mean` the candidates' mean of the larger of the
    /// two rates. Consumers that merely keep up process what arrives and
    /// share evenly (a consumer's rate then measures its input, not its
    /// capacity, so it is never used to starve one); one that shows room
    /// to spare takes more. With `even_only`, only partitions on an even
    /// share of the routing weights are weighted up (the others' targets
    /// already follow their consumers).
    fn weigh_by_spare_capacity(&mut self, snapshot: &HealthSnapshot, even_only: bool) {
        let mut rates = Vec::with_capacity(self.candidates.len());
        for (id, _) in &self.candidates {
            let Some(trend) = snapshot.get(*id).and_then(|p| p.trend) else {
                return;
            };
            let Some(processing) = trend.processing_rate.filter(|_| trend.samples > 1) else {
                return;
            };
            let even = trend
                .routing
                .is_none_or(|r| r.reason == crate::health::RoutingReason::Even);
            let spare =
                if trend.status == crate::health::PartitionStatus::Ok && (even || !even_only) {
                    (processing - trend.arrival_rate).max(0.0)
                } else {
                    0.0
                };
            rates.push((processing.max(trend.arrival_rate), spare));
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = rates.iter().map(|(r, _)| r).sum::<f64>() / rates.len().max(1) as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return;
        }
        for ((_, weight), (_, spare)) in self.candidates.iter_mut().zip(&rates) {
            let scaled = *weight * (1.0 + spare / mean);
            if scaled.is_finite() {
                *weight = scaled.max(f64::MIN_POSITIVE);
            }
        }
    }

    fn is_candidate(&self, partition: i32) -> bool {
        self.candidates.iter().any(|(p, _)| *p == partition)
    }

    fn draw(&mut self) -> i32 {
        let total: f64 = self.candidates.iter().map(|(_, w)| w).sum();
        let mut point = self.rng.unit() * total;
        for (p, w) in &self.candidates {
            if point < *w {
                return *p;
            }
            point -= w;
        }
        self.candidates.last().map_or(0, |(p, _)| *p)
    }

    fn note(&mut self, topic: &str, how: Route) {
        match how {
            Route::Health => self.counters.by_health(),
            Route::Relative => self.counters.by_relative_health(),
            Route::Fallback(why) => self.counters.fallback(why),
        }
        if let Some(state) = self.topics.get_mut(topic)
            && state.last != Some(how)
        {
            state.last = Some(how);
            match how {
                Route::Health => tracing::info!(topic, "smart partitioner: routing by health"),
                Route::Relative => tracing::warn!(
                    topic,
                    "smart partitioner: no partition is healthy; routing to the least lagging"
                ),
                Route::Fallback(why) => tracing::warn!(
                    topic,
                    reason = why.describe(),
                    "smart partitioner: using the fallback partitioner"
                ),
            }
        }
    }

    /// Fills `self.candidates` by relative health: every partition a record
    /// may go to now, except stalled and stopped ones while another exists,
    /// weighted towards the least lagging (`1 / (1 + lag / (least lag + 1))`).
    fn fill_relative(&mut self, snapshot: &HealthSnapshot, view: &PartitionView<'_>) {
        self.candidates.clear();
        let usable = |p: &&crate::health::PartitionScore| {
            let id = p.partition();
            u32::try_from(id).is_ok_and(|i| i < view.partition_count)
                && (view.available.is_empty() || view.is_available(id))
        };
        let any_moving = snapshot
            .partitions()
            .iter()
            .filter(usable)
            .any(|p| !p.status().is_some_and(|s| s.is_stuck()));
        let eligible = || {
            snapshot
                .partitions()
                .iter()
                .filter(usable)
                .filter(move |p| !(any_moving && p.status().is_some_and(|s| s.is_stuck())))
        };
        let least = eligible().map(|p| p.lag.lag.max(0)).min().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let unit = least as f64 + 1.0;
        for p in eligible() {
            #[allow(clippy::cast_precision_loss)]
            let weight = 1.0 / (1.0 + p.lag.lag.max(0) as f64 / unit);
            self.candidates
                .push((p.partition(), weight.max(f64::MIN_POSITIVE)));
        }
    }

    fn use_fallback(
        &mut self,
        why: Fallback,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        let chosen = self.fallback.partition(key, value, view)?;
        self.note(view.topic, Route::Fallback(why));
        Ok(chosen)
    }

    fn keyed(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
        count: u32,
    ) -> Result<i32, PartitionError> {
        let snapshot = match self.health(view.topic) {
            Ok(s) => s,
            Err(why) => return self.use_fallback(why, Some(key), value, view),
        };
        self.fill_candidates(&snapshot, view);
        if self.candidates.is_empty() {
            return self.use_fallback(Fallback::NoHealthy, Some(key), value, view);
        }
        let known = self
            .topics
            .get(view.topic)
            .and_then(|s| s.keys.get(key).copied());
        if let Some(p) = known.filter(|p| self.is_candidate(*p)) {
            self.note(view.topic, Route::Health);
            return Ok(p);
        }
        let hashed = murmur2_partition(key, count)?;
        let chosen = if self.is_candidate(hashed) {
            hashed
        } else {
            let n = self.candidates.len();
            let i = usize::try_from(to_positive(murmur2(key))).unwrap_or(0) % n;
            self.candidates[i].0
        };
        let capacity = self.key_capacity;
        if let Some(state) = self.topics.get_mut(view.topic) {
            if let Some(slot) = state.keys.get_mut(key) {
                *slot = chosen;
            } else {
                if state.keys.len() >= capacity
                    && let Some(oldest) = state.key_order.pop_front()
                {
                    state.keys.remove(&oldest);
                }
                state.keys.insert(key.to_vec(), chosen);
                state.key_order.push_back(key.to_vec());
            }
        }
        self.note(view.topic, Route::Health);
        Ok(chosen)
    }

    fn keyless(
        &mut self,
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        let snapshot = match self.health(view.topic) {
            Ok(s) => s,
            Err(why) => return self.use_fallback(why, None, value, view),
        };
        self.fill_candidates(&snapshot, view);
        let mut how = Route::Health;
        if self.candidates.is_empty() && self.relative_health {
            self.fill_relative(&snapshot, view);
            how = Route::Relative;
        }
        if self.candidates.is_empty() {
            return self.use_fallback(Fallback::NoHealthy, None, value, view);
        }
        let sticky = self.topics.get(view.topic).and_then(|s| s.sticky);
        let chosen = match sticky.filter(|p| self.is_candidate(*p)) {
            Some(p) => p,
            None => self.draw(),
        };
        if let Some(state) = self.topics.get_mut(view.topic) {
            let over = state
                .stints
                .place(chosen, sticky == Some(chosen), &snapshot);
            state.sticky = (!over).then_some(chosen);
        }
        self.note(view.topic, how);
        Ok(chosen)
    }
}

impl Partitioner for SmartPartitioner {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        let count = view.checked_count()?;
        match key {
            Some(key) if self.key_stickiness => self.keyed(key, value, view, count),
            Some(key) => {
                let chosen = self.fallback.partition(Some(key), value, view)?;
                self.counters.by_key_hash();
                Ok(chosen)
            }
            None => self.keyless(value, view),
        }
    }

    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        if let Some(state) = self.topics.get_mut(view.topic)
            && state.sticky == Some(previous)
        {
            state.sticky = None;
        }
        self.fallback.on_new_batch(previous, view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::score::tests::t0;
    use crate::health::{HealthSnapshot, LinearScorer, PartitionLag, PartitionStatus};

    const ALL: [i32; 6] = [0, 1, 2, 3, 4, 5];

    /// Publishes lags (index = partition) for topic `t` at `at`.
    fn publish(table: &HealthTable, lags: &[i64], at: Instant) {
        let lags = lags
            .iter()
            .enumerate()
            .map(|(p, l)| PartitionLag::from_lag(i32::try_from(p).unwrap(), *l));
        table.publish(
            HealthSnapshot::new("t", lags, &LinearScorer::new(1000), 0.5, at),
            at,
        );
    }

    /// Keyless placements of `batches` batches of `per_batch` records each.
    fn batches(
        p: &mut SmartPartitioner,
        view: &PartitionView<'_>,
        batches: usize,
        per_batch: usize,
    ) -> Vec<i32> {
        let mut out = Vec::new();
        for _ in 0..batches {
            let first = p.partition(None, None, view).unwrap();
            for _ in 1..per_batch {
                assert_eq!(
                    p.partition(None, None, view).unwrap(),
                    first,
                    "sticky within a batch"
                );
            }
            p.on_new_batch(first, view);
            out.push(first);
        }
        out
    }

    #[test]
    fn health_weights_follow_score_and_queue_with_a_fixed_seed() {
        let table = HealthTable::new();
        // Scores 1.0, 0.5, 0.0 (unhealthy), 1.0, 0.9 (unavailable), 0.0 (unhealthy).
        publish(&table, &[0, 500, 1000, 0, 100, 5000], t0());
        let available = [0, 1, 2, 3, 5];
        // A default batch queued on partition 3 halves its weight.
        let queued = [0, 0, 0, 16_384, 0, 0];
        let view = PartitionView::new("t", 6, &available).with_queued_bytes(&queued);
        let mut p = SmartPartitioner::new(table.clone(), 42);
        let picks = batches(&mut p, &view, 20_000, 3);
        let mut counts = [0usize; 6];
        for c in &picks {
            counts[usize::try_from(*c).unwrap()] += 1;
        }
        // Weights 1.0 : 0.5 : 0 : 0.5 : (no leader) : 0 → 50 % / 25 % / 25 %.
        let share = |i: usize| counts[i] as f64 / picks.len() as f64;
        assert!((share(0) - 0.50).abs() < 0.02, "{counts:?}");
        assert!((share(1) - 0.25).abs() < 0.02, "{counts:?}");
        assert!((share(3) - 0.25).abs() < 0.02, "{counts:?}");
        assert_eq!(counts[2] + counts[4] + counts[5], 0, "{counts:?}");
        let stats = p.counters().stats();
        assert_eq!(stats.routed_by_health, 60_000);
        assert_eq!(stats.fallback(), 0);

        // Deterministic per seed.
        let again = batches(&mut SmartPartitioner::new(table.clone(), 42), &view, 200, 1);
        assert_eq!(again, picks[..200]);
        let other = batches(&mut SmartPartitioner::new(table, 43), &view, 200, 1);
        assert_ne!(other, picks[..200]);
    }

    #[test]
    fn a_slow_leader_weighs_its_partitions_down_only_when_asked() {
        let table = HealthTable::new();
        publish(&table, &[0; 6], t0());
        // Partitions 4 and 5 on a leader answering in 205 ms, the others
        // in 2-5 ms; partition 3's leader not heard from yet.
        let latency = [2_000, 5_000, 4_000, 0, 205_000, 205_000];
        let view = PartitionView::new("t", 6, &ALL).with_leader_latency(&latency);
        let count = |p: &mut SmartPartitioner| shares(&batches(p, &view, 20_000, 1));
        let even = count(&mut SmartPartitioner::new(table.clone(), 3));
        assert!(
            even.iter().all(|s| (s - 1.0 / 6.0).abs() < 0.02),
            "{even:?}"
        );

        let shares = count(&mut SmartPartitioner::new(table.clone(), 3).avoid_slow_brokers(true));
        // Weights (2 + 5) / (l + 5): 1, 0.7, 0.78, 1 (unknown), 0.033, 0.033.
        let weights = [1.0, 0.7, 7.0 / 9.0, 1.0, 7.0 / 210.0, 7.0 / 210.0];
        let total: f64 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            assert!((shares[i] - w / total).abs() < 0.02, "{i}: {shares:?}");
        }
        assert!(shares[4] + shares[5] < 0.03, "{shares:?}");

        // With trend routing as well: the same factor on the weights.
        let rounds: Vec<Vec<(i64, i64)>> = (0..4).map(|t| vec![(t * 500, t * 500); 6]).collect();
        let routed = publish_trends(&table, &rounds);
        assert!(
            routed
                .partitions()
                .iter()
                .all(|p| p.trend.and_then(|t| t.routing).is_some()),
            "routing weights for every partition"
        );
        let mut trend = SmartPartitioner::new(table, 3)
            .relative_health(true)
            .avoid_slow_brokers(true);
        let shares = count(&mut trend);
        assert!(shares[4] + shares[5] < 0.03, "{shares:?}");
        assert!(shares[0] > 0.2 && shares[3] > 0.2, "{shares:?}");
    }

    #[test]
    fn health_sticky_partition_moves_only_on_its_own_batch_or_when_unhealthy() {
        let table = HealthTable::new();
        publish(&table, &[0; 6], t0());
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table.clone(), 1);
        let first = p.partition(None, None, &view).unwrap();
        p.on_new_batch((first + 1) % 6, &view); // another partition's batch
        assert_eq!(p.partition(None, None, &view).unwrap(), first);
        // The sticky partition falls behind: the next record moves at once.
        let mut lags = [0i64; 6];
        lags[usize::try_from(first).unwrap()] = 10_000;
        publish(&table, &lags, t0());
        let moved = p.partition(None, None, &view).unwrap();
        assert_ne!(moved, first);
        for _ in 0..500 {
            let chosen = p.partition(None, None, &view).unwrap();
            assert_ne!(chosen, first);
            p.on_new_batch(chosen, &view);
        }
    }

    #[test]
    fn health_keyed_records_keep_their_hash_partition_without_stickiness() {
        let table = HealthTable::new();
        let hashed = murmur2_partition(b"kafka", 6).unwrap();
        let mut lags = [0i64; 6];
        lags[usize::try_from(hashed).unwrap()] = 50_000;
        publish(&table, &lags, t0());
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 5);
        for _ in 0..10 {
            assert_eq!(p.partition(Some(b"kafka"), None, &view).unwrap(), hashed);
        }
        let stats = p.counters().stats();
        assert_eq!(stats.routed_by_key_hash, 10);
        assert_eq!(stats.routed_by_health, 0);
    }

    #[test]
    fn health_key_stickiness_maps_a_key_once_and_keeps_it_while_healthy() {
        let table = HealthTable::new();
        let view = PartitionView::new("t", 6, &ALL);
        let hashed = murmur2_partition(b"kafka", 6).unwrap();
        let h = usize::try_from(hashed).unwrap();
        let mut p = SmartPartitioner::new(table.clone(), 5).key_stickiness(true);

        // Healthy hash partition: the key stays where the hash puts it.
        publish(&table, &[0; 6], t0());
        assert_eq!(p.partition(Some(b"kafka"), None, &view).unwrap(), hashed);

        // Its partition falls behind: mapped once to a healthy one.
        let mut lags = [0i64; 6];
        lags[h] = 50_000;
        publish(&table, &lags, t0());
        let mapped = p.partition(Some(b"kafka"), None, &view).unwrap();
        assert_ne!(mapped, hashed);
        for _ in 0..20 {
            assert_eq!(p.partition(Some(b"kafka"), None, &view).unwrap(), mapped);
        }

        // The hash partition recovers: the key stays on its mapped partition.
        publish(&table, &[0; 6], t0());
        assert_eq!(p.partition(Some(b"kafka"), None, &view).unwrap(), mapped);

        // The mapped partition falls behind: remapped to a healthy one.
        let mut lags = [0i64; 6];
        lags[usize::try_from(mapped).unwrap()] = 50_000;
        publish(&table, &lags, t0());
        let remapped = p.partition(Some(b"kafka"), None, &view).unwrap();
        assert_ne!(remapped, mapped);
        assert_eq!(p.counters().stats().routed_by_health, 24);
    }

    #[test]
    fn health_key_map_is_bounded() {
        let table = HealthTable::new();
        publish(&table, &[0; 6], t0());
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 5)
            .key_stickiness(true)
            .key_capacity(3);
        for i in 0..100u32 {
            p.partition(Some(&i.to_be_bytes()), None, &view).unwrap();
        }
        let state = &p.topics["t"];
        assert_eq!(state.keys.len(), 3);
        assert_eq!(state.key_order.len(), 3);
        assert!(state.keys.contains_key(&99u32.to_be_bytes()[..]));
        assert!(!state.keys.contains_key(&0u32.to_be_bytes()[..]));
    }

    #[test]
    fn health_missing_data_falls_back_to_the_default_partitioner() {
        let view = PartitionView::new("t", 6, &ALL);
        let mut smart = SmartPartitioner::new(HealthTable::new(), 9);
        let mut plain = DefaultPartitioner::new(9 ^ 0xfa11_bac4);
        for _ in 0..50 {
            let a = smart.partition(None, None, &view).unwrap();
            let b = plain.partition(None, None, &view).unwrap();
            assert_eq!(a, b);
            smart.on_new_batch(a, &view);
            plain.on_new_batch(b, &view);
        }
        let stats = smart.counters().stats();
        assert_eq!(stats.fallback_no_data, 50);
        assert_eq!(stats.routed_by_health, 0);
        assert_eq!(stats.fallback(), 50);
    }

    #[test]
    fn health_stale_data_falls_back_until_refreshed() {
        let table = HealthTable::new();
        let start = t0();
        // Partition 0 is the only healthy one.
        publish(&table, &[0, 9000, 9000, 9000, 9000, 9000], start);
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table.clone(), 3).max_age(Duration::from_secs(15));
        assert_eq!(p.partition(None, None, &view).unwrap(), 0);

        // The manager's clock moves on without new data: still fresh at 15 s…
        table.tick(start + Duration::from_secs(15));
        assert_eq!(p.partition(None, None, &view).unwrap(), 0);
        // …stale after.
        table.tick(start + Duration::from_secs(16));
        for _ in 0..10 {
            let chosen = p.partition(None, None, &view).unwrap();
            p.on_new_batch(chosen, &view);
        }
        let stats = p.counters().stats();
        assert_eq!(stats.fallback_stale, 10);
        assert_eq!(stats.routed_by_health, 2);

        // Fresh data: routed by health again.
        publish(
            &table,
            &[0, 9000, 9000, 9000, 9000, 9000],
            start + Duration::from_secs(20),
        );
        assert_eq!(p.partition(None, None, &view).unwrap(), 0);
        assert_eq!(p.counters().stats().routed_by_health, 3);
    }

    #[test]
    fn health_all_unhealthy_or_leaderless_falls_back() {
        let table = HealthTable::new();
        publish(&table, &[5000; 6], t0());
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table.clone(), 3).key_stickiness(true);
        p.partition(None, None, &view).unwrap();
        p.partition(Some(b"k"), None, &view).unwrap();
        assert_eq!(p.counters().stats().fallback_no_healthy, 2);

        // Healthy partitions exist but none has a leader right now.
        publish(&table, &[0, 0, 5000, 5000, 5000, 5000], t0());
        let led = [2, 3, 4, 5];
        let view = PartitionView::new("t", 6, &led);
        let chosen = p.partition(None, None, &view).unwrap();
        assert!(led.contains(&chosen));
        let stats = p.counters().stats();
        assert_eq!(stats.fallback_no_healthy, 3);
        assert_eq!(stats.routed_by_health, 0);

        // Partitions the snapshot names beyond the topic are never chosen.
        publish(&table, &[5000, 5000, 0], t0());
        let view = PartitionView::new("t", 2, &[0, 1]);
        p.partition(None, None, &view).unwrap();
        assert_eq!(p.counters().stats().fallback_no_healthy, 4);
    }

    #[test]
    fn health_topics_are_independent() {
        let table = HealthTable::new();
        publish(&table, &[0; 6], t0());
        let view = PartitionView::new("other", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 3);
        p.partition(None, None, &view).unwrap();
        assert_eq!(p.counters().stats().fallback_no_data, 1);
        assert_eq!(
            p.partition(None, None, &PartitionView::new("t", 0, &[])),
            Err(PartitionError::NoPartitions)
        );
    }

    /// Feeds `(committed, end)` per partition, one collection a second,
    /// into trend scoring and publishes each snapshot; returns the last.
    fn publish_trends(table: &HealthTable, rounds: &[Vec<(i64, i64)>]) -> Arc<HealthSnapshot> {
        publish_reported(table, rounds, &[])
    }

    /// [`publish_trends`], each partition's commits carrying the time per
    /// record in `reports` (index = partition; none past its end).
    fn publish_reported(
        table: &HealthTable,
        rounds: &[Vec<(i64, i64)>],
        reports: &[Duration],
    ) -> Arc<HealthSnapshot> {
        use crate::health::{MissingCommit, ProcessingReport, TopicTrends, TrendConfig};
        let config = TrendConfig::default();
        let mut trends = TopicTrends::default();
        let start = t0();
        for (i, round) in rounds.iter().enumerate() {
            let at = start + Duration::from_secs(u64::try_from(i).unwrap());
            let lags: Vec<PartitionLag> = round
                .iter()
                .enumerate()
                .map(|(p, (c, e))| {
                    PartitionLag::new(
                        i32::try_from(p).unwrap(),
                        Some(*c),
                        *e,
                        MissingCommit::FullyLagging,
                    )
                    .with_processing(reports.get(p).map(|d| ProcessingReport::new(*d, 100)))
                })
                .collect();
            trends.record(&lags, at, &config);
            let snapshot = HealthSnapshot::with_trends(
                "t",
                lags,
                &LinearScorer::new(1000),
                0.5,
                at,
                &trends,
                &config,
            );
            table.publish(snapshot, at);
        }
        table.snapshot("t").unwrap()
    }

    /// Shares of `picks` per partition of 6.
    fn shares(picks: &[i32]) -> [f64; 6] {
        let mut counts = [0usize; 6];
        for p in picks {
            counts[usize::try_from(*p).unwrap()] += 1;
        }
        counts.map(|c| c as f64 / picks.len() as f64)
    }

    #[test]
    fn trend_a_partition_draining_a_burst_keeps_receiving() {
        let table = HealthTable::new();
        // Partition 1 got a burst of 6,000 and drains it at about 1,700/s;
        // partition 2's consumer stalls; the rest keep up.
        let rounds: Vec<Vec<(i64, i64)>> = (0..4)
            .map(|t: i64| {
                (0..6)
                    .map(|p| match p {
                        1 => ([0, 2_000, 4_000, 5_000][usize::try_from(t).unwrap()], 6_000),
                        2 => (0, 100 * (t + 1)),
                        _ => (100 * t, 100 * t),
                    })
                    .collect()
            })
            .collect();
        let snapshot = publish_trends(&table, &rounds);
        assert_eq!(
            snapshot.get(1).unwrap().status(),
            Some(PartitionStatus::CatchingUp)
        );
        assert!(
            snapshot.is_healthy(1),
            "lag 0 under the linear score, healthy by trend"
        );
        assert_eq!(
            snapshot.get(2).unwrap().status(),
            Some(PartitionStatus::Lagging)
        );
        assert_eq!(
            snapshot.get(2).unwrap().exclusion(),
            Some(crate::health::Exclusion::Lagging)
        );
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table.clone(), 9).relative_health(true);
        let got = shares(&batches(&mut p, &view, 6_000, 1));
        assert!(
            got[1] > 0.1,
            "the draining partition keeps receiving: {got:?}"
        );
        assert_eq!(got[2], 0.0, "the stalling one gets nothing: {got:?}");

        // Threshold scoring of the same lags: partition 1 (lag 3,000 left
        // at first) is refused until its lag is small.
        let threshold = HealthTable::new();
        let lags = (0..6).map(|p| {
            let (c, e) = rounds[1][usize::try_from(p).unwrap()];
            PartitionLag::new(p, Some(c), e, crate::health::MissingCommit::FullyLagging)
        });
        threshold.publish(
            HealthSnapshot::new("t", lags, &LinearScorer::new(1000), 0.5, t0()),
            t0(),
        );
        let mut p = SmartPartitioner::new(threshold, 9);
        let got = shares(&batches(&mut p, &view, 600, 1));
        assert_eq!(got[1], 0.0, "{got:?}");
    }

    #[test]
    fn trend_with_none_healthy_routes_to_the_least_lagging_never_a_stalled_one() {
        let table = HealthTable::new();
        // Every partition far behind and growing; partitions 0 and 3
        // stalled (commits frozen for 15 s), 5 the least behind.
        let rounds: Vec<Vec<(i64, i64)>> = (0..16)
            .map(|t: i64| {
                (0..6)
                    .map(|p| match p {
                        0 | 3 => (0, 5_000 + 500 * t),
                        5 => (100 * t, 2_000 + 300 * t),
                        _ => (100 * t, 4_000 + 400 * t),
                    })
                    .collect()
            })
            .collect();
        let snapshot = publish_trends(&table, &rounds);
        assert!(snapshot.healthy_partitions().is_empty());
        assert_eq!(
            snapshot.get(0).unwrap().status(),
            Some(PartitionStatus::Stalled)
        );
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table.clone(), 5).relative_health(true);
        let picks = batches(&mut p, &view, 3_000, 1);
        let got = shares(&picks);
        assert_eq!(got[0] + got[3], 0.0, "stalled partitions avoided: {got:?}");
        assert!(
            got[5] > got[1] && got[5] > got[2] && got[5] > got[4],
            "{got:?}"
        );
        let stats = p.counters().stats();
        assert_eq!(stats.routed_by_relative_health, 3_000);
        assert_eq!(stats.fallback(), 0);

        // Without relative health (threshold scoring), the fallback as before.
        let mut p = SmartPartitioner::new(table, 5);
        p.partition(None, None, &view).unwrap();
        assert_eq!(p.counters().stats().fallback_no_healthy, 1);
    }

    #[test]
    fn trend_a_consumer_with_spare_capacity_takes_more() {
        let table = HealthTable::new();
        // Every partition keeps up (lag 0 at the end); partition 0's
        // consumer drained 1,000 records over the window besides what
        // arrived, so it has shown room to spare.
        let rounds: Vec<Vec<(i64, i64)>> = (0..4)
            .map(|t: i64| {
                (0..6)
                    .map(|p| match (p, t) {
                        (0, 0) => (0, 1_000),
                        (0, _) => (1_000 + 100 * t, 1_000 + 100 * t),
                        _ => (100 * t, 100 * t),
                    })
                    .collect()
            })
            .collect();
        let snapshot = publish_trends(&table, &rounds);
        assert!(
            snapshot
                .partitions()
                .iter()
                .all(|p| p.status() == Some(PartitionStatus::Ok))
        );
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 21).relative_health(true);
        let got = shares(&batches(&mut p, &view, 12_000, 1));
        for other in 1..6 {
            assert!(got[0] > 1.5 * got[other], "{got:?}");
        }
    }

    #[test]
    fn reported_a_slow_consumer_gets_short_stints_in_proportion_to_its_capacity() {
        let table = HealthTable::new();
        // Every partition keeps up at 100 records/s; partition 0's consumer
        // reports 2 ms per record (500/s), the others 200 us (5,000/s).
        let rounds: Vec<Vec<(i64, i64)>> = (0..4)
            .map(|t: i64| (0..6).map(|_| (100 * t, 100 * t)).collect())
            .collect();
        let mut reports = [Duration::from_micros(200); 6];
        reports[0] = Duration::from_millis(2);
        let snapshot = publish_reported(&table, &rounds, &reports);
        let routing = |p: i32| snapshot.get(p).and_then(|s| s.routing()).unwrap();
        assert_eq!(routing(0).reason, crate::health::RoutingReason::Reported);
        assert_eq!(routing(0).capacity, Some(500.0));
        assert!((routing(0).weight - 500.0 / 25_500.0).abs() < 1e-9);
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 29).relative_health(true);
        // Batches never complete: only stints end a partition's turn.
        let picks: Vec<i32> = (0..200_000)
            .map(|_| p.partition(None, None, &view).unwrap())
            .collect();
        let got = shares(&picks);
        assert!((got[0] - 500.0 / 25_500.0).abs() < 0.005, "{got:?}");
        // Stints: 10 records on partition 0 (20 ms at 2 ms each), 100 on
        // the others (20 ms at 200 us).
        let mut runs: Vec<(i32, usize)> = Vec::new();
        for pick in &picks {
            match runs.last_mut() {
                Some((last, n)) if last == pick => *n += 1,
                _ => runs.push((*pick, 1)),
            }
        }
        // A run may join two stints when the same partition is drawn again.
        for (partition, n) in &runs[..runs.len() - 1] {
            let stint = if *partition == 0 { 10 } else { 100 };
            assert_eq!(n % stint, 0, "partition {partition}: a run of {n}");
        }

        // Batches complete after 136 records, before the fast partitions'
        // stints end: records still follow the weights.
        let mut p = SmartPartitioner::new(p.table.clone(), 31).relative_health(true);
        let mut open = [0u32; 6];
        let picks: Vec<i32> = (0..200_000)
            .map(|_| {
                let chosen = p.partition(None, None, &view).unwrap();
                let slot = &mut open[usize::try_from(chosen).unwrap()];
                *slot += 1;
                if *slot == 136 {
                    *slot = 0;
                    p.on_new_batch(chosen, &view);
                }
                chosen
            })
            .collect();
        let got = shares(&picks);
        assert!((got[0] - 500.0 / 25_500.0).abs() < 0.005, "{got:?}");
    }

    #[test]
    fn trend_keyless_records_follow_the_routing_weights() {
        let table = HealthTable::new();
        // Partition 0 got 1,000 records at 2 s that its consumer drains at
        // 200/s while 100/s keep arriving; the rest keep up at 100/s.
        let rounds: Vec<Vec<(i64, i64)>> = (0..6)
            .map(|t: i64| {
                (0..6)
                    .map(|p| match (p, t) {
                        (0, 0 | 1) => (100 * t, 100 * t),
                        (0, _) => (200 + 200 * (t - 2), 1_000 + 100 * t),
                        _ => (100 * t, 100 * t),
                    })
                    .collect()
            })
            .collect();
        let snapshot = publish_trends(&table, &rounds);
        let routing = |p: i32| snapshot.get(p).and_then(|s| s.routing()).unwrap();
        let drained = routing(0);
        assert_eq!(drained.reason, crate::health::RoutingReason::Draining);
        assert!(drained.weight > 0.0 && drained.weight < 0.1, "{drained:?}");
        for p in 1..6 {
            assert_eq!(routing(p).reason, crate::health::RoutingReason::Even);
        }
        let view = PartitionView::new("t", 6, &ALL);
        let mut p = SmartPartitioner::new(table, 17).relative_health(true);
        let got = shares(&batches(&mut p, &view, 20_000, 1));
        for (i, share) in got.iter().enumerate() {
            let weight = routing(i32::try_from(i).unwrap()).weight;
            assert!(
                (share - weight).abs() < 0.015,
                "partition {i}: share {share}, weight {weight}: {got:?}"
            );
        }
        assert_eq!(p.counters().stats().routed_by_health, 20_000);
    }

    proptest::proptest! {
        /// Whatever the lag data, routing never panics and never picks a
        /// partition outside the topic or without a leader, and stale data
        /// goes to the fallback.
        #[test]
        fn trend_routing_never_picks_a_partition_that_cannot_take_the_record(
            rounds in proptest::collection::vec(
                proptest::collection::vec((proptest::num::i64::ANY, proptest::num::i64::ANY), 0..10),
                1..6,
            ),
            count in 1u32..8,
            led in proptest::collection::vec(0i32..8, 0..8),
            seed in proptest::num::u64::ANY,
        ) {
            let table = HealthTable::new();
            let snapshot = publish_trends(&table, &rounds);
            let led: Vec<i32> = led.into_iter().filter(|p| u32::try_from(*p).is_ok_and(|p| p < count)).collect();
            let view = PartitionView::new("t", count, &led);
            let mut p = SmartPartitioner::new(table.clone(), seed).relative_health(true);
            for _ in 0..20 {
                let chosen = p.partition(None, None, &view).unwrap();
                proptest::prop_assert!(u32::try_from(chosen).is_ok_and(|c| c < count));
                if !led.is_empty() {
                    proptest::prop_assert!(led.contains(&chosen), "{chosen} has no leader");
                }
                p.on_new_batch(chosen, &view);
            }
            // Stale: the table's clock moves past max_age.
            table.tick(snapshot.taken_at() + Duration::from_secs(60));
            let before = p.counters().stats().fallback_stale;
            p.partition(None, None, &view).unwrap();
            proptest::prop_assert_eq!(p.counters().stats().fallback_stale, before + 1);
        }
    }
}
