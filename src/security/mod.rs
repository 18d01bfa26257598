//! How a client reaches a secured cluster: the [`SecurityProtocol`], the
//! [`TlsConfig`] (whom to trust, whether to show a client certificate) and
//! the [`SaslConfig`] (which mechanism, which credentials).
//!
//! These are settings only; the connection layer applies them to every
//! connection a client opens (producer, admin client, partition reader and
//! lag collector alike). Credentials never appear in `Debug` output, logs
//! or errors.
//!
//! ```
//! use smartkafka::ClientConfig;
//! use smartkafka::security::{SaslConfig, SecurityProtocol, TlsConfig};
//!
//! let config = ClientConfig::new("broker-1.example.com:9093")
//!     .tls(TlsConfig::new().ca_file("/etc/kafka/ca.pem"))
//!     .sasl(SaslConfig::scram_sha512("alice", "alice-secret"));
//! assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
//! assert!(!format!("{config:?}").contains("alice-secret"));
//! ```

use std::path::PathBuf;

use crate::error::Error;

#[cfg(feature = "tokio-runtime")]
pub(crate) mod scram;

/// Entry points for the fuzz targets and their corpus replay: not part of
/// the supported API and free to change.
#[cfg(feature = "tokio-runtime")]
#[doc(hidden)]
pub mod fuzzing {
    use super::SaslMechanism;
    use super::scram::ScramClient;
    use crate::error::Error;

    /// What a SCRAM client exchange made of two server messages.
    #[derive(Debug)]
    pub struct ScramOutcome {
        /// The client-final message, or why server-first was refused.
        pub client_final: Result<Vec<u8>, Error>,
        /// Whether server-final was accepted (only tried after a
        /// client-final was made).
        pub server_final: Option<Result<(), Error>>,
    }

    /// Runs the client side of SCRAM (user `user`, password `pencil`,
    /// client nonce `rOprNGfwEbeRWgbNEkqO`: RFC 7677's test vector) against
    /// the given server messages.
    pub fn scram_exchange(sha512: bool, server_first: &[u8], server_final: &[u8]) -> ScramOutcome {
        let mechanism = if sha512 {
            SaslMechanism::ScramSha512
        } else {
            SaslMechanism::ScramSha256
        };
        let mut client = match ScramClient::with_nonce(
            mechanism,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        ) {
            Ok(client) => client,
            Err(e) => {
                return ScramOutcome {
                    client_final: Err(e),
                    server_final: None,
                };
            }
        };
        let client_final = client.client_final(server_first);
        let server_final = client_final
            .is_ok()
            .then(|| client.verify_server_final(server_final));
        ScramOutcome {
            client_final,
            server_final,
        }
    }
}

/// How connections are made, as Kafka's `security.protocol` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (the default).
    #[default]
    Plaintext,
    /// TLS, authenticated by certificate if the broker asks for one.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// The protocol named `name` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`,
    /// `SASL_SSL`, any case).
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// With TLS added.
    pub(crate) fn with_tls(self) -> SecurityProtocol {
        match self {
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl => SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => {
                SecurityProtocol::SaslSsl
            }
        }
    }

    /// With SASL added.
    pub(crate) fn with_sasl(self) -> SecurityProtocol {
        match self {
            SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext => {
                SecurityProtocol::SaslPlaintext
            }
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => SecurityProtocol::SaslSsl,
        }
    }
}

/// Where the certificates a client trusts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrustSource {
    /// The operating system's CA bundle (`SSL_CERT_FILE`, or the usual
    /// bundle paths of Linux distributions).
    System,
    /// The Mozilla roots compiled into the binary (`webpki-roots`).
    WebPki,
    /// CA certificates in PEM.
    Pem(Vec<u8>),
    /// A PEM file of CA certificates, read when the client starts.
    File(PathBuf),
}

/// A client certificate and its key, for mutual TLS.
#[derive(Clone)]
pub(crate) enum ClientIdentity {
    /// Certificate chain and key in PEM.
    Pem { chain: Vec<u8>, key: Vec<u8> },
    /// PEM files holding the chain and the key.
    Files { chain: PathBuf, key: PathBuf },
}

/// TLS settings: whom to trust and whether to present a certificate.
///
/// By default the operating system's CA bundle is trusted and the broker's
/// certificate must name the host the client connected to (Java's
/// `ssl.endpoint.identification.algorithm=https`). TLS 1.2 and 1.3 are
/// offered, with SNI.
///
/// ```
/// use smartkafka::security::TlsConfig;
/// let tls = TlsConfig::new()
///     .ca_file("/etc/kafka/ca.pem")
///     .client_cert_files("/etc/kafka/client.pem", "/etc/kafka/client.key");
/// # let _ = tls;
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) roots: Vec<TrustSource>,
    pub(crate) identity: Option<ClientIdentity>,
    pub(crate) verify_hostname: bool,
    pub(crate) verify_certificates: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::new()
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<String> = self
            .roots
            .iter()
            .map(|r| match r {
                TrustSource::System => "system".to_string(),
                TrustSource::WebPki => "webpki".to_string(),
                TrustSource::Pem(bytes) => format!("pem ({} bytes)", bytes.len()),
                TrustSource::File(path) => format!("file {}", path.display()),
            })
            .collect();
        f.debug_struct("TlsConfig")
            .field("roots", &roots)
            .field("client_certificate", &self.identity.is_some())
            .field("verify_hostname", &self.verify_hostname)
            .field("verify_certificates", &self.verify_certificates)
            .finish()
    }
}

