//! Trend routing replayed on a simulated pipeline, for the tests: keyless
//! records shared among partitions by the routing weights of the last
//! refresh, each partition's consumer working through its records in order
//! at a capacity that may change over time, the group committing on its own
//! clock, and lag collected on the producer's. The replay keeps what the
//! routing decided at each refresh, each partition's true backlog, the
//! records each partition received per second, and how long every record
//! waited from arrival until its consumer processed it, so routing rules
//! are judged on the outcome (the wait) and not only on their decisions.
//!
//! The model is a fluid one (records are divisible, time moves in 5 ms
//! steps); what it leaves out is what the real pipeline adds to every
//! record alike (linger, fetch waits, the work itself).

use std::collections::VecDeque;
use std::time::Duration;

use super::trend::{Routing, TopicTrends, TrendConfig};
use super::{MissingCommit, PartitionLag, ProcessingReport};
use crate::health::score::tests::t0;

/// The step of simulated time, seconds.
const DT: f64 = 0.005;
/// Width of one bucket of the wait histogram, seconds.
const BUCKET: f64 = 0.001;
/// Longest wait the histogram tells apart (longer ones share the last
/// bucket), seconds.
const LONGEST: f64 = 120.0;

/// A pipeline to replay.
pub(super) struct Pipeline<C> {
    /// Partitions of the topic.
    pub partitions: usize,
    /// Keyless records per second the producers send.
    pub rate: f64,
    /// Seconds between the group's commits.
    pub commit: f64,
    /// When the group first commits, seconds (its clock's phase against
    /// the lag collection's).
    pub commit_phase: f64,
    /// Each commit comes up to this many seconds early or late (drawn
    /// evenly), as a group's commit timer and its round trips wander.
    pub commit_jitter: f64,
    /// Seconds between two lag collections.
    pub refresh: f64,
    /// Records per second the consumer of partition `p` can process at `t`
    /// (with [`owners`](Self::owners): consumer `p`, for all its
    /// partitions together).
    pub capacity: C,
    /// The consumer of each partition, when consumers own several: a
    /// consumer works through its partitions' records oldest first, as a
    /// consumer polling one merged queue does, so what one partition gets
    /// depends on what the others hold. `None`: one consumer per partition.
    pub owners: Option<Vec<usize>>,
    /// `(at, partition, records)`: records landing on one partition at
    /// once (a keyed burst).
    pub burst: Option<(f64, usize, f64)>,
    /// Records sent to one partition before the next is drawn by weight
    /// (sticky batches, as the partitioner sends them); 0 spreads every
    /// step's records by weight exactly.
    pub batch: f64,
    /// Length of the replay, seconds.
    pub seconds: u32,
    /// Whether the group commits a [`ProcessingReport`] with each offset:
    /// its consumer's time per record since the last commit (the last one
    /// again when it processed nothing).
    pub reports: bool,
}

impl<C: Fn(f64, usize) -> f64> Pipeline<C> {
    /// A topic of `partitions` fed `rate` records/s, committing every
    /// second in step with the lag collection (every second), no burst.
    pub fn new(seconds: u32, partitions: usize, rate: f64, capacity: C) -> Self {
        Pipeline {
            partitions,
            rate,
            commit: 1.0,
            commit_phase: 1.0,
            commit_jitter: 0.0,
            refresh: 1.0,
            capacity,
            owners: None,
            burst: None,
            batch: 0.0,
            seconds,
            reports: false,
        }
    }

