//! The broker connections of one client instance: the one connection layer
//! that the producer's driver, the admin client, the partition reader and
//! the health collector all go through.
//!
//! A [`BrokerPool`] holds at most one open [`BrokerConnection`] per broker
//! (opened on first use, replaced when it closes) plus one to a bootstrap
//! server, and an address book: the brokers the last metadata listed and
//! those learnt from other answers (a group coordinator's address). Every
//! connection it opens runs the same dial, ApiVersions negotiation and
//! connect logging, then the TLS handshake and SASL authentication the
//! client's `security_protocol` asks for.
//!
//! Policies it owns:
//! - **Reconnect backoff.** After a failed connection attempt to a broker,
//!   the next one waits `reconnect_backoff`, doubling with each failure in
//!   a row up to `reconnect_backoff_max`, with ±20% jitter (the Java
//!   client's `reconnect.backoff.ms` rule). A caller that asks during the
//!   wait gets the last attempt's error at once.
//! - **Giving up at start-up.** The bootstrap round feeds the
//!   [`StartupWatch`]; once it says the cluster is unreachable, or at once
//!   when a server refused our certificate check or credentials (a fatal
//!   error), [`BrokerPool::unreachable`] carries the error for the producer.

use crate::net::jitter::Jitter;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client_config::ClientConfig;
use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::net::bootstrap::{self, StartupWatch};
use crate::net::connection::BrokerConnection;
use crate::net::open::Transport;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<BrokerConnection>>>>;

/// The connections and broker addresses of one client instance.
pub(crate) struct BrokerPool {
    config: ClientConfig,
    /// TLS and SASL, applied to every connection.
    transport: Transport,
    /// Brokers by id: those the metadata lists, then those learnt.
    listed: Mutex<BTreeMap<i32, String>>,
    learnt: Mutex<BTreeMap<i32, String>>,
    slots: Mutex<BTreeMap<i32, Slot>>,
    bootstrap: Slot,
    backoff: Mutex<BTreeMap<i32, ReconnectBackoff>>,
    jitter: Jitter,
    /// The fail-fast rule for an unreachable cluster at start-up.
    startup: Mutex<StartupWatch>,
    /// Set when that rule gave up: why the cluster cannot be reached.
    unreachable: Mutex<Option<Error>>,
}