impl TlsConfig {
    /// Trusts the operating system's CA bundle, verifies host names.
    pub fn new() -> TlsConfig {
        TlsConfig {
            roots: Vec::new(),
            identity: None,
            verify_hostname: true,
            verify_certificates: true,
        }
    }

    /// Trusts the CA certificates in `pem` (librdkafka's `ssl.ca.pem`).
    /// Replaces the system bundle as the default; call
    /// [`system_roots`](Self::system_roots) too to keep it.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> TlsConfig {
        self.roots.push(TrustSource::Pem(pem.into()));
        self
    }

    /// Trusts the CA certificates of a PEM file, read when the client starts
    /// (librdkafka's `ssl.ca.location`, Java's PEM `ssl.truststore.location`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsConfig {
        self.roots.push(TrustSource::File(path.into()));
        self
    }

    /// Trusts the operating system's CA bundle (the default when no other
    /// root is given).
    pub fn system_roots(mut self) -> TlsConfig {
        self.roots.push(TrustSource::System);
        self
    }

    /// Trusts the Mozilla root certificates compiled into the binary, for
    /// systems without a CA bundle (a static binary in a scratch container).
    pub fn webpki_roots(mut self) -> TlsConfig {
        self.roots.push(TrustSource::WebPki);
        self
    }

    /// Presents a client certificate (mutual TLS): the chain and its key in
    /// PEM (PKCS#8, RSA or EC keys).
    pub fn client_cert_pem(
        mut self,
        chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> TlsConfig {
        self.identity = Some(ClientIdentity::Pem {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// Presents a client certificate read from PEM files when the client
    /// starts (librdkafka's `ssl.certificate.location` and
    /// `ssl.key.location`).
    pub fn client_cert_files(
        mut self,
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> TlsConfig {
        self.identity = Some(ClientIdentity::Files {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// Whether the broker's certificate must name the host connected to
    /// (default `true`; Java's `ssl.endpoint.identification.algorithm`
    /// set to empty turns it off). The chain is still verified.
    pub fn verify_hostname(mut self, verify: bool) -> TlsConfig {
        self.verify_hostname = verify;
        self
    }

    /// Accepts any certificate the broker shows, unverified: for test
    /// clusters only. Anyone on the path can then read and change the
    /// traffic. (librdkafka's `enable.ssl.certificate.verification=false`.)
    pub fn danger_accept_invalid_certificates(mut self) -> TlsConfig {
        self.verify_certificates = false;
        self
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): the password is sent as is, so use it over TLS.
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512` (RFC 5802).
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255): a bearer token from a
    /// [`TokenProvider`], fetched for each new connection.
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            "OAUTHBEARER" => Some(SaslMechanism::OAuthBearer),
            _ => None,
        }
    }
}

/// A bearer token for `OAUTHBEARER`.
#[derive(Clone)]
pub struct OAuthToken {
    /// The token as sent (a JWT, or whatever the broker's validator takes).
    pub value: String,
    /// SASL extensions sent with it (KIP-342), such as a logical cluster id.
    pub extensions: Vec<(String, String)>,
}

impl std::fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthToken")
            .field("value", &"<redacted>")
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// What [`TokenProvider::token`] returns.
pub type TokenFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<OAuthToken, Error>> + Send + 'a>>;

/// Supplies `OAUTHBEARER` tokens: asked once per connection as it
/// authenticates, so it may cache a token and refresh it before expiry
/// (asynchronously, from an identity provider).
pub trait TokenProvider: Send + Sync {
    /// The token to authenticate with now.
    fn token(&self) -> TokenFuture<'_>;
}

/// Kafka's unsecured JWS tokens (`alg: none`, the `sub` claim naming the
/// principal), as the Java client's `OAuthBearerUnsecuredLoginCallbackHandler`
/// makes them: for test clusters with the unsecured validator only.
#[cfg(feature = "tokio-runtime")]
#[derive(Debug, Clone)]
pub struct UnsecuredJwsProvider {
    principal: String,
    lifetime: std::time::Duration,
}

#[cfg(feature = "tokio-runtime")]
impl UnsecuredJwsProvider {
    /// Tokens for `principal`, valid for an hour from when each is made.
    pub fn new(principal: impl Into<String>) -> UnsecuredJwsProvider {
        UnsecuredJwsProvider {
            principal: principal.into(),
            lifetime: std::time::Duration::from_secs(3600),
        }
    }

    /// How long each token is valid (default one hour).
    pub fn lifetime(mut self, lifetime: std::time::Duration) -> UnsecuredJwsProvider {
        self.lifetime = lifetime;
        self
    }

    /// A token made now.
    pub fn make_token(&self) -> OAuthToken {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now_ms = crate::clock::unix_millis();
        let iat = now_ms / 1000;
        let exp = iat.saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX));
        let principal = self.principal.replace('\\', "\\\\").replace('"', "\\\"");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iat":{iat},"exp":{exp},"sub":"{principal}"}}"#
        ));
        OAuthToken {
            value: format!("{header}.{claims}."),
            extensions: Vec::new(),
        }
    }
}

#[cfg(feature = "tokio-runtime")]
impl TokenProvider for UnsecuredJwsProvider {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.make_token();
        Box::pin(async move { Ok(token) })
    }
}

/// SASL settings: the mechanism and the credentials.
///
/// ```
/// use smartkafka::security::{SaslConfig, SaslMechanism};
/// let sasl = SaslConfig::scram_sha256("alice", "s3cret");
/// assert_eq!(sasl.mechanism(), SaslMechanism::ScramSha256);
/// assert!(!format!("{sasl:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct SaslConfig {
    pub(crate) mechanism: SaslMechanism,
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) token_provider: Option<std::sync::Arc<dyn TokenProvider>>,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl SaslConfig {
    /// `mechanism` with a user name and password.
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> SaslConfig {
        SaslConfig {
            mechanism,
            username: username.into(),
            password: password.into(),
            token_provider: None,
        }
    }

    /// `PLAIN` with a user name and password.
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> SaslConfig {
        SaslConfig::new(SaslMechanism::Plain, username, password)
    }

    /// `SCRAM-SHA-256` with a user name and password.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<String>) -> SaslConfig {
        SaslConfig::new(SaslMechanism::ScramSha256, username, password)
    }

    /// `SCRAM-SHA-512` with a user name and password.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<String>) -> SaslConfig {
        SaslConfig::new(SaslMechanism::ScramSha512, username, password)
    }

    /// `OAUTHBEARER` with tokens from `provider`, asked for a token each
    /// time a connection authenticates (so a provider that refreshes keeps
    /// new connections valid).
    ///
    /// ```
    /// # #[cfg(feature = "tokio-runtime")] {
    /// use std::sync::Arc;
    /// use smartkafka::security::{SaslConfig, UnsecuredJwsProvider};
    /// // Kafka's unsecured tokens, for test clusters only.
    /// let sasl = SaslConfig::oauthbearer(Arc::new(UnsecuredJwsProvider::new("alice")));
    /// # let _ = sasl; }
    /// ```
    pub fn oauthbearer(provider: std::sync::Arc<dyn TokenProvider>) -> SaslConfig {
        SaslConfig {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: String::new(),
            token_provider: Some(provider),
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.mechanism == SaslMechanism::OAuthBearer {
            if self.token_provider.is_none() {
                return Err(Error::config(
                    "sasl",
                    "OAUTHBEARER needs a token provider (SaslConfig::oauthbearer)",
                ));
            }
            return Ok(());
        }
        if self.username.is_empty() {
            return Err(Error::config("sasl", "the user name is empty"));
        }
        if self.username.contains('\0') || self.password.contains('\0') {
            return Err(Error::config(
                "sasl",
                "the user name or password holds a NUL character",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_and_combine() {
        assert_eq!(
            SecurityProtocol::from_name("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::from_name("TLS"), None);
        assert_eq!(
            SecurityProtocol::Plaintext.with_tls().with_sasl(),
            SecurityProtocol::SaslSsl
        );
        assert_eq!(
            SecurityProtocol::Plaintext.with_sasl(),
            SecurityProtocol::SaslPlaintext
        );
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Ssl.uses_sasl());
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let sasl = SaslConfig::plain("bob", "hunter2");
        let shown = format!("{sasl:?}");
        assert!(
            shown.contains("bob") && !shown.contains("hunter2"),
            "{shown}"
        );
        let tls = TlsConfig::new().client_cert_pem("CERT", "PRIVATE KEY BYTES");
        assert!(!format!("{tls:?}").contains("PRIVATE KEY BYTES"));
    }

    #[cfg(feature = "tokio-runtime")]
    #[test]
    fn unsecured_tokens_are_unsigned_jws_naming_the_principal() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = UnsecuredJwsProvider::new("al\"ice").make_token();
        let parts: Vec<&str> = token.value.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "no signature");
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        assert_eq!(header, br#"{"alg":"none"}"#);
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert!(claims.contains(r#""sub":"al\"ice""#), "{claims}");
        assert!(!format!("{token:?}").contains(parts[1]));
    }

    #[test]
    fn oauthbearer_needs_a_token_provider() {
        let mut sasl = SaslConfig::plain("", "");
        sasl.mechanism = SaslMechanism::OAuthBearer;
        let err = sasl.validate().unwrap_err();
        assert!(err.to_string().contains("token provider"), "{err}");
    }

    #[test]
    fn empty_user_names_are_refused() {
        assert!(SaslConfig::plain("", "x").validate().is_err());
        assert!(SaslConfig::plain("a", "x\0y").validate().is_err());
        SaslConfig::scram_sha512("a", "").validate().unwrap();
    }
}
