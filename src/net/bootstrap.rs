//! Reaching the cluster through its bootstrap servers, and knowing when to
//! stop trying.
//!
//! [`connect_first`] tries every bootstrap server in order and returns the
//! first connection that completes its handshake; when none does, the
//! error carries each server's own failure (the OS error of a refused
//! connection, the resolver's of a name that does not resolve).
//!
//! [`StartupWatch`] is the producer's fail-fast rule: if, before any broker
//! was ever reached, a round over the bootstrap servers finds every one of
//! them unreachable outright (refused, or its name does not resolve), and a
//! round at least one retry backoff later finds the same, the cluster is
//! taken to be unreachable and `build()` fails with that error instead of
//! waiting out `max_block`. A server that does not answer within the
//! connect timeout is not "unreachable outright" (a slow network may still
//! answer), so such a round does not count; nor does anything once a broker
//! has been reached.

use std::time::{Duration, Instant};

use crate::client_config::ClientConfig;
use crate::error::{Error, ErrorKind};
use crate::net::connection::BrokerConnection;
use crate::net::open::Transport;

/// Why no bootstrap server could be used.
pub(crate) struct RoundFailure {
    /// [`ErrorKind::NoBrokerAvailable`], listing each server's failure.
    pub(crate) error: Error,
    /// Whether every server failed outright: refused or not resolved
    /// (not a timeout, not a failed handshake).
    pub(crate) unreachable: bool,
}

/// Connects to the first bootstrap server that answers, trying them in
/// order.
pub(crate) async fn connect_first(
    config: &ClientConfig,
    transport: &Transport,
) -> Result<BrokerConnection, RoundFailure> {
    let mut failures = Vec::with_capacity(config.bootstrap_servers.len());
    let mut unreachable = true;
    for addr in &config.bootstrap_servers {
        let failure = match crate::net::open::dial(addr, config).await {
            Ok(stream) => {
                match crate::net::open::establish(stream, addr, config, transport).await {
                    Ok(conn) => return Ok(conn),
                    // A certificate that does not verify, credentials the
                    // broker refuses: the same at every server, and final.
                    Err(e) if e.is_fatal() => {
                        return Err(RoundFailure {
                            error: e,
                            unreachable: false,
                        });
                    }
                    Err(e) => {
                        unreachable = false;
                        e
                    }
                }
            }
            Err(e) => {
                unreachable &= *e.kind() == ErrorKind::Io;
                e
            }
        };
        failures.push(failure.to_string());
    }
    Err(RoundFailure {
        error: Error::new(
            ErrorKind::NoBrokerAvailable,
            format!("no bootstrap server reachable: {}", failures.join("; ")),
        ),
        unreachable: unreachable && !failures.is_empty(),
    })
}

/// The fail-fast rule for start-up (see the module documentation).
#[derive(Debug)]
pub(crate) struct StartupWatch {
    /// How far apart the two failed rounds must start: the retry backoff.
    grace: Duration,
    /// When a round first found every server unreachable.
    first: Option<Instant>,
    /// A broker was reached once: the rule no longer applies.
    reached: bool,
}

impl StartupWatch {
    /// A watch whose second failed round must come at least `grace` after
    /// the first.
    pub(crate) fn new(grace: Duration) -> StartupWatch {
        StartupWatch {
            grace,
            first: None,
            reached: false,
        }
    }

    /// A broker was reached.
    pub(crate) fn reached(&mut self) {
        self.reached = true;
        self.first = None;
    }

    /// A round over the bootstrap servers that started at `started` failed;
    /// `unreachable` says whether every server failed outright. `true`
    /// when the rule says to give up.
    pub(crate) fn round_failed(&mut self, started: Instant, unreachable: bool) -> bool {
        if self.reached || !unreachable {
            return false;
        }
        match self.first {
            None => {
                self.first = Some(started);
                false
            }
            Some(first) => started.saturating_duration_since(first) >= self.grace,
        }
    }

    /// How far apart the two failed rounds had to be.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn two_unreachable_rounds_a_backoff_apart_give_up() {
        let t0 = crate::clock::now();
        let mut watch = StartupWatch::new(Duration::from_millis(100));
        assert!(!watch.round_failed(at(t0, 0), true));
        // Another request's round right after the first: not yet.
        assert!(!watch.round_failed(at(t0, 5), true));
        assert!(watch.round_failed(at(t0, 100), true));
    }

    #[test]
    fn timeouts_and_a_reached_broker_never_give_up() {
        let t0 = crate::clock::now();
        let mut watch = StartupWatch::new(Duration::from_millis(100));
        // Rounds with a server that did not answer in time do not count.
        assert!(!watch.round_failed(at(t0, 0), false));
        assert!(!watch.round_failed(at(t0, 200), false));
        assert!(!watch.round_failed(at(t0, 300), true));
        assert!(!watch.round_failed(at(t0, 350), false));
        assert!(watch.round_failed(at(t0, 400), true));

        let mut watch = StartupWatch::new(Duration::from_millis(100));
        assert!(!watch.round_failed(at(t0, 0), true));
        watch.reached();
        // A cluster that was up and went down is waited for (max_block).
        assert!(!watch.round_failed(at(t0, 1000), true));
        assert!(!watch.round_failed(at(t0, 2000), true));
    }
}
