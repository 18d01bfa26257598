//! KIP-368 re-authentication: a broker that limits SASL sessions reports
//! the lifetime in SaslAuthenticate (`session_lifetime_ms`, v1+) and closes
//! a connection that sends anything but a new SaslHandshake once the
//! session has ended. A connection given a lifetime starts a task here that
//! re-authenticates on the same connection before that happens.
//!
//! When: at a random point between 85% and 95% of the lifetime, counted
//! from when the authentication began (before the broker started the
//! session, so never late on its clock), as the Java client does: the
//! margin covers latency, the spread keeps many connections from
//! re-authenticating in step.
//!
//! How, without failing a request: the connection stops writing new
//! requests (they are queued, in order, and their callers keep waiting),
//! the responses of those already written are read, then SaslHandshake and
//! SaslAuthenticate run as ordinary requests with the same mechanism and
//! credentials (a fresh token for OAUTHBEARER), and the queued requests are
//! written. A session given a lifetime again is renewed the same way.
//!
//! A refused re-authentication closes the connection with an
//! [`ErrorKind::Authentication`] error (fatal), which the queued requests
//! get too; the broker's message is kept, credentials never appear.

use std::time::{Duration, Instant};

use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::net::connection::BrokerConnection;
use crate::net::jitter::Jitter;
use crate::security::SaslConfig;

/// Share of the lifetime at which the earliest re-authentication starts.
const EARLIEST: f64 = 0.85;
/// Share of the lifetime over which the start is spread after that.
const SPREAD: f64 = 0.10;

/// How long after authenticating to re-authenticate a session of
/// `lifetime`, with `jitter` in `0.0..1.0` spreading the point between 85%
/// and 95% of it; `None` for a session without lifetime (zero).
pub(crate) fn reauthentication_delay(lifetime: Duration, jitter: f64) -> Option<Duration> {
    if lifetime.is_zero() {
        return None;
    }
    Some(lifetime.mul_f64(EARLIEST + SPREAD * jitter.clamp(0.0, 1.0)))
}

/// Starts re-authenticating `conn` (to `addr`), authenticated with `sasl`
/// in an exchange that began at `began` and was given `lifetime`. The task
/// ends with the connection.
pub(crate) fn start(
    conn: &BrokerConnection,
    sasl: SaslConfig,
    addr: &str,
    began: Instant,
    lifetime: Duration,
) {
    let task = tokio::spawn(run(
        conn.reauthenticator(),
        sasl,
        addr.to_string(),
        began,
        lifetime,
    ));
    conn.adopt_task(task);
}

async fn run(
    conn: BrokerConnection,
    sasl: SaslConfig,
    addr: String,
    mut began: Instant,
    mut lifetime: Duration,
) {
    let jitter = Jitter::from_os();
    while let Some(delay) = reauthentication_delay(lifetime, jitter.next_fraction()) {
        tokio::time::sleep_until((began + delay).into()).await;
        conn.hold_requests().await;
        began = clock::now();
        let outcome = match super::sasl::authenticate(&conn, &sasl, &addr).await {
            Ok(next) => {
                lifetime = next.unwrap_or_default();
                Ok(())
            }
            Err(error) => Err(refused(error, &addr)),
        };
        if !conn.finish_reauthentication(outcome) {
            return;
        }
        tracing::debug!(%addr, ?lifetime, "re-authenticated");
    }
}

