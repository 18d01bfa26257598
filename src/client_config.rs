//! Typed client configuration, validated when built.
//!
//! Defaults follow the Java client unless a setter says why not. Every
//! duration is a [`Duration`]; every cross-field rule lives in
//! [`ClientConfig::validate`], which names the offending field.

use std::time::Duration;

use crate::error::Error;
use crate::protocol::DEFAULT_MAX_FRAME_SIZE;
use crate::security::{SaslConfig, SecurityProtocol, TlsConfig};

/// Connection settings shared by every client (admin, producer).
///
/// ```
/// use std::time::Duration;
/// use smartkafka::ClientConfig;
/// let config = ClientConfig::new("localhost:9092")
///     .client_id("billing")
///     .request_timeout(Duration::from_secs(10));
/// config.validate()?;
/// assert!(ClientConfig::new("").validate().is_err()); // no bootstrap server
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` addresses used to discover the cluster.
    pub bootstrap_servers: Vec<String>,
    /// Sent with every request; shows up in broker logs and quotas.
    pub client_id: String,
    /// Time allowed to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for a response; a request that exceeds it closes its
    /// connection.
    pub request_timeout: Duration,
    /// The largest response frame accepted, in bytes.
    pub max_frame_size: usize,
    /// The wait before connecting again to a broker whose last connection
    /// attempt failed; it doubles with each failure in a row, up to
    /// `reconnect_backoff_max`, with ±20% jitter.
    pub reconnect_backoff: Duration,
    /// The longest wait between connection attempts to one broker.
    pub reconnect_backoff_max: Duration,
    /// How connections are made: plain, TLS, SASL, or SASL over TLS.
    /// [`tls`](Self::tls) and [`sasl`](Self::sasl) set it.
    pub security_protocol: SecurityProtocol,
    /// TLS settings, used when `security_protocol` is SSL or SASL_SSL
    /// (defaults apply when none are given).
    pub tls_config: Option<TlsConfig>,
    /// SASL mechanism and credentials, required when `security_protocol`
    /// is SASL_PLAINTEXT or SASL_SSL.
    pub sasl_config: Option<SaslConfig>,
}

impl ClientConfig {
    /// Settings for a cluster reachable at `bootstrap_servers`, a
    /// comma-separated list of `host:port` or `[ipv6]:port`. A scheme
    /// (`http://`), a missing or invalid port and an empty entry are
    /// refused by [`validate`](Self::validate), naming the entry.
    pub fn new(bootstrap_servers: &str) -> ClientConfig {
        ClientConfig {
            // Entries are kept as given (trimmed), so that validation can
            // name a malformed or empty one; only a blank list is no list.
            bootstrap_servers: if bootstrap_servers.trim().is_empty() {
                Vec::new()
            } else {
                bootstrap_servers
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            },
            client_id: "smartkafka".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            security_protocol: SecurityProtocol::Plaintext,
            tls_config: None,
            sasl_config: None,
        }
    }

    /// The client id (default `"smartkafka"`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// The connect timeout (default 10 s, like the Java client's
    /// `socket.connection.setup.timeout.ms`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The request timeout (default 30 s, the Java client's
    /// `request.timeout.ms`).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The wait before reconnecting to a broker after a failed connection
    /// attempt (default 50 ms, the Java client's `reconnect.backoff.ms`);
    /// it doubles with each failure in a row up to
    /// [`reconnect_backoff_max`](Self::reconnect_backoff_max), with ±20%
    /// jitter so that many clients do not reconnect in step.
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// The longest wait between connection attempts to one broker (default
    /// 1 s, the Java client's `reconnect.backoff.max.ms`).
    pub fn reconnect_backoff_max(mut self, backoff: Duration) -> Self {
        self.reconnect_backoff_max = backoff;
        self
    }

    /// Connects over TLS with `tls` (security protocol SSL, or SASL_SSL
    /// with [`sasl`](Self::sasl)).
    ///
    /// ```
    /// use smartkafka::ClientConfig;
    /// use smartkafka::security::{SecurityProtocol, TlsConfig};
    /// let config = ClientConfig::new("kafka.example.com:9093").tls(TlsConfig::new());
    /// assert_eq!(config.security_protocol, SecurityProtocol::Ssl);
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.security_protocol = self.security_protocol.with_tls();
        self.tls_config = Some(tls);
        self
    }

    /// Authenticates every connection with `sasl` (security protocol
    /// SASL_PLAINTEXT, or SASL_SSL with [`tls`](Self::tls)).
    pub fn sasl(mut self, sasl: SaslConfig) -> Self {
        self.security_protocol = self.security_protocol.with_sasl();
        self.sasl_config = Some(sasl);
        self
    }

    /// Sets the security protocol outright (Java's `security.protocol`):
    /// SSL and SASL_SSL use the TLS settings (defaults if none), SASL_*
    /// need [`sasl`](Self::sasl) settings.
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.security_protocol = protocol;
        self
    }

    /// The maximum response frame size in bytes (default 100 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        check_duration("connect_timeout", self.connect_timeout)?;
        check_duration("request_timeout", self.request_timeout)?;
        check_duration("reconnect_backoff", self.reconnect_backoff)?;
        check_duration("reconnect_backoff_max", self.reconnect_backoff_max)?;
        self.validate_security()?;
        if self.reconnect_backoff > self.reconnect_backoff_max {
            return Err(Error::config(
                "reconnect_backoff",
                format!(
                    "{:?} is longer than reconnect_backoff_max ({:?})",
                    self.reconnect_backoff, self.reconnect_backoff_max
                ),
            ));
        }
        if self.bootstrap_servers.is_empty() {
            return Err(Error::config(
                "bootstrap_servers",
                "at least one host:port is required",
            ));
        }
        for server in &self.bootstrap_servers {
            crate::address::check(server).map_err(|e| Error::config("bootstrap_servers", e))?;
        }
        if self.client_id.len() > i16::MAX as usize {
            return Err(Error::config("client_id", "longer than 32767 bytes"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config(
                "request_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_frame_size < 1024 || self.max_frame_size > i32::MAX as usize {
            return Err(Error::config(
                "max_frame_size",
                "must be between 1 KiB and 2 GiB - 1",
            ));
        }
        Ok(())
    }
}

/// The longest duration any setting takes: `i32::MAX` milliseconds (about
/// 24.8 days), the range of the Java client's millisecond settings. Bounded
/// settings keep every deadline the client computes from them far from
/// overflow.
impl ClientConfig {
    fn validate_security(&self) -> Result<(), Error> {
        let protocol = self.security_protocol;
        match &self.sasl_config {
            Some(sasl) if protocol.uses_sasl() => sasl.validate()?,
            Some(_) => {
                return Err(Error::config(
                    "security_protocol",
                    format!("{protocol:?} does not use SASL, yet SASL settings are given"),
                ));
            }
            None if protocol.uses_sasl() => {
                return Err(Error::config(
                    "sasl",
                    format!("{protocol:?} needs a SASL mechanism and credentials"),
                ));
            }
            None => {}
        }
        if self.tls_config.is_some() && !protocol.uses_tls() {
            return Err(Error::config(
                "security_protocol",
                format!("{protocol:?} does not use TLS, yet TLS settings are given"),
            ));
        }
        Ok(())
    }
}

pub(crate) const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// Rejects a duration setting above [`MAX_DURATION`], naming the field.
pub(crate) fn check_duration(field: &'static str, value: Duration) -> Result<(), Error> {
    if value > MAX_DURATION {
        return Err(Error::config(
            field,
            format!("{value:?} is above the longest allowed, {MAX_DURATION:?} (i32::MAX ms)"),
        ));
    }
    Ok(())
}

/// Builder methods that set one configuration field each, forwarding to
/// the configuration type's method of the same name (`self.config =
/// self.config.name(value)`): the producer's and consumer's builders.
#[cfg(feature = "tokio-runtime")]
macro_rules! forward_to_config {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
            self.config = self.config.$name(value);
            self
        })*
    };
}
#[cfg(feature = "tokio-runtime")]
pub(crate) use forward_to_config;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(ClientConfig, &str); 6] = [
            (ClientConfig::new(" , "), "bootstrap_servers"),
            (ClientConfig::new("localhost"), "bootstrap_servers"),
            (
                ClientConfig::new("a:1").connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                ClientConfig::new("a:1").request_timeout(Duration::ZERO),
                "request_timeout",
            ),
            (
                ClientConfig::new("a:1").max_frame_size(10),
                "max_frame_size",
            ),
            (
                ClientConfig::new("a:1").reconnect_backoff(Duration::from_secs(2)),
                "reconnect_backoff",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Config { field }, "{err}");
        }
        ClientConfig::new("a:1, [::1]:9092").validate().unwrap();
        // Malformed entries fail validation with the field and the entry.
        for bad in [
            "http://localhost:9092",
            "localhost",
            "a:1,,b:2",
            "a:1,",
            "::1:9092",
        ] {
            let err = ClientConfig::new(bad).validate().unwrap_err();
            assert_eq!(
                err.kind(),
                &ErrorKind::Config {
                    field: "bootstrap_servers"
                },
                "{bad}: {err}"
            );
        }
        let err = ClientConfig::new("a:1,http://b:2").validate().unwrap_err();
        assert!(err.to_string().contains("`http://b:2`"), "{err}");
    }
}
