//! What one run measured and how it is reported: end-to-end latency
//! percentiles (all records, the slow partitions, the others), lag per
//! partition, the share of records each partition received over time, the
//! times to shift and to come back, and the Markdown comparison table.

use std::fmt::Write as _;

/// Width of a routing bucket (by send time), microseconds.
pub(crate) const BUCKET_US: u64 = 100_000;
/// Buckets in the window the shares are judged on (3 s): the records that
/// follow a moment, pooled. A partition is chosen for a whole sticky batch
/// (up to about 136 records of 100 B, 3 % of a second's records at 4,500
/// records/s), so one second's share swings by several points even when
/// routing is steady; three seconds pooled do not.
const WINDOW: usize = 30;

/// The records each consumer handled: latencies in microseconds, by
/// partition.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Per partition, produce-to-processed latency of each record (us).
    pub latencies: Vec<Vec<u64>>,
    /// Records handled.
    pub count: u64,
    /// Errors the consumers reported (from their `end` lines).
    pub consumer_errors: u64,
}

/// The slow window of a run, in seconds since the producer started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlowWindow {
    pub from: f64,
    pub until: f64,
}

/// Everything one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub strategy: String,
    /// `None` for a run without a slow consumer.
    pub slow: Option<SlowWindow>,
    pub slow_partitions: Vec<i32>,
    pub partitions: i32,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    /// The first few send errors, as text.
    pub error_samples: Vec<String>,
    /// Seconds from the first send to the last acknowledgement.
    pub produce_secs: f64,
    pub received: Received,
    /// Records per partition per bucket (by send time).
    pub buckets: Vec<Vec<u64>>,
    /// Lag samples: (seconds since start, lag per partition).
    pub lag: Vec<(f64, Vec<i64>)>,
    pub lag_errors: u64,
    /// The smart partitioner's routing counts (by health, by fallback).
    pub routing: Option<(u64, u64)>,
    /// At each health update with routing weights (trend scoring): seconds
    /// since the start, the slow partitions' weight together.
    pub weights: Vec<(f64, f64)>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub n: usize,
}

impl Percentiles {
    fn of(mut values: Vec<u64>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let at = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
            n: values.len(),
        }
    }
}

impl Outcome {
    fn is_slow(&self, partition: usize) -> bool {
        self.slow_partitions.contains(&(partition as i32))
    }

