//! Connection lifetime chaos.
//!
//! With a [`ConnectionLifetime`] set (at build time with
//! [`FakeClusterBuilder::connection_lifetime`](crate::FakeClusterBuilder::connection_lifetime),
//! or at run time with
//! [`FakeCluster::set_connection_lifetime`](crate::FakeCluster::set_connection_lifetime)),
//! every connection the brokers accept is closed by the broker after a
//! lifetime drawn from `[min, max]`. The draw is a pure function of the seed
//! and the connection's number (connections are numbered from 0 in the order
//! the cluster accepts them, over all brokers), so a seed replays the same
//! lifetimes.
//!
//! Each connection also draws how it ends, about half each way:
//!
//! - **At the deadline**, whatever is in progress: waiting for a request,
//!   reading one (it is never applied), handling one that waits (a long-poll
//!   Fetch, an injected delay), or writing a response (the client gets a
//!   truncated frame).
//! - **After the next Produce**: past its deadline the connection keeps
//!   serving until a Produce request arrives, applies it, and closes without
//!   writing the response. The write happened, the client cannot know: its
//!   retry must be recognised as a duplicate. If no Produce arrives within
//!   another `max`, the connection closes anyway.
//!
//! The lifetime counts from when the connection was accepted, or from when
//! the setting last changed if that is later. Turning the setting off spares
//! every open connection; changing it re-plans them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// When the broker closes each accepted connection (see the [module
/// documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLifetime {
    min: Duration,
    max: Duration,
    seed: u64,
}

/// SplitMix64: a small, well-mixed, deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl ConnectionLifetime {
    /// Lifetimes uniformly drawn from `[min, max]` (the bounds are swapped if
    /// `min > max`), deterministic per `seed` and connection number.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        Self { min, max, seed }
    }

    /// The shortest lifetime.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest lifetime (also the grace a connection ending after its
    /// next Produce waits for one).
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn draw(&self, connection: u64) -> u64 {
        mix(self.seed ^ mix(connection))
    }

    /// The lifetime of connection number `connection`.
    pub fn lifetime(&self, connection: u64) -> Duration {
        let span = u64::try_from((self.max - self.min).as_micros()).unwrap_or(u64::MAX);
        let offset = match span.checked_add(1) {
            Some(n) => self.draw(connection) % n,
            None => self.draw(connection),
        };
        self.min + Duration::from_micros(offset)
    }

    /// Whether connection number `connection` ends after its next Produce
    /// request past the deadline (applied, response never written) rather
    /// than exactly at the deadline.
    pub fn ends_after_produce(&self, connection: u64) -> bool {
        mix(self.draw(connection)) & 1 == 1
    }
}

/// The current setting with the instant it took effect.
pub(crate) type Setting = Option<(ConnectionLifetime, Instant)>;

/// How one connection must end, as planned from the current setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// When the lifetime ends.
    pub deadline: Instant,
    /// Whether it then waits for a Produce to apply and leave unanswered.
    pub after_produce: bool,
    /// When the connection is closed whatever happens.
    pub hard_stop: Instant,
}

/// Plans the end of connection `number`, accepted at `accepted`.
pub(crate) fn plan(setting: &Setting, number: u64, accepted: Instant) -> Option<Plan> {
    let (lifetime, since) = setting.as_ref()?;
    let deadline = accepted.max(*since) + lifetime.lifetime(number);
    let after_produce = lifetime.ends_after_produce(number);
    let hard_stop = if after_produce {
        deadline + lifetime.max()
    } else {
        deadline
    };
    Some(Plan {
        deadline,
        after_produce,
        hard_stop,
    })
}

/// The chaos setting shared by every broker, and what it did.
#[derive(Debug)]
pub(crate) struct Chaos {
    setting: watch::Sender<Setting>,
    accepted: AtomicU64,
    killed: AtomicU64,
    killed_after_produce: AtomicU64,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            setting: watch::Sender::new(None),
            accepted: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            killed_after_produce: AtomicU64::new(0),
        }
    }
}