    /// Runs the replay.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn run(&self) -> Replay {
        let n = self.partitions;
        let mut flow = Flow {
            end: vec![0.0; n],
            processed: vec![0.0; n],
            queues: vec![VecDeque::new(); n],
            this_second: vec![0.0; n],
            busy: vec![(0.0, 0.0); n],
        };
        let mut reported: Vec<Option<ProcessingReport>> = vec![None; n];
        let mut committed = vec![0i64; n];
        let mut weights = vec![1.0 / n as f64; n];
        let mut replay = Replay {
            refreshes: Vec::new(),
            received: Vec::new(),
            waits: vec![0.0; (LONGEST / BUCKET) as usize + 1],
            longest: 0.0,
        };
        let config = TrendConfig::default();
        let start = t0();
        let mut trends = TopicTrends::default();
        let mut sticky = Draw(0x9e37_79b9_7f4a_7c15);
        let mut jitter = Draw(0x2545_f491_4f6c_dd1d);
        // The sticky partition and the records it has taken in its batch.
        let mut batch = (0, 0.0);
        let mut next_commit = self.commit_phase;
        let mut next_refresh = self.refresh;
        let mut next_second = 1.0;
        let steps = (f64::from(self.seconds) / DT).round() as u64;
        for step in 1..=steps {
            let t = step as f64 * DT;
            if self.batch > 0.0 {
                let mut left = self.rate * DT;
                while left > 0.0 {
                    let (to, filled) = batch;
                    let taken = left.min(self.batch - filled);
                    flow.arrive(to, t, taken);
                    left -= taken;
                    batch = if filled + taken >= self.batch - 1e-9 {
                        (sticky.by_weight(&weights), 0.0)
                    } else {
                        (to, filled + taken)
                    };
                }
            } else {
                for (p, weight) in weights.iter().enumerate() {
                    flow.arrive(p, t, self.rate * weight * DT);
                }
            }
            if let Some((at, p, records)) = self.burst
                && (t - at).abs() < DT / 2.0
            {
                flow.arrive(p, t, records);
            }
            match &self.owners {
                None => {
                    for p in 0..n {
                        let speed = (self.capacity)(t, p).max(0.0);
                        flow.process(p, t, speed * DT, speed, &mut replay);
                    }
                }
                Some(owners) => {
                    let consumers = owners.iter().max().map_or(0, |c| c + 1);
                    for c in 0..consumers {
                        let speed = (self.capacity)(t, c).max(0.0);
                        let mut can = speed * DT;
                        while can > 1e-9 {
                            // The partition of this consumer with the oldest record.
                            let oldest = (0..n)
                                .filter(|p| owners[*p] == c)
                                .filter_map(|p| flow.queues[p].front().map(|f| (p, f.0)))
                                .min_by(|a, b| a.1.total_cmp(&b.1));
                            let Some((p, _)) = oldest else { break };
                            let head = flow.queues[p].front().map_or(0.0, |f| f.1);
                            let taken = head.min(can);
                            flow.process(p, t, taken, speed, &mut replay);
                            can -= taken;
                        }
                    }
                }
            }
            if t + 1e-9 >= next_second {
                next_second += 1.0;
                replay
                    .received
                    .push(std::mem::replace(&mut flow.this_second, vec![0.0; n]));
            }
            if t + 1e-9 >= next_commit {
                next_commit += self.commit + self.commit_jitter * (2.0 * jitter.unit() - 1.0);
                for (c, done) in committed.iter_mut().zip(&flow.processed) {
                    *c = done.floor() as i64;
                }
                for (report, busy) in reported.iter_mut().zip(&mut flow.busy) {
                    let (seconds, records) = std::mem::take(busy);
                    if self.reports && records >= 1.0 {
                        let per_record = Duration::from_secs_f64(seconds / records);
                        *report = Some(ProcessingReport::new(per_record, records as u64));
                    }
                }
            }
            if t + 1e-9 >= next_refresh {
                next_refresh += self.refresh;
                let lags: Vec<PartitionLag> = (0..n)
                    .map(|p| {
                        PartitionLag::new(
                            i32::try_from(p).unwrap(),
                            Some(committed[p]),
                            flow.end[p].floor() as i64,
                            MissingCommit::FullyLagging,
                        )
                        .with_processing(reported[p])
                    })
                    .collect();
                trends.record(&lags, start + Duration::from_secs_f64(t), &config);
                let refresh: Vec<(Option<Routing>, f64)> = (0..n)
                    .map(|p| {
                        let id = i32::try_from(p).unwrap();
                        let routing = trends.trend(id, &config).and_then(|t| t.routing);
                        (routing, flow.end[p] - flow.processed[p])
                    })
                    .collect();
                if refresh.iter().all(|(r, _)| r.is_some()) {
                    for (w, (r, _)) in weights.iter_mut().zip(&refresh) {
                        *w = r.map_or(0.0, |r| r.weight);
                    }
                }
                replay.refreshes.push(refresh);
            }
        }
        replay
    }
}

