//! The circuit breaker of a [`Sink`](super::Sink): a pure state machine with
//! time passed in, so every transition can be tested without a clock.
//!
//! See [`CircuitBreaker`] for the states and transitions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::Error;

/// The window is counted in this many buckets (success and failure counts
/// per bucket), so the breaker's memory is bounded whatever the rate of
/// calls; failures leave the window a bucket at a time.
const BUCKETS: u32 = 8;

/// When a [`CircuitBreaker`] opens and how it recovers.
///
/// ```
/// use std::time::Duration;
/// use smartkafka::sink::BreakerConfig;
///
/// let config = BreakerConfig::new()
///     .failure_threshold(5)
///     .window(Duration::from_secs(10))
///     .open_timeout(Duration::from_secs(30))
///     .probes(2);
/// assert!(config.validate().is_ok());
/// assert!(BreakerConfig::new().probes(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures within [`window`](Self::window) that open the breaker
    /// (default 5).
    pub failure_threshold: u32,
    /// Optionally, a failure ratio (0 < r ≤ 1) that opens the breaker once
    /// at least `min_calls` outcomes are in the window (default none).
    pub failure_ratio: Option<(f64, u32)>,
    /// How far back failures count (default 10 s).
    pub window: Duration,
    /// How long the breaker stays open before letting probes through
    /// (default 30 s).
    pub open_timeout: Duration,
    /// How many probes go through half-open, and must all succeed to close
    /// it (default 1).
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::new()
    }
}

impl BreakerConfig {
    /// The defaults: open after 5 failures within 10 s, probe after 30 s
    /// with one call.
    pub fn new() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            failure_ratio: None,
            window: Duration::from_secs(10),
            open_timeout: Duration::from_secs(30),
            probes: 1,
        }
    }

    /// Failures within the window that open the breaker.
    #[must_use]
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Also opens the breaker when at least `ratio` of the outcomes in the
    /// window are failures, once there are at least `min_calls` of them.
    #[must_use]
    pub fn failure_ratio(mut self, ratio: f64, min_calls: u32) -> Self {
        self.failure_ratio = Some((ratio, min_calls));
        self
    }

    /// How far back failures count.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the breaker stays open before probing.
    #[must_use]
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How many probes go through when half-open.
    #[must_use]
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if self.failure_threshold == 0 {
            return Err(Error::config("failure_threshold", "must be at least 1"));
        }
        if let Some((ratio, min_calls)) = self.failure_ratio {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(Error::config(
                    "failure_ratio",
                    format_args!("{ratio} is not in (0, 1]"),
                ));
            }
            if min_calls == 0 {
                return Err(Error::config(
                    "failure_ratio",
                    "min_calls must be at least 1",
                ));
            }
        }
        if self.window.is_zero() {
            return Err(Error::config("window", "must be longer than zero"));
        }
        if self.open_timeout.is_zero() {
            return Err(Error::config("open_timeout", "must be longer than zero"));
        }
        if self.probes == 0 {
            return Err(Error::config("probes", "must be at least 1"));
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// A few probes go through; the rest are refused.
    HalfOpen,
    /// Calls are refused at once.
    Open,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What [`CircuitBreaker::try_acquire`] admitted a call as; hand it back
/// with the call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// An ordinary call while closed (or a call that was not admitted by the
    /// breaker, such as a retry of an accepted record).
    Normal,
    /// A half-open probe of the given half-open period.
    Probe(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        period: u64,
        admitted: u32,
        succeeded: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    successes: u32,
    failures: u32,
}

/// A circuit breaker.
///
/// ```text
///            failures ≥ threshold within the window
///            (or failure ratio ≥ r over ≥ min_calls)
///   Closed ──────────────────────────────────────────► Open
///     ▲                                                 │ open_timeout passed
///     │ `probes` probes succeeded                       ▼
///     └──────────────────────────────────────────── HalfOpen
///                                 a probe failed: ──► Open (a new trip)
/// ```
///
/// While open, [`CircuitBreaker::try_acquire`] refuses at once. Half-open,
/// it lets `probes` calls through (the probes) and refuses the rest until
/// they report back. Outcomes of calls admitted in an earlier state (records
/// still in flight when the breaker tripped) do not move it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use smartkafka::sink::{BreakerConfig, BreakerState, CircuitBreaker};
///
/// let config = BreakerConfig::new().failure_threshold(2).open_timeout(Duration::from_secs(5));
/// let mut breaker = CircuitBreaker::new(config)?;
/// let t0 = Instant::now();
/// for _ in 0..2 {
///     let permit = breaker.try_acquire(t0).unwrap();
///     breaker.on_failure(permit, t0);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire(t0 + Duration::from_secs(1)).is_err()); // refused
/// let probe = breaker.try_acquire(t0 + Duration::from_secs(5)).unwrap(); // half-open
/// breaker.on_success(probe, t0 + Duration::from_secs(5));
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// assert_eq!(breaker.trips(), 1);
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
    buckets: VecDeque<Bucket>,
    trips: u64,
    periods: u64,
}