    /// Latency of all records, of the slow partitions', of the others'.
    pub fn latency(&self) -> (Percentiles, Percentiles, Percentiles) {
        let (mut all, mut slow, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (p, values) in self.received.latencies.iter().enumerate() {
            all.extend_from_slice(values);
            if self.is_slow(p) {
                slow.extend_from_slice(values);
            } else {
                rest.extend_from_slice(values);
            }
        }
        (
            Percentiles::of(all),
            Percentiles::of(slow),
            Percentiles::of(rest),
        )
    }

    /// The slow partitions' fair share of the records.
    fn fair_share(&self) -> f64 {
        self.slow_partitions.len() as f64 / f64::from(self.partitions.max(1))
    }

    /// The slow partitions' share of the records sent in buckets `range`.
    fn share(&self, range: std::ops::Range<usize>) -> Option<f64> {
        let (mut slow, mut all) = (0u64, 0u64);
        for bucket in self.buckets.get(range)? {
            for (p, n) in bucket.iter().enumerate() {
                all += n;
                if self.is_slow(p) {
                    slow += n;
                }
            }
        }
        (all > 0).then(|| slow as f64 / all as f64)
    }

    fn bucket_at(secs: f64) -> usize {
        (secs * 1e6 / BUCKET_US as f64).round().max(0.0) as usize
    }

    /// The slow partitions' share before, during and after the slow phase.
    pub fn phase_shares(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let Some(w) = self.slow else {
            return (self.share(0..self.buckets.len()), None, None);
        };
        let (a, b) = (Self::bucket_at(w.from), Self::bucket_at(w.until));
        (
            self.share(0..a),
            self.share(a..b.min(self.buckets.len())),
            self.share(b.min(self.buckets.len())..self.buckets.len()),
        )
    }

    /// Seconds from `at` until the first moment from which the slow
    /// partitions' share of the records sent over the next [`WINDOW`]
    /// buckets, pooled, satisfies `test`; `None` if none does.
    fn time_until(&self, at: f64, test: impl Fn(f64) -> bool) -> Option<f64> {
        let first = Self::bucket_at(at);
        let last = self.buckets.len().checked_sub(WINDOW)?;
        (first..=last)
            .find(|start| self.share(*start..start + WINDOW).is_some_and(&test))
            .map(|start| (start - first) as f64 * BUCKET_US as f64 / 1e6)
    }

    /// Time to shift: from the consumer turning slow until the moment from
    /// which the slow partitions' share of the next three seconds is below
    /// half the fair share.
    pub fn time_to_shift(&self) -> Option<f64> {
        let w = self.slow?;
        let half = self.fair_share() / 2.0;
        self.time_until(w.from, |s| s < half)
            .filter(|t| *t <= w.until - w.from)
    }

    /// Time to come back: from the consumer's recovery until the moment
    /// from which the slow partitions get at least 80% of their fair share
    /// of the next three seconds.
    /// `None` when routing never shifted away from them.
    pub fn time_to_come_back(&self) -> Option<f64> {
        let w = self.slow?;
        self.time_to_shift()?;
        let target = self.fair_share() * 0.8;
        self.time_until(w.until, |s| s >= target)
    }

    /// Routing's own reaction, from its weights: seconds from the consumer
    /// turning slow until the slow partitions' routing weight together is
    /// below half their fair share, and from its recovery until it is at
    /// least 80 % of it; `None` without weights (or when it never does).
    pub fn routing_reaction(&self) -> (Option<f64>, Option<f64>) {
        let Some(w) = self.slow else {
            return (None, None);
        };
        let fair = self.fair_share();
        let first = |after: f64, test: &dyn Fn(f64) -> bool| {
            self.weights
                .iter()
                .find(|(t, weight)| *t >= after && test(*weight))
                .map(|(t, _)| t - after)
        };
        let shift = first(w.from, &|weight| weight < fair / 2.0).filter(|t| *t <= w.until - w.from);
        let back = shift.and_then(|_| first(w.until, &|weight| weight >= 0.8 * fair));
        (shift, back)
    }

    /// Highest lag seen on any slow partition, on any other; lag of the
    /// slow partitions in the last sample (taken as production ended).
    pub fn lag_summary(&self) -> (i64, i64, i64) {
        let (mut slow, mut rest) = (0, 0);
        for (_, lags) in &self.lag {
            for (p, lag) in lags.iter().enumerate() {
                if self.is_slow(p) {
                    slow = slow.max(*lag);
                } else {
                    rest = rest.max(*lag);
                }
            }
        }
        let last = self.lag.last().map_or(0, |(_, lags)| {
            lags.iter()
                .enumerate()
                .filter(|(p, _)| self.is_slow(*p))
                .map(|(_, l)| *l)
                .max()
                .unwrap_or(0)
        });
        (slow, rest, last)
    }

    /// Acknowledged records per second of production.
    pub fn records_per_sec(&self) -> f64 {
        self.acked as f64 / self.produce_secs.max(1e-9)
    }

    /// Whether the run failed (not a figure: errors, nothing consumed).
    pub fn failure(&self) -> Option<String> {
        if self.send_errors > 0 {
            return Some(format!(
                "{} records failed: {}",
                self.send_errors,
                self.error_samples.join("; ")
            ));
        }
        if self.acked == 0 || self.received.count == 0 {
            return Some(format!(
                "{} records acknowledged, {} consumed",
                self.acked, self.received.count
            ));
        }
        None
    }

    /// The report of one run, as text.
    pub fn print(&self) {
        let mut s = String::new();
        let (all, slow, rest) = self.latency();
        let _ = writeln!(
            s,
            "\n== {} ({})",
            self.strategy,
            match self.slow {
                Some(w) => format!(
                    "slow consumer on partitions {:?} from {:.0} s to {:.0} s",
                    self.slow_partitions, w.from, w.until
                ),
                None => "no slow consumer".to_owned(),
            }
        );
        let _ = writeln!(
            s,
            "records: {} sent, {} acknowledged ({} failed), {} consumed; {:.0} records/s over {:.1} s",
            self.sent,
            self.acked,
            self.send_errors,
            self.received.count,
            self.records_per_sec(),
            self.produce_secs
        );
        if self.received.count < self.acked {
            let _ = writeln!(
                s,
                "  {} acknowledged records were not consumed before the drain timeout",
                self.acked - self.received.count
            );
        }
        for (name, p) in [("all", all), ("slow partitions", slow), ("others", rest)] {
            let _ = writeln!(
                s,
                "latency {name:<16} p50 {:>9.1} ms  p99 {:>9.1} ms  max {:>9.1} ms  ({} records)",
                p.p50, p.p99, p.max, p.n
            );
        }
        let (before, during, after) = self.phase_shares();
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            s,
            "slow partitions' share (fair {:.1}%): before {}, during {}, after {}",
            self.fair_share() * 100.0,
            pct(before),
            pct(during),
            pct(after)
        );
        if self.slow.is_some() {
            let secs = |v: Option<f64>| v.map_or("never".to_owned(), |v| format!("{v:.1} s"));
            let _ = writeln!(
                s,
                "time to shift {}, time to come back {}",
                secs(self.time_to_shift()),
                self.time_to_come_back()
                    .map_or("-".to_owned(), |v| format!("{v:.1} s"))
            );
            if !self.weights.is_empty() {
                let (shift, back) = self.routing_reaction();
                let _ = writeln!(
                    s,
                    "routing weights: shifted after {}, back after {}",
                    secs(shift),
                    back.map_or("-".to_owned(), |v| format!("{v:.1} s"))
                );
            }
        }
        if let Some((health, fallback)) = self.routing {
            let _ = writeln!(
                s,
                "smart routing: {health} by health, {fallback} by fallback"
            );
        }
        let _ = writeln!(
            s,
            "per partition:   share   max lag  final lag   p99 ms{}",
            if self.lag_errors > 0 {
                format!("   ({} lag samples failed)", self.lag_errors)
            } else {
                String::new()
            }
        );
        let total: u64 = self.buckets.iter().flatten().sum();
        for p in 0..self.partitions as usize {
            let sent: u64 = self.buckets.iter().filter_map(|b| b.get(p)).sum();
            let max_lag = self.lag.iter().filter_map(|(_, l)| l.get(p)).max();
            let final_lag = self.lag.last().and_then(|(_, l)| l.get(p));
            let p99 = self
                .received
                .latencies
                .get(p)
                .map_or(0.0, |v| Percentiles::of(v.clone()).p99);
            let _ = writeln!(
                s,
                "  {p:>2}{}          {:>5.1}% {:>9} {:>10} {:>8.1}",
                if self.is_slow(p) { "*" } else { " " },
                100.0 * sent as f64 / total.max(1) as f64,
                max_lag.map_or("-".to_owned(), i64::to_string),
                final_lag.map_or("-".to_owned(), i64::to_string),
                p99
            );
        }
        let _ = write!(s, "slow partitions' share per second (%):");
        for second in 0..self.buckets.len().div_ceil(WINDOW) {
            let range = second * WINDOW..((second + 1) * WINDOW).min(self.buckets.len());
            match self.share(range) {
                Some(v) => {
                    let _ = write!(s, " {:.0}", v * 100.0);
                }
                None => s.push_str(" -"),
            }
        }
        s.push('\n');
        let _ = write!(s, "max lag of the slow partitions per second:");
        for (_, lags) in &self.lag {
            let m = lags
                .iter()
                .enumerate()
                .filter(|(p, _)| self.is_slow(*p))
                .map(|(_, l)| *l)
                .max()
                .unwrap_or(0);
            let _ = write!(s, " {m}");
        }
        s.push('\n');
        print!("{s}");
    }
}