/// Records in flight, per partition.
struct Flow {
    /// Records arrived so far (the end offset).
    end: Vec<f64>,
    /// Records processed so far (the consumer's position).
    processed: Vec<f64>,
    /// Records waiting, oldest first: (arrival time, records).
    queues: Vec<VecDeque<(f64, f64)>>,
    /// Records arrived in the current second.
    this_second: Vec<f64>,
    /// Per partition, since the last commit: the seconds its consumer
    /// spent on its records, and how many it processed.
    busy: Vec<(f64, f64)>,
}

impl Flow {
    fn arrive(&mut self, p: usize, t: f64, records: f64) {
        if records > 0.0 {
            self.end[p] += records;
            self.this_second[p] += records;
            self.queues[p].push_back((t, records));
        }
    }

    /// Processes up to `can` records of partition `p`, oldest first, at
    /// `t`, counting how long each waited; its consumer processes `speed`
    /// records per second.
    fn process(&mut self, p: usize, t: f64, mut can: f64, speed: f64, replay: &mut Replay) {
        while can > 0.0 {
            let Some(front) = self.queues[p].front_mut() else {
                break;
            };
            let taken = front.1.min(can);
            replay.wait(t - front.0, taken);
            front.1 -= taken;
            can -= taken;
            self.processed[p] += taken;
            self.busy[p].0 += taken / speed.max(1e-9);
            self.busy[p].1 += taken;
            if front.1 <= 1e-9 {
                self.queues[p].pop_front();
            }
        }
    }
}

/// A small deterministic generator (xorshift64), so replays repeat.
struct Draw(u64);

impl Draw {
    /// A uniform draw in `0.0..1.0`.
    #[allow(clippy::cast_precision_loss)]
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with probability proportional to its weight (the
    /// first when every weight is 0).
    fn by_weight(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut at = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if at < *w {
                return i;
            }
            at -= w;
        }
        0
    }
}

/// What a replay saw.
pub(super) struct Replay {
    /// Per refresh, in order: each partition's routing and true backlog
    /// (records arrived and not processed).
    pub refreshes: Vec<Vec<(Option<Routing>, f64)>>,
    /// Per second, in order: the records each partition received.
    pub received: Vec<Vec<f64>>,
    /// Records processed, by wait (buckets of [`BUCKET`]).
    waits: Vec<f64>,
    longest: f64,
}

impl Replay {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn wait(&mut self, seconds: f64, records: f64) {
        let bucket = ((seconds / BUCKET) as usize).min(self.waits.len() - 1);
        self.waits[bucket] += records;
        if records > 1e-6 {
            self.longest = self.longest.max(seconds);
        }
    }

    /// The wait that a share `q` of the processed records did not exceed,
    /// seconds (to the histogram's millisecond).
    #[allow(clippy::cast_precision_loss)]
    pub fn wait_quantile(&self, q: f64) -> f64 {
        let total: f64 = self.waits.iter().sum();
        let mut seen = 0.0;
        for (bucket, records) in self.waits.iter().enumerate() {
            seen += records;
            if seen >= q * total {
                return (bucket + 1) as f64 * BUCKET;
            }
        }
        LONGEST
    }

    /// The longest wait of a processed record, seconds.
    pub fn longest_wait(&self) -> f64 {
        self.longest
    }

    /// The routing of partition `p` at refresh `r` (1-based: the first
    /// collection is refresh 1).
    pub fn routing(&self, r: usize, p: usize) -> Routing {
        self.refreshes[r - 1][p]
            .0
            .unwrap_or_else(|| panic!("no routing at refresh {r}"))
    }

    /// The true backlog of partition `p` at refresh `r` (1-based).
    pub fn backlog(&self, r: usize, p: usize) -> f64 {
        self.refreshes[r - 1][p].1
    }