impl CircuitBreaker {
    /// A closed breaker with `config` (validated).
    pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, Error> {
        config.validate()?;
        Ok(CircuitBreaker {
            config,
            state: State::Closed,
            buckets: VecDeque::with_capacity(BUCKETS as usize + 1),
            trips: 0,
            periods: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state as of the last call (an open breaker whose timeout has
    /// passed turns half-open at the next [`try_acquire`](Self::try_acquire)
    /// or [`advance`](Self::advance)).
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker opened.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Moves an open breaker whose timeout has passed to half-open.
    pub fn advance(&mut self, now: Instant) {
        if let State::Open { until } = self.state
            && now >= until
        {
            self.periods += 1;
            self.state = State::HalfOpen {
                period: self.periods,
                admitted: 0,
                succeeded: 0,
            };
        }
    }

    /// Admits a call, or refuses it with how long until probes go through
    /// (zero when half-open with every probe out).
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Duration> {
        self.advance(now);
        match &mut self.state {
            State::Closed => Ok(Permit::Normal),
            State::Open { until } => Err(until.saturating_duration_since(now)),
            State::HalfOpen {
                period, admitted, ..
            } => {
                if *admitted < self.config.probes {
                    *admitted += 1;
                    Ok(Permit::Probe(*period))
                } else {
                    Err(Duration::ZERO)
                }
            }
        }
    }

    /// The call admitted with `permit` succeeded.
    pub fn on_success(&mut self, permit: Permit, now: Instant) {
        match (&mut self.state, permit) {
            (State::Closed, _) => self.count(now, false),
            (
                State::HalfOpen {
                    period, succeeded, ..
                },
                Permit::Probe(p),
            ) if *period == p => {
                *succeeded += 1;
                if *succeeded >= self.config.probes {
                    self.state = State::Closed;
                    self.buckets.clear();
                }
            }
            _ => {}
        }
    }

    /// The call admitted with `permit` failed in a way that says the
    /// cluster is unhealthy.
    pub fn on_failure(&mut self, permit: Permit, now: Instant) {
        match (&self.state, permit) {
            (State::Closed, _) => {
                self.count(now, true);
                if self.should_trip() {
                    self.trip(now);
                }
            }
            (State::HalfOpen { period, .. }, Permit::Probe(p)) if *period == p => self.trip(now),
            _ => {}
        }
    }

    /// The call admitted with `permit` ended without saying anything about
    /// the cluster (the caller's own mistake, say): a half-open probe slot
    /// is freed for another call.
    pub fn on_ignored(&mut self, permit: Permit) {
        if let (
            State::HalfOpen {
                period, admitted, ..
            },
            Permit::Probe(p),
        ) = (&mut self.state, permit)
            && *period == p
        {
            *admitted = admitted.saturating_sub(1);
        }
    }

    fn trip(&mut self, now: Instant) {
        self.trips += 1;
        self.buckets.clear();
        self.state = State::Open {
            until: now + self.config.open_timeout,
        };
    }

    /// Adds an outcome to the window, dropping buckets that left it.
    fn count(&mut self, now: Instant, failure: bool) {
        let window = self.config.window;
        while let Some(front) = self.buckets.front() {
            if now.saturating_duration_since(front.start) >= window {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
        let width = window / BUCKETS;
        let fits = self
            .buckets
            .back()
            .is_some_and(|b| now.saturating_duration_since(b.start) < width);
        if !fits {
            self.buckets.push_back(Bucket {
                start: now,
                successes: 0,
                failures: 0,
            });
        }
        if let Some(bucket) = self.buckets.back_mut() {
            if failure {
                bucket.failures = bucket.failures.saturating_add(1);
            } else {
                bucket.successes = bucket.successes.saturating_add(1);
            }
        }
    }

    fn should_trip(&self) -> bool {
        let (mut failures, mut calls) = (0u64, 0u64);
        for b in &self.buckets {
            failures += u64::from(b.failures);
            calls += u64::from(b.failures) + u64::from(b.successes);
        }
        if failures >= u64::from(self.config.failure_threshold) {
            return true;
        }
        match self.config.failure_ratio {
            #[allow(clippy::cast_precision_loss)]
            Some((ratio, min_calls)) if calls >= u64::from(min_calls) && calls > 0 => {
                failures as f64 / calls as f64 >= ratio
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> Instant {
        crate::clock::now()
    }

    fn breaker(threshold: u32, probes: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            BreakerConfig::new()
                .failure_threshold(threshold)
                .window(Duration::from_secs(8))
                .open_timeout(Duration::from_secs(5))
                .probes(probes),
        )
        .unwrap()
    }

    fn fail(b: &mut CircuitBreaker, at: Instant) {
        let permit = b.try_acquire(at).unwrap();
        b.on_failure(permit, at);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            (
                BreakerConfig::new().failure_threshold(0),
                "failure_threshold",
            ),
            (BreakerConfig::new().failure_ratio(0.0, 10), "failure_ratio"),
            (BreakerConfig::new().failure_ratio(1.5, 10), "failure_ratio"),
            (
                BreakerConfig::new().failure_ratio(f64::NAN, 10),
                "failure_ratio",
            ),
            (BreakerConfig::new().failure_ratio(0.5, 0), "failure_ratio"),
            (BreakerConfig::new().window(Duration::ZERO), "window"),
            (
                BreakerConfig::new().open_timeout(Duration::ZERO),
                "open_timeout",
            ),
            (BreakerConfig::new().probes(0), "probes"),
        ];
        for (config, field) in cases {
            let err = CircuitBreaker::new(config).unwrap_err();
            assert_eq!(err.kind(), &crate::ErrorKind::Config { field }, "{err}");
        }
    }

    /// Each row: the steps, and the state and trip count expected after.
    #[test]
    fn transitions_table() {
        #[derive(Clone, Copy, Debug)]
        enum Step {
            Fail(u64),
            Succeed(u64),
            Acquire(u64, bool),
        }
        use Step::*;
        let rows: &[(&str, &[Step], BreakerState, u64)] = &[
            (
                "below threshold",
                &[Fail(0), Fail(1)],
                BreakerState::Closed,
                0,
            ),
            (
                "threshold reached",
                &[Fail(0), Fail(1), Fail(2)],
                BreakerState::Open,
                1,
            ),
            (
                "failures leave the window",
                &[Fail(0), Fail(1), Fail(10), Fail(11)],
                BreakerState::Closed,
                0,
            ),
            (
                "successes do not reset the count",
                &[Fail(0), Succeed(0), Fail(1), Succeed(1), Fail(2)],
                BreakerState::Open,
                1,
            ),
            (
                "open refuses before the timeout",
                &[Fail(0), Fail(0), Fail(0), Acquire(4, false)],
                BreakerState::Open,
                1,
            ),
            (
                "half-open after the timeout, probe succeeds",
                &[Fail(0), Fail(0), Fail(0), Succeed(5)],
                BreakerState::Closed,
                1,
            ),
            (
                "probe fails: open again, a second trip",
                &[Fail(0), Fail(0), Fail(0), Fail(5), Acquire(9, false)],
                BreakerState::Open,
                2,
            ),
            (
                "reopened breaker probes again after its timeout",
                &[Fail(0), Fail(0), Fail(0), Fail(5), Succeed(10)],
                BreakerState::Closed,
                2,
            ),
        ];
        for (name, steps, state, trips) in rows {
            let start = t0();
            let mut b = breaker(3, 1);
            for step in *steps {
                match *step {
                    Fail(s) => fail(&mut b, start + Duration::from_secs(s)),
                    Succeed(s) => {
                        let at = start + Duration::from_secs(s);
                        let permit = b.try_acquire(at).unwrap();
                        b.on_success(permit, at);
                    }
                    Acquire(s, admitted) => {
                        let got = b.try_acquire(start + Duration::from_secs(s));
                        assert_eq!(got.is_ok(), admitted, "{name}: {step:?}");
                    }
                }
            }
            assert_eq!(b.state(), *state, "{name}");
            assert_eq!(b.trips(), *trips, "{name}");
        }
    }

    #[test]
    fn half_open_admits_only_the_probes_and_needs_them_all() {
        let start = t0();
        let mut b = breaker(1, 2);
        fail(&mut b, start);
        let at = start + Duration::from_secs(5);
        let p1 = b.try_acquire(at).unwrap();
        let p2 = b.try_acquire(at).unwrap();
        assert_eq!(b.try_acquire(at), Err(Duration::ZERO));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success(p1, at);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success(p2, at);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn an_ignored_probe_frees_its_slot() {
        let start = t0();
        let mut b = breaker(1, 1);
        fail(&mut b, start);
        let at = start + Duration::from_secs(5);
        let probe = b.try_acquire(at).unwrap();
        assert!(b.try_acquire(at).is_err());
        b.on_ignored(probe);
        assert!(b.try_acquire(at).is_ok());
    }

    #[test]
    fn late_outcomes_of_earlier_calls_do_not_move_it() {
        let start = t0();
        let mut b = breaker(1, 1);
        let early = b.try_acquire(start).unwrap();
        fail(&mut b, start);
        // A call admitted while closed fails while open: no second trip.
        b.on_failure(early, start);
        assert_eq!(b.trips(), 1);
        let at = start + Duration::from_secs(5);
        let probe = b.try_acquire(at).unwrap();
        // ...nor does it fail or close the half-open breaker.
        b.on_failure(early, at);
        b.on_success(early, at);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success(probe, at);
        assert_eq!(b.state(), BreakerState::Closed);
        // A probe of an earlier half-open period is stale too.
        fail(&mut b, at);
        let at2 = at + Duration::from_secs(5);
        let _new_probe = b.try_acquire(at2).unwrap();
        b.on_success(probe, at2);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn failure_ratio_trips_once_enough_calls_are_in() {
        let start = t0();
        let mut b = CircuitBreaker::new(
            BreakerConfig::new()
                .failure_threshold(1000)
                .failure_ratio(0.5, 10),
        )
        .unwrap();
        for i in 0..4 {
            let p = b.try_acquire(start).unwrap();
            b.on_success(p, start);
            fail(&mut b, start + Duration::from_millis(i));
        }
        // 4 of 8: the ratio is there but not the calls.
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.try_acquire(start).unwrap();
        b.on_success(p, start);
        fail(&mut b, start);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Succeed,
        Fail,
        Ignore,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Acquire),
            2 => Just(Op::Succeed),
            2 => Just(Op::Fail),
            1 => Just(Op::Ignore),
            2 => (0u64..3000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever happens: probes out never exceed the configured number,
        /// an open breaker admits nothing before its timeout, every trip is
        /// a move into open, and a closed breaker admits everything.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..200), probes in 1u32..4) {
            let start = t0();
            let mut now = start;
            let mut b = breaker(3, probes);
            let mut outstanding: Vec<Permit> = Vec::new();
            let mut opened_at: Option<Instant> = None;
            for op in ops {
                let before = b.state();
                let trips_before = b.trips();
                match op {
                    Op::Acquire => {
                        let got = b.try_acquire(now);
                        match before {
                            BreakerState::Closed => prop_assert!(got.is_ok()),
                            BreakerState::Open => {
                                let since = now.duration_since(opened_at.unwrap());
                                if since < Duration::from_secs(5) {
                                    prop_assert!(got.is_err());
                                }
                            }
                            BreakerState::HalfOpen => {}
                        }
                        if let Ok(p) = got {
                            outstanding.push(p);
                        }
                    }
                    Op::Succeed => if let Some(p) = outstanding.pop() { b.on_success(p, now) },
                    Op::Fail => if let Some(p) = outstanding.pop() { b.on_failure(p, now) },
                    Op::Ignore => if let Some(p) = outstanding.pop() { b.on_ignored(p) },
                    Op::Wait(ms) => { now += Duration::from_millis(ms); b.advance(now); }
                }
                let tripped = b.trips() - trips_before;
                prop_assert!(tripped <= 1);
                if tripped == 1 {
                    prop_assert_eq!(b.state(), BreakerState::Open);
                    opened_at = Some(now);
                }
                if before == BreakerState::Closed && b.state() == BreakerState::HalfOpen {
                    prop_assert!(false, "closed went half-open without opening");
                }
                if let State::HalfOpen { period, admitted, .. } = b.state {
                    prop_assert!(admitted <= probes);
                    let current = outstanding.iter().filter(|p| **p == Permit::Probe(period)).count();
                    prop_assert!(current <= probes as usize);
                }
            }
        }
    }
}