/// The comparison table of a run-all, in Markdown, with the goals checked
/// against the baseline (no slow consumer) and the standard partitioner.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str(
        "| strategy | slow consumer | records/s | p50 ms | p99 ms | max ms | p99 slow partitions ms | p99 others ms | slow partitions' share during / after | max lag slow / others | final lag slow | time to shift | time to come back | routing weights shift / back |\n",
    );
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|\n");
    let secs = |v: Option<f64>| v.map_or("never".to_owned(), |v| format!("{v:.1} s"));
    for o in outcomes {
        let (all, slow, rest) = o.latency();
        let (_, during, after) = o.phase_shares();
        let (lag_slow, lag_rest, final_slow) = o.lag_summary();
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} | {} / {} | {} | {} | {} | {} |",
            o.strategy,
            if o.slow.is_some() { "yes" } else { "no" },
            o.records_per_sec(),
            all.p50,
            all.p99,
            all.max,
            slow.p99,
            rest.p99,
            pct(during),
            pct(after),
            lag_slow,
            lag_rest,
            final_slow,
            if o.slow.is_some() {
                secs(o.time_to_shift())
            } else {
                "-".to_owned()
            },
            o.time_to_come_back()
                .map_or("-".to_owned(), |v| format!("{v:.1} s")),
            match o.routing_reaction() {
                (None, None) => "-".to_owned(),
                (shift, back) => format!(
                    "{} / {}",
                    secs(shift),
                    back.map_or("-".to_owned(), |v| format!("{v:.1} s"))
                ),
            },
        );
    }
    let baseline = outcomes.iter().find(|o| o.slow.is_none());
    let standard = outcomes
        .iter()
        .find(|o| o.slow.is_some() && o.strategy == "sticky");
    let mut goals = String::new();
    for o in outcomes.iter().filter(|o| o.slow.is_some()) {
        let p99 = o.latency().0.p99;
        let mut parts = Vec::new();
        if let Some(b) = baseline {
            parts.push(format!(
                "p99 {:.1}x the run without a slow consumer (goal: at most 2x)",
                p99 / b.latency().0.p99.max(1e-9)
            ));
        }
        if let Some(st) = standard.filter(|st| st.strategy != o.strategy) {
            parts.push(format!(
                "{:.2}x the standard partitioner's p99 (goal: at most 0.2x)",
                p99 / st.latency().0.p99.max(1e-9)
            ));
            parts.push(format!(
                "throughput {:+.1}% against it (goal: within 5%)",
                100.0 * (o.records_per_sec() / st.records_per_sec().max(1e-9) - 1.0)
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(goals, "- {}: {}", o.strategy, parts.join("; "));
        }
    }
    if !goals.is_empty() {
        s.push('\n');
        s.push_str(&goals);
    }
    s
}