    /// The share of the records received in second `s` (1-based: the
    /// second ending at `s`) that went to `partitions`.
    pub fn share(&self, s: usize, partitions: &[usize]) -> f64 {
        let all: f64 = self.received[s - 1].iter().sum();
        let some: f64 = partitions.iter().map(|p| self.received[s - 1][*p]).sum();
        if all > 0.0 { some / all } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::RoutingReason;

    #[test]
    fn routing_a_consumer_ten_times_slower_is_drained_then_kept_below_capacity() {
        // 12 partitions, 4,500 records/s (375/s each); partitions 0 and
        // 1's consumer processes 250/s each from 15 s to 50 s.
        let slow = |t: f64, p: usize| {
            if p < 2 && (15.0..50.0).contains(&t) {
                250.0
            } else {
                2_500.0
            }
        };
        let replay = Pipeline::new(75, 12, 4_500.0, slow).run();
        let even = 1.0 / 12.0;
        assert!((replay.routing(10, 0).weight - even).abs() < 1e-6);
        assert_eq!(replay.routing(10, 0).reason, RoutingReason::Even);
        // Within six refreshes of slowing down, it gets less than its
        // consumer processes, so the backlog drains.
        let detected = (16..=21)
            .find(|t| replay.routing(*t, 0).reason == RoutingReason::Draining)
            .expect("the slow partition is seen draining");
        assert!(replay.routing(detected, 0).target_rate < 250.0);
        // Its capacity is measured once the backlog has lasted a refresh.
        let measured = replay.routing(detected + 1, 0);
        assert_eq!(measured.reason, RoutingReason::Draining, "{measured:?}");
        assert_eq!(measured.capacity, Some(250.0));
        // While slow, it is given less than its capacity on average, and
        // what waits stays under 2.5 s of its consumer's work (on an
        // even share it would grow by 125 records a second, to 4,375).
        let slow_phase = 22..=50;
        let mean_target: f64 = slow_phase
            .clone()
            .map(|t| replay.routing(t, 0).target_rate)
            .sum::<f64>()
            / 29.0;
        assert!(mean_target < 250.0, "{mean_target}");
        let worst = slow_phase
            .clone()
            .map(|t| replay.backlog(t, 0))
            .fold(0.0, f64::max);
        assert!(worst < 600.0, "{worst} records waiting");
        // The fast partitions take what it does not.
        for t in slow_phase.clone() {
            if replay.routing(t, 0).target_rate < 250.0 {
                assert!(replay.routing(t, 5).weight > even, "{t} s");
            }
        }
        // After recovery (at 50 s), its share is back within six
        // refreshes (a wait of up to two, then probes), and it is on an
        // even share again soon after.
        let back = (51..=75)
            .find(|t| replay.routing(*t, 0).weight > 0.95 * even)
            .unwrap();
        assert!(back <= 56, "back at {back} s");
        assert!(
            (57..=75).all(|t| replay.routing(t, 0).reason == RoutingReason::Even),
            "{:?}",
            replay.routing(57, 0)
        );
    }

    /// The ten-times-slower consumer above, with sticky batches of 22
    /// records (what a 5 ms linger gathers at 4,500 records/s) and the
    /// group's commits at each of nine phases against the lag collection,
    /// with and without jitter. `shared`: six consumers of two partitions
    /// each (the slow one owning partitions 0 and 1), instead of one per
    /// partition. Lag is collected every `refresh` seconds. `reports`: the
    /// group commits its consumers' processing reports.
    fn ten_times_slower(
        slow: bool,
        shared: bool,
        refresh: f64,
        reports: bool,
    ) -> Vec<(Replay, f64, f64)> {
        let mut replays = Vec::new();
        for jitter in [0.0, 0.05, 0.2] {
            for phase in [0.05, 0.15, 0.25, 0.35, 0.5, 0.6, 0.75, 0.85, 0.95] {
                let slow_now = move |t: f64| slow && (15.0..50.0).contains(&t);
                let capacity = move |t: f64, c: usize| match (shared, c) {
                    (true, 0) if slow_now(t) => 500.0,
                    (true, _) => 5_000.0,
                    (false, 0 | 1) if slow_now(t) => 250.0,
                    (false, _) => 2_500.0,
                };
                let replay = Pipeline {
                    commit_phase: phase,
                    commit_jitter: jitter,
                    batch: 22.0,
                    refresh,
                    owners: shared.then(|| (0..12).map(|p| p / 2).collect()),
                    reports,
                    ..Pipeline::new(75, 12, 4_500.0, capacity)
                }
                .run();
                replays.push((replay, phase, jitter));
            }
        }
        replays
    }

    /// Checks the waits and shares of [`ten_times_slower`] replays: the
    /// median and worst p99 wait under `p99s` (seconds), and the slow
    /// partitions' share back within `back` seconds of recovery.
    fn check_waits(replays: &[(Replay, f64, f64)], p99s: (f64, f64), back: usize) {
        let mut all: Vec<f64> = replays
            .iter()
            .map(|(r, ..)| r.wait_quantile(0.99))
            .collect();
        all.sort_by(f64::total_cmp);
        // On an even share the slow partitions' records would wait up to
        // 17 s (4,375 records at 250/s), and 1 % of all records would wait
        // more than 10 s.
        let median = all[all.len() / 2];
        let worst = all[all.len() - 1];
        eprintln!(
            "p99 wait over {} replays: median {median:.3} s, worst {worst:.3} s",
            all.len()
        );
        assert!(median < p99s.0, "median p99 {median:.3} s");
        assert!(worst < p99s.1, "worst p99 {worst:.3} s");
        for (replay, phase, jitter) in replays {
            let longest = replay.longest_wait();
            assert!(
                longest < 3.5,
                "phase {phase}, jitter {jitter}: {longest:.3} s"
            );
            // While slow, the slow partitions get less than their
            // consumer processes (500 of 4,500 a second: 11 %) ...
            let during: f64 = (20..50).map(|s| replay.share(s, &[0, 1])).sum::<f64>() / 30.0;
            assert!(
                during < 0.111,
                "phase {phase}, jitter {jitter}: {during:.3}"
            );
            // ... and once it recovers (at 50 s) their share is back to at
            // least 80 % of even (16.7 %), for three seconds running.
            let at = (51..=70)
                .find(|s| (*s..*s + 3).all(|x| replay.share(x, &[0, 1]) >= 0.8 / 6.0))
                .unwrap_or_else(|| panic!("phase {phase}, jitter {jitter}: never back"));
            assert!(
                at <= 50 + back,
                "phase {phase}, jitter {jitter}: back at {at} s"
            );
        }
    }

    #[test]
    fn routing_keeps_waits_short_whenever_the_group_commits() {
        check_waits(&ten_times_slower(true, false, 1.0, false), (1.1, 1.5), 8);
    }

    #[test]
    fn routing_keeps_waits_short_with_consumers_of_two_partitions() {
        check_waits(&ten_times_slower(true, true, 1.0, false), (1.1, 1.5), 8);
    }

    #[test]
    fn routing_on_lag_collected_four_times_per_commit_interval_waits_less() {
        // A collection a quarter of the commit interval after the last
        // bounds what a backlog can hide to a quarter second of arrivals,
        // and probes timed in seconds are judged four times as often.
        check_waits(&ten_times_slower(true, true, 0.25, false), (0.4, 0.6), 8);
    }

    #[test]
    fn routing_by_reported_processing_time_waits_little_and_needs_no_probe() {
        for refresh in [1.0, 0.25] {
            let replays = ten_times_slower(true, true, refresh, true);
            // The share of records actually received, counted per whole
            // second and drawn in sticky batches, is back within 4 s.
            check_waits(&replays, (0.05, 0.1), 4);
            for (replay, phase, jitter) in &replays {
                // The routing weight is back near even within two
                // collections of the first commit that follows the
                // recovery at 50 s (commits every 1 ± 0.05 s; the first
                // may still report a mix of slow and fast records).
                let per_second = (1.0 / refresh) as usize;
                let back = (50 * per_second..=75 * per_second)
                    .find(|r| replay.routing(*r, 0).weight >= 0.8 / 12.0)
                    .expect("back");
                assert!(
                    back <= 53 * per_second,
                    "refresh {refresh}, phase {phase}, jitter {jitter}: back at refresh {back}"
                );
                // Every consumer reports, so every partition is routed by
                // its report: the slow consumer's two partitions get about
                // their capacity's share of the group's (1,000 of 51,000
                // records per second: 2 %) while it is slow.
                for r in [30, 40] {
                    let routing = replay.routing(r * per_second, 0);
                    assert_eq!(routing.reason, RoutingReason::Reported, "{routing:?}");
                    assert_eq!(routing.capacity, Some(500.0), "{routing:?}");
                    assert!(
                        (routing.weight - 500.0 / 51_000.0).abs() < 1e-3,
                        "refresh {refresh}, phase {phase}, jitter {jitter}, {r} s: {routing:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn routing_by_reported_processing_time_keeps_an_even_share_when_none_is_slow() {
        for (replay, phase, jitter) in ten_times_slower(false, true, 1.0, true) {
            for r in 3..=75 {
                for p in 0..12 {
                    let routing = replay.routing(r, p);
                    assert_eq!(routing.reason, RoutingReason::Reported);
                    assert!(
                        (routing.weight - 1.0 / 12.0).abs() < 1e-3,
                        "phase {phase}, jitter {jitter}, {r} s, partition {p}: {routing:?}"
                    );
                }
            }
            let p99 = replay.wait_quantile(0.99);
            assert!(p99 <= 0.011, "{p99}");
        }
    }

    #[test]
    fn routing_without_a_slow_consumer_keeps_an_even_share() {
        for (replay, phase, jitter) in ten_times_slower(false, false, 1.0, false) {
            for r in 5..=75 {
                for p in 0..12 {
                    let routing = replay.routing(r, p);
                    assert_eq!(
                        routing.reason,
                        RoutingReason::Even,
                        "phase {phase}, jitter {jitter}, {r} s, partition {p}: {routing:?}"
                    );
                }
            }
            // Records wait for little more than their own batch's work (22
            // records at 2,500/s: 9 ms).
            let p99 = replay.wait_quantile(0.99);
            assert!(p99 <= 0.011, "{p99}");
        }
    }

    #[test]
    fn routing_a_burst_is_drained_while_the_partition_keeps_receiving() {
        // Partition 3's consumer processes 300/s (less than an even 375/s
        // share); 3,000 records land on it at 10 s.
        let capacity = |_: f64, p: usize| if p == 3 { 300.0 } else { 2_500.0 };
        let replay = Pipeline {
            burst: Some((10.0, 3, 3_000.0)),
            ..Pipeline::new(40, 12, 4_500.0, capacity)
        }
        .run();
        let draining: Vec<usize> = (11..=40)
            .filter(|t| replay.routing(*t, 3).reason == RoutingReason::Draining)
            .collect();
        assert!(!draining.is_empty());
        for t in &draining {
            let r = replay.routing(*t, 3);
            assert!(r.weight > 0.0, "it keeps receiving while it drains: {r:?}");
            assert!(r.target_rate < 300.0, "{r:?}");
        }
        // Drained to nothing, then routed below its consumer's capacity.
        let least = (20..=40)
            .map(|t| replay.backlog(t, 3))
            .fold(f64::MAX, f64::min);
        assert!(least < 1.0, "{least} left");
        let after = replay.routing(*draining.last().unwrap() + 1, 3);
        assert_eq!(after.reason, RoutingReason::Settling);
        assert!(after.target_rate < 300.0, "{after:?}");
    }

    #[test]
    fn routing_a_stalled_consumer_gets_nothing() {
        let capacity = |t: f64, p: usize| if p == 2 && t >= 10.0 { 0.0 } else { 2_500.0 };
        let replay = Pipeline::new(30, 6, 1_200.0, capacity).run();
        let cut = (11..=14)
            .find(|t| replay.routing(*t, 2).weight == 0.0)
            .expect("cut off within four refreshes");
        for t in cut..=30 {
            let r = replay.routing(t, 2);
            assert_eq!(r.weight, 0.0, "{t} s: {r:?}");
            assert_eq!(r.reason, RoutingReason::NotMoving);
        }
        // The others share its part.
        assert!((replay.routing(30, 0).weight - 0.2).abs() < 1e-6);
    }

    #[test]
    fn routing_lag_left_between_commits_is_not_backlog() {
        // Every consumer keeps up but commits only every 5 s: up to 5 s
        // of records show as lag. Once two commits have been seen, that
        // is not backlog: every partition keeps an even share.
        let replay = Pipeline {
            commit: 5.0,
            commit_phase: 5.0,
            ..Pipeline::new(60, 6, 1_200.0, |_, _| 2_500.0)
        }
        .run();
        for t in 20..=60 {
            for p in 0..6 {
                let r = replay.routing(t, p);
                assert_eq!(r.reason, RoutingReason::Even, "{t} s, partition {p}: {r:?}");
                assert!((r.weight - 1.0 / 6.0).abs() < 1e-6);
                assert_eq!(r.backlog, 0.0);
            }
        }
    }
}