impl std::fmt::Debug for BrokerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerPool")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .field("brokers", &*lock(&self.listed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerPool {
    /// A pool for `config` (already validated). `startup_grace` is how far
    /// apart two failed bootstrap rounds must be for the cluster to count
    /// as unreachable (the producer's retry backoff).
    ///
    /// Fails when the TLS settings cannot be loaded (a CA file that is
    /// missing or holds no certificate, a bad client key).
    pub(crate) fn new(
        config: ClientConfig,
        startup_grace: Duration,
    ) -> Result<Arc<BrokerPool>, Error> {
        Ok(Arc::new(BrokerPool {
            transport: Transport::from_config(&config)?,
            config,
            listed: Mutex::new(BTreeMap::new()),
            learnt: Mutex::new(BTreeMap::new()),
            slots: Mutex::new(BTreeMap::new()),
            bootstrap: Slot::default(),
            backoff: Mutex::new(BTreeMap::new()),
            jitter: Jitter::from_os(),
            startup: Mutex::new(StartupWatch::new(startup_grace)),
            unreachable: Mutex::new(None),
        }))
    }

    /// The settings every connection of the pool uses.
    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Replaces the brokers the metadata lists.
    pub(crate) fn set_brokers(&self, brokers: impl IntoIterator<Item = (i32, String)>) {
        *lock(&self.listed) = brokers.into_iter().collect();
    }

    /// Records the address of a broker learnt from an answer other than
    /// Metadata (FindCoordinator), for when the metadata does not list it.
    pub(crate) fn learn(&self, id: i32, address: String) {
        lock(&self.learnt).insert(id, address);
    }

    /// The address of broker `id`: as the metadata lists it, else as learnt.
    pub(crate) fn address(&self, id: i32) -> Option<String> {
        let listed = lock(&self.listed).get(&id).cloned();
        listed.or_else(|| lock(&self.learnt).get(&id).cloned())
    }

    /// The ids of the brokers the metadata lists, in id order.
    pub(crate) fn listed_ids(&self) -> Vec<i32> {
        lock(&self.listed).keys().copied().collect()
    }

    fn slot(&self, node: i32) -> Slot {
        Arc::clone(lock(&self.slots).entry(node).or_default())
    }

    /// The open connection to `node`, if there is one and nobody is opening
    /// it right now; never waits.
    pub(crate) fn cached(&self, node: i32) -> Option<Arc<BrokerConnection>> {
        let slot = self.slot(node);
        let guard = slot.try_lock().ok()?;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The connection to broker `id` at its known address, opened if needed.
    pub(crate) async fn connection(&self, id: i32) -> Result<Arc<BrokerConnection>, Error> {
        let Some(address) = self.address(id) else {
            return Err(Error::new(
                ErrorKind::NoBrokerAvailable,
                format!("broker {id} is not among the cluster's brokers"),
            ));
        };
        self.connect_at(id, &address).await
    }

    /// The connection to broker `id` at `address` (the caller's metadata
    /// names it), opened if needed, after the reconnect backoff of a
    /// failure just before.
    pub(crate) async fn connect_at(
        &self,
        id: i32,
        address: &str,
    ) -> Result<Arc<BrokerConnection>, Error> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        if let Some(error) = lock(&self.backoff)
            .get(&id)
            .and_then(|b| b.holding(clock::now()))
        {
            return Err(error);
        }
        match crate::net::open::connect(address, &self.config, &self.transport).await {
            Ok(conn) => {
                lock(&self.backoff).remove(&id);
                lock(&self.startup).reached();
                let conn = Arc::new(conn);
                *guard = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(error) => {
                let now = clock::now();
                let jitter = self.jitter.next_fraction();
                lock(&self.backoff).entry(id).or_default().failed(
                    now,
                    &self.config,
                    jitter,
                    error.clone_shallow(),
                );
                Err(error)
            }
        }
    }

    /// A connection to any broker the metadata lists (in id order, the
    /// first that can be reached), else to a bootstrap server.
    pub(crate) async fn any(&self) -> Result<Arc<BrokerConnection>, Error> {
        for id in self.listed_ids() {
            if let Ok(conn) = self.connection(id).await {
                return Ok(conn);
            }
        }
        self.bootstrap().await
    }

    /// A connection to `node` for a request any broker can answer, or to a
    /// bootstrap server when there is none or it cannot be reached.
    pub(crate) async fn node_or_bootstrap(
        &self,
        node: Option<&(i32, String)>,
    ) -> Result<Arc<BrokerConnection>, Error> {
        if let Some((id, addr)) = node
            && let Ok(conn) = self.connect_at(*id, addr).await
        {
            return Ok(conn);
        }
        self.bootstrap().await
    }

    /// The connection to the first bootstrap server that answers. When
    /// none does, the error lists each server's own failure, and the round
    /// counts toward the start-up rule.
    pub(crate) async fn bootstrap(&self) -> Result<Arc<BrokerConnection>, Error> {
        let mut guard = self.bootstrap.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let started = clock::now();
        match bootstrap::connect_first(&self.config, &self.transport).await {
            Ok(conn) => {
                lock(&self.startup).reached();
                let conn = Arc::new(conn);
                *guard = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(failure) => {
                let mut startup = lock(&self.startup);
                if failure.error.is_fatal() {
                    // Refused certificates or credentials: no retry helps.
                    *lock(&self.unreachable) = Some(failure.error.clone_shallow());
                } else if startup.round_failed(started, failure.unreachable) {
                    let error = Error::new(
                        ErrorKind::NoBrokerAvailable,
                        format!(
                            "{} (every bootstrap server failed twice, {:?} apart)",
                            failure.error,
                            startup.grace()
                        ),
                    );
                    *lock(&self.unreachable) = Some(error);
                }
                Err(failure.error)
            }
        }
    }

    /// Why the cluster is unreachable, once the start-up rule gave up.
    pub(crate) fn unreachable(&self) -> Option<Error> {
        lock(&self.unreachable).as_ref().map(Error::clone_shallow)
    }
}

/// The reconnect backoff of one broker: failures in a row, the earliest
/// next attempt, and the last attempt's error.
#[derive(Debug, Default)]
struct ReconnectBackoff {
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<Error>,
}

impl ReconnectBackoff {
    /// A connection attempt failed at `now` with `error`; `jitter` is in
    /// `0.0..1.0`.
    fn failed(&mut self, now: Instant, config: &ClientConfig, jitter: f64, error: Error) {
        self.failures = self.failures.saturating_add(1);
        let delay = reconnect_delay(
            self.failures,
            config.reconnect_backoff,
            config.reconnect_backoff_max,
            jitter,
        );
        self.not_before = now.checked_add(delay);
        self.last_error = Some(error);
    }

    /// At `now`, inside the wait: the last attempt's error, which a caller
    /// gets at once instead of a new attempt (as the Java client's "node
    /// not ready"). Failing at once, rather than waiting out the backoff,
    /// keeps the requests queued behind a failed one failing with it, so a
    /// broker that comes back cannot take a later request before an
    /// earlier one that is being retried.
    fn holding(&self, now: Instant) -> Option<Error> {
        let at = self.not_before?;
        if now >= at {
            return None;
        }
        let last = self.last_error.as_ref()?;
        Some(Error::new(
            last.kind().clone(),
            format!("{last} (next connection attempt in {:?})", at - now),
        ))
    }
}

/// The wait after the `failures`-th failure in a row: `base` doubled per
/// failure after the first, capped at `max`, then scaled by 0.8..1.2 from
/// `jitter` (in `0.0..1.0`) and capped at `max` again.
fn reconnect_delay(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let raw = base.saturating_mul(1u32 << doublings).min(max);
    raw.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reconnect_delay_doubles_per_failure_up_to_the_cap() {
        let base = 50 * MS;
        let max = 1000 * MS;
        // jitter 0.5 is the middle of 0.8..1.2: no scaling.
        let delays: Vec<Duration> = (1..=7)
            .map(|n| reconnect_delay(n, base, max, 0.5))
            .collect();
        assert_eq!(
            delays,
            [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, max, max]
        );
        // The extremes of the jitter: ±20%, never past the cap.
        assert_eq!(reconnect_delay(1, base, max, 0.0), 40 * MS);
        assert_eq!(reconnect_delay(1, base, max, 1.0), 60 * MS);
        assert_eq!(reconnect_delay(5, base, max, 1.0), 960 * MS);
        assert_eq!(reconnect_delay(6, base, max, 1.0), max);
        // Absurd failure counts neither overflow nor exceed the cap.
        assert_eq!(reconnect_delay(u32::MAX, base, max, 0.9), max);
    }

    #[test]
    fn a_backoff_records_when_the_next_attempt_may_start() {
        let config = ClientConfig::new("a:1");
        let t0 = clock::now();
        let refused = || Error::new(ErrorKind::Io, "connecting to a:1: refused");
        let mut backoff = ReconnectBackoff::default();
        assert!(backoff.holding(t0).is_none());
        backoff.failed(t0, &config, 0.5, refused());
        assert_eq!(backoff.not_before, Some(t0 + 50 * MS));
        let held = backoff.holding(t0 + 10 * MS).expect("inside the wait");
        assert_eq!(held.kind(), &ErrorKind::Io);
        assert!(held.to_string().contains("refused"), "{held}");
        assert!(backoff.holding(t0 + 50 * MS).is_none());
        backoff.failed(t0, &config, 0.5, refused());
        assert_eq!(backoff.not_before, Some(t0 + 100 * MS));
    }

    #[test]
    fn jitter_fractions_stay_in_range_and_vary() {
        let jitter = Jitter::from_os();
        let draws: Vec<f64> = (0..1000).map(|_| jitter.next_fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[tokio::test]
    async fn a_refused_broker_is_dialled_again_only_after_its_backoff() {
        // A port nothing listens on: bind, note the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let config = ClientConfig::new(&address)
            .reconnect_backoff(300 * MS)
            .reconnect_backoff_max(300 * MS);
        let pool = BrokerPool::new(config, 100 * MS).unwrap();
        pool.set_brokers([(1, address.clone())]);
        let first = pool.connection(1).await.unwrap_err();
        assert_eq!(first.kind(), &ErrorKind::Io, "{first}");
        // Inside the backoff: the same failure at once, no new attempt.
        let held = pool.connection(1).await.unwrap_err();
        assert!(
            held.to_string().contains("next connection attempt in"),
            "{held}"
        );
        // After it, a new attempt (which fails afresh).
        tokio::time::sleep(400 * MS).await;
        let again = pool.connection(1).await.unwrap_err();
        assert!(
            !again.to_string().contains("next connection attempt"),
            "{again}"
        );
        assert_eq!(
            pool.connection(7).await.unwrap_err().kind(),
            &ErrorKind::NoBrokerAvailable
        );
    }
}