impl Chaos {
    /// Replaces the setting; it takes effect now for every connection.
    pub fn set(&self, lifetime: Option<ConnectionLifetime>) {
        let now = Instant::now();
        self.setting.send_replace(lifetime.map(|l| (l, now)));
    }

    /// The current setting.
    pub fn lifetime(&self) -> Option<ConnectionLifetime> {
        self.setting.borrow().map(|(l, _)| l)
    }

    /// Watches the setting.
    pub fn subscribe(&self) -> watch::Receiver<Setting> {
        self.setting.subscribe()
    }

    /// Numbers a newly accepted connection.
    pub fn accept(&self) -> u64 {
        self.accepted.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection closed by its lifetime.
    pub fn record_kill(&self, after_produce: bool) {
        self.killed.fetch_add(1, Ordering::Relaxed);
        if after_produce {
            self.killed_after_produce.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed by their lifetime so far.
    pub fn killed(&self) -> u64 {
        self.killed.load(Ordering::Relaxed)
    }

    /// Of those, the ones closed right after handling a Produce.
    pub fn killed_after_produce(&self) -> u64 {
        self.killed_after_produce.load(Ordering::Relaxed)
    }
}

/// Resolves when the connection must close at once: at the plan's hard stop,
/// re-planned whenever the setting changes; never while the setting is off.
pub(crate) async fn hard_stop(
    setting: &mut watch::Receiver<Setting>,
    number: u64,
    accepted: Instant,
) {
    loop {
        let stop = plan(&setting.borrow_and_update(), number, accepted).map(|p| p.hard_stop);
        match stop {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                changed = setting.changed() => if changed.is_err() {
                    std::future::pending::<()>().await;
                },
            },
            None => {
                if setting.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lifetimes_are_deterministic_and_in_range() {
        let a = ConnectionLifetime::new(500 * MS, 1500 * MS, 7);
        let b = ConnectionLifetime::new(500 * MS, 1500 * MS, 7);
        let c = ConnectionLifetime::new(500 * MS, 1500 * MS, 8);
        let draws: Vec<Duration> = (0..1000).map(|n| a.lifetime(n)).collect();
        assert!(draws.iter().all(|d| (500 * MS..=1500 * MS).contains(d)));
        assert_eq!(draws, (0..1000).map(|n| b.lifetime(n)).collect::<Vec<_>>());
        assert_ne!(draws, (0..1000).map(|n| c.lifetime(n)).collect::<Vec<_>>());
        // Spread over the range, not clustered.
        let low = draws.iter().filter(|d| **d < 1000 * MS).count();
        assert!((400..600).contains(&low), "{low} of 1000 below the middle");
        let after = (0..1000).filter(|n| a.ends_after_produce(*n)).count();
        assert!(
            (400..600).contains(&after),
            "{after} of 1000 end after a Produce"
        );
    }

    #[test]
    fn bounds_are_normalised() {
        let l = ConnectionLifetime::new(900 * MS, 100 * MS, 1);
        assert_eq!((l.min(), l.max(), l.seed()), (100 * MS, 900 * MS, 1));
        let fixed = ConnectionLifetime::new(250 * MS, 250 * MS, 1);
        assert!((0..100).all(|n| fixed.lifetime(n) == 250 * MS));
    }

    #[test]
    fn plans_count_from_the_later_of_accept_and_setting() {
        let l = ConnectionLifetime::new(100 * MS, 100 * MS, 3);
        let t0 = Instant::now();
        let accepted = t0 + 50 * MS;
        let p = plan(&Some((l, t0)), 4, accepted).expect("a plan");
        assert_eq!(p.deadline, accepted + 100 * MS);
        let p = plan(&Some((l, t0 + 80 * MS)), 4, accepted).expect("a plan");
        assert_eq!(p.deadline, t0 + 180 * MS);
        let expected_stop = if p.after_produce {
            p.deadline + 100 * MS
        } else {
            p.deadline
        };
        assert_eq!(p.hard_stop, expected_stop);
        assert_eq!(plan(&None, 4, accepted), None);
    }
}