/// The error a failed re-authentication closes the connection with: an
/// authentication failure says that it was a re-authentication; anything
/// else (the connection was lost meanwhile) stays as it is.
fn refused(error: Error, addr: &str) -> Error {
    if matches!(error.kind(), ErrorKind::Authentication) {
        Error::new(
            ErrorKind::Authentication,
            format!("re-authentication with {addr} refused: {error}"),
        )
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn re_authentication_falls_between_85_and_95_percent_of_the_lifetime() {
        let lifetime = 100 * SECOND;
        assert_eq!(reauthentication_delay(lifetime, 0.0), Some(85 * SECOND));
        assert_eq!(reauthentication_delay(lifetime, 0.5), Some(90 * SECOND));
        let latest = reauthentication_delay(lifetime, 0.999_999).unwrap();
        assert!(latest < 95 * SECOND && latest > 94 * SECOND, "{latest:?}");
        // Out-of-range jitter is clamped into the window.
        assert_eq!(reauthentication_delay(lifetime, -1.0), Some(85 * SECOND));
        assert_eq!(reauthentication_delay(lifetime, 7.0), Some(95 * SECOND));

        let jitter = Jitter::from_os();
        let delays: Vec<Duration> = (0..1000)
            .map(|_| reauthentication_delay(lifetime, jitter.next_fraction()).unwrap())
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| (85 * SECOND..95 * SECOND).contains(d))
        );
        // Spread over the window, not bunched at one point.
        assert!(delays.iter().any(|d| *d < 87 * SECOND));
        assert!(delays.iter().any(|d| *d > 93 * SECOND));
    }

    #[test]
    fn a_session_without_lifetime_is_never_re_authenticated() {
        assert_eq!(reauthentication_delay(Duration::ZERO, 0.0), None);
        assert_eq!(reauthentication_delay(Duration::ZERO, 0.7), None);
        assert_eq!(
            reauthentication_delay(Duration::from_millis(1), 0.0),
            Some(Duration::from_micros(850))
        );
    }

    use crate::client_config::ClientConfig;
    use crate::net::open::Transport;
    use kafka_protocol::messages::MetadataRequest;
    use protocol_tests::FakeCluster;

    const PASSWORD: &str = "alice-secret";
    const SESSION: Duration = Duration::from_millis(1000);

    /// A connection to a one-broker cluster whose SASL sessions last
    /// [`SESSION`], authenticated as alice.
    async fn connect(mechanism: &str) -> (FakeCluster, BrokerConnection) {
        let cluster = FakeCluster::builder()
            .topic("events", 1)
            .sasl(&[mechanism])
            .sasl_user("alice", PASSWORD)
            .sasl_session_lifetime(SESSION)
            .build()
            .await;
        let sasl = match mechanism {
            "PLAIN" => SaslConfig::plain("alice", PASSWORD),
            _ => SaslConfig::scram_sha256("alice", PASSWORD),
        };
        let config = ClientConfig::new(&cluster.bootstrap_servers()).sasl(sasl);
        let transport = Transport::from_config(&config).unwrap();
        let conn = crate::net::open::connect(&cluster.bootstrap_servers(), &config, &transport)
            .await
            .expect("authenticated");
        (cluster, conn)
    }

    /// Pipelined requests begun every few milliseconds over three session
    /// lifetimes, some of them while the connection re-authenticates: all
    /// are answered, on the one connection, which authenticated once per
    /// session.
    #[tokio::test]
    async fn requests_begun_during_re_authentication_are_held_then_answered() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
            let (cluster, conn) = connect(mechanism).await;
            let started = tokio::time::Instant::now();
            let mut answered = 0;
            while started.elapsed() < 3 * SESSION {
                let pending: Vec<_> = (0..4)
                    .map(|_| conn.begin(&MetadataRequest::default()).expect("begun"))
                    .collect();
                for response in pending {
                    response.wait().await.expect("answered");
                    answered += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert!(answered > 100, "{mechanism}: {answered} answered");
            assert!(!conn.is_closed(), "{mechanism}");
            assert_eq!(cluster.connections_accepted(), 1, "{mechanism}");
            let sessions = cluster.sasl_authentications();
            assert!((3..=5).contains(&sessions), "{mechanism}: {sessions}");
        }
    }

    /// The broker's password is rotated, the client's is not: the next
    /// re-authentication is refused, and the connection closes with a
    /// fatal authentication error, never with the password in it. The
    /// requests begun while it ran were held, and get that error too.
    #[tokio::test]
    async fn a_refused_re_authentication_closes_with_an_authentication_error() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
            let (cluster, conn) = connect(mechanism).await;
            conn.send(&MetadataRequest::default())
                .await
                .expect("answered before the rotation");
            cluster.set_sasl_password("alice", "rotated");
            let started = tokio::time::Instant::now();
            // Requests begun one after another, answers awaited apart:
            // every millisecond, then, from 70% of the lifetime on (the
            // renewal comes at 85-95%), each time the other tasks have had
            // a turn, so that some are begun while it runs.
            let mut waiting = Vec::new();
            let refused = loop {
                match conn.begin(&MetadataRequest::default()) {
                    Ok(pending) => waiting.push(tokio::spawn(pending.wait())),
                    Err(error) => break error,
                }
                assert!(started.elapsed() < 2 * SESSION, "{mechanism}: still open");
                if started.elapsed() < SESSION.mul_f64(0.7) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            };
            assert!(conn.is_closed(), "{mechanism}");
            let mut answered = 0;
            let mut errors = vec![refused];
            for task in waiting {
                match task.await.unwrap() {
                    Ok(_) => answered += 1,
                    Err(error) => errors.push(error),
                }
            }
            assert!(answered > 0, "{mechanism}: the session held until then");
            assert!(errors.len() > 1, "{mechanism}: no request was held");
            for error in &errors {
                assert_eq!(*error.kind(), ErrorKind::Authentication, "{error}");
                assert!(error.is_fatal(), "{error}");
                let message = error.to_string();
                assert!(message.contains("re-authentication"), "{message}");
                assert!(
                    message.contains("Invalid username or password"),
                    "{message}"
                );
                assert!(!message.contains(PASSWORD), "{message}");
            }
            assert_eq!(cluster.sasl_authentications(), 1, "{mechanism}");
            assert_eq!(cluster.connections_accepted(), 1, "{mechanism}");
        }
    }
}
