//! TLS and SASL listeners for the fake brokers.
//!
//! TLS: certificates are generated when the cluster is built (a CA and a
//! server certificate for `localhost` and `127.0.0.1`, optionally expired
//! or issued for another host, and a client certificate for mutual TLS).
//!
//! SASL: as Kafka does since KIP-152, a connection may send only
//! ApiVersions, SaslHandshake and SaslAuthenticate until it has
//! authenticated; anything else closes it. PLAIN follows RFC 4616, SCRAM
//! (SHA-256, SHA-512) the server side of RFC 5802 with 4096 iterations and
//! a random salt per exchange. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED and the connection is closed after it.
//!
//! Framing: after SaslHandshake v1 the mechanism messages travel in
//! SaslAuthenticate requests (KIP-152); after SaslHandshake v0 they travel
//! as raw size-prefixed frames, as before KIP-152, and a failure just
//! closes the connection.
//!
//! Session lifetime (KIP-368): with a lifetime set, SaslAuthenticate v1+
//! reports it in `session_lifetime_ms`; once it has passed, any request but
//! a SaslHandshake that starts a re-authentication closes the connection.
//! A re-authentication must keep the mechanism and the principal, and
//! starts a new session; it checks the credentials as they are then, so a
//! password changed meanwhile (`FakeCluster::set_sasl_password`) refuses it
//! and the connection is closed, as a first authentication would be.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use tokio::time::{Duration, Instant};

use crate::handlers::{Outcome, encode_response};

/// How the brokers' TLS listener is set up.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    pub require_client_cert: bool,
    /// Names the server certificate is issued for (default: `localhost`
    /// and `127.0.0.1`).
    pub server_names: Option<Vec<String>>,
    pub expired: bool,
}

/// The generated certificates and the server configuration.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsMaterial {
    /// Generates a CA, a server and a client certificate per `options`.
    pub(crate) fn generate(options: &TlsOptions) -> TlsMaterial {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "protocol-tests fake CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let names = options
            .server_names
            .clone()
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()]);
        let mut server_params = CertificateParams::new(names).expect("server params");
        if options.expired {
            server_params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            server_params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let server_key = KeyPair::generate().expect("server key");
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");

        let mut client_params =
            CertificateParams::new(vec!["client".to_string()]).expect("client params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "client");
        let client_key = KeyPair::generate().expect("client key");
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if options.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).expect("CA into the root store");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let config = builder
            .with_single_cert(vec![server.der().clone()], key)
            .expect("server certificate and key");
        TlsMaterial {
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }
}

/// The users the brokers know, by name with their passwords; shared with
/// the [`FakeCluster`](crate::FakeCluster), which can change them at run
/// time.
pub(crate) type SaslUsers = Arc<Mutex<BTreeMap<String, String>>>;

/// The mechanisms the brokers enable and the users they know.
#[derive(Debug, Clone, Default)]
pub(crate) struct SaslSettings {
    pub mechanisms: Vec<String>,
    pub users: SaslUsers,
    /// How long an authentication holds (KIP-368); zero for ever.
    pub session_lifetime: Duration,
    /// Successful authentications on every connection.
    pub authentications: Arc<AtomicU64>,
}

/// One connection's SASL state.
pub(crate) struct SaslGate {
    settings: Arc<SaslSettings>,
    authenticated: bool,
    /// The user of the current session, when the mechanism names one.
    principal: Option<String>,
    /// When the current session ends, if it has a lifetime.
    session_expiry: Option<Instant>,
    /// A SaslHandshake on an authenticated connection began a
    /// re-authentication that has not finished yet.
    reauthenticating: bool,
    /// SaslHandshake v0 was used: mechanism messages come as raw frames.
    raw_tokens: bool,
    mechanism: Option<String>,
    scram: Option<ScramExchange>,
    /// The connection is to be closed once the last response is written.
    closing: bool,
    /// Why an OAUTHBEARER token was refused, reported once the client ends
    /// the exchange (RFC 7628).
    oauth_refused: Option<String>,
}

/// A SCRAM exchange between its first and last message.
struct ScramExchange {
    hash: (
        hmac::Algorithm,
        &'static digest::Algorithm,
        pbkdf2::Algorithm,
    ),
    nonce: String,
    /// `c=` of the client-final message: the GS2 header in base64.
    channel_binding: String,
    client_first_bare: String,
    server_first: String,
    salted: Vec<u8>,
    user: String,
}

/// Where one mechanism message leaves the exchange.
enum Step {
    /// Answer with these bytes and wait for the next message.
    Continue(Bytes),
    /// Answer with these bytes: the client is authenticated, as this user
    /// when the mechanism names one.
    Done(Bytes, Option<String>),
}

/// The error message Kafka gives for unknown users and wrong passwords.
const BAD_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("randomness");
    bytes
}

impl SaslSettings {
    /// The password of `user` now, if the brokers know the user.
    fn password(&self, user: &str) -> Option<String> {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }
}

impl SaslGate {
    pub(crate) fn new(settings: Arc<SaslSettings>) -> SaslGate {
        SaslGate {
            settings,
            authenticated: false,
            principal: None,
            session_expiry: None,
            reauthenticating: false,
            raw_tokens: false,
            mechanism: None,
            scram: None,
            closing: false,
            oauth_refused: None,
        }
    }

    /// Whether the connection must be closed after the response just
    /// written (a refused mechanism or a failed authentication, as Kafka
    /// does).
    pub(crate) fn closing(&self) -> bool {
        self.closing
    }

    /// Whether the current session has outlived its lifetime at `now`.
    fn expired(&self, now: Instant) -> bool {
        self.session_expiry.is_some_and(|end| now >= end)
    }

    /// Handles a request frame if SASL decides it: the SASL APIs are
    /// answered here, anything but ApiVersions before authentication closes
    /// the connection, and so does anything but a SaslHandshake once the
    /// session has expired. `None` passes the frame on to the broker.
    pub(crate) fn intercept(&mut self, body: &Bytes, now: Instant) -> Option<Outcome> {
        if self.closing {
            return Some(Outcome::Close);
        }
        if self.raw_tokens && !self.authenticated {
            // SaslHandshake v0: the frame is the mechanism message itself,
            // and there is no way to report a failure but closing.
            return Some(match self.authenticate(body) {
                Ok(Step::Continue(bytes)) => Outcome::Respond(bytes),
                Ok(Step::Done(bytes, principal)) => match self.complete(principal, now) {
                    Ok(()) => Outcome::Respond(bytes),
                    Err(_) => Outcome::Close,
                },
                Err(_) => Outcome::Close,
            });
        }
        if body.len() < 4 {
            return Some(Outcome::Close);
        }
        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).ok()?;
        let version = i16::from_be_bytes([body[2], body[3]]);
        match key {
            ApiKey::SaslHandshake => {}
            ApiKey::SaslAuthenticate if !self.authenticated || self.reauthenticating => {}
            _ if self.authenticated => {
                // KIP-368: an expired session may only start over.
                return self.expired(now).then_some(Outcome::Close);
            }
            ApiKey::ApiVersions => return None,
            _ => return Some(Outcome::Close),
        }
        let mut body = body.clone();
        let Ok(header) = RequestHeader::decode(&mut body, key.request_header_version(version))
        else {
            return Some(Outcome::Close);
        };
        let correlation_id = header.correlation_id;
        Some(if key == ApiKey::SaslHandshake {
            let Ok(request) = SaslHandshakeRequest::decode(&mut body, version) else {
                return Some(Outcome::Close);
            };
            if self.authenticated && version == 0 {
                // Raw frames cannot be told from requests any more.
                return Some(Outcome::Close);
            }
            let wanted = request.mechanism.to_string();
            let enabled = self.settings.mechanisms.contains(&wanted)
                && (!self.authenticated || self.mechanism.as_ref() == Some(&wanted));
            let mut response = SaslHandshakeResponse::default().with_mechanisms(
                self.settings
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_string(m.clone()))
                    .collect(),
            );
            if enabled {
                self.mechanism = Some(wanted);
                self.scram = None;
                self.oauth_refused = None;
                self.raw_tokens = version == 0;
                self.reauthenticating = self.authenticated;
            } else {
                // UNSUPPORTED_SASL_MECHANISM (also for a re-authentication
                // that switches mechanism); Kafka closes after answering.
                response.error_code = 33;
                self.closing = true;
            }
            encode_response(
                correlation_id,
                key,
                version,
                ResponseKind::SaslHandshake(response),
            )
        } else {
            let Ok(request) = SaslAuthenticateRequest::decode(&mut body, version) else {
                return Some(Outcome::Close);
            };
            let step = self
                .authenticate(&request.auth_bytes)
                .and_then(|step| match step {
                    Step::Continue(bytes) => {
                        Ok(SaslAuthenticateResponse::default().with_auth_bytes(bytes))
                    }
                    Step::Done(bytes, principal) => {
                        self.complete(principal, now)?;
                        let mut response =
                            SaslAuthenticateResponse::default().with_auth_bytes(bytes);
                        if version >= 1 {
                            response.session_lifetime_ms =
                                i64::try_from(self.settings.session_lifetime.as_millis())
                                    .unwrap_or(i64::MAX);
                        }
                        Ok(response)
                    }
                });
            let response = step.unwrap_or_else(|message| {
                self.closing = true;
                SaslAuthenticateResponse::default()
                    .with_error_code(58)
                    .with_error_message(Some(StrBytes::from_string(message)))
            });
            encode_response(
                correlation_id,
                key,
                version,
                ResponseKind::SaslAuthenticate(response),
            )
        })
    }

    /// Ends a successful exchange: a new session starts, for the same
    /// principal when this was a re-authentication.
    fn complete(&mut self, principal: Option<String>, now: Instant) -> Result<(), String> {
        if self.reauthenticating
            && let (Some(before), Some(after)) = (&self.principal, &principal)
            && before != after
        {
            return Err(format!(
                "Cannot change principals during re-authentication from User:{before}: User:{after}"
            ));
        }
        self.authenticated = true;
        self.reauthenticating = false;
        self.settings
            .authentications
            .fetch_add(1, Ordering::Relaxed);
        if principal.is_some() {
            self.principal = principal;
        }
        let lifetime = self.settings.session_lifetime;
        self.session_expiry = (!lifetime.is_zero()).then(|| now + lifetime);
        Ok(())
    }

    /// One mechanism message: the answer and whether authentication is done.
    fn authenticate(&mut self, message: &[u8]) -> Result<Step, String> {
        const BAD: &str = BAD_CREDENTIALS;
        let mechanism = self
            .mechanism
            .clone()
            .ok_or("Unexpected SaslAuthenticate before SaslHandshake")?;
        match mechanism.as_str() {
            "PLAIN" => {
                let text = std::str::from_utf8(message).map_err(|_| BAD.to_string())?;
                let mut parts = text.split('\0');
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                let (Some(user), Some(password), None) = (user, password, parts.next()) else {
                    return Err("Authentication failed: malformed PLAIN message".into());
                };
                if self.settings.password(user).is_some_and(|p| p == password) {
                    Ok(Step::Done(Bytes::new(), Some(user.to_string())))
                } else {
                    Err(BAD.into())
                }
            }
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                let hash = if mechanism == "SCRAM-SHA-256" {
                    (
                        hmac::HMAC_SHA256,
                        &digest::SHA256,
                        pbkdf2::PBKDF2_HMAC_SHA256,
                    )
                } else {
                    (
                        hmac::HMAC_SHA512,
                        &digest::SHA512,
                        pbkdf2::PBKDF2_HMAC_SHA512,
                    )
                };
                match self.scram.take() {
                    None => self.scram_first(hash, message).map(Step::Continue),
                    Some(exchange) => {
                        let user = exchange.user.clone();
                        exchange
                            .finish(message)
                            .map(|bytes| Step::Done(bytes, Some(user)))
                    }
                }
            }
            "OAUTHBEARER" => {
                if let Some(reason) = self.oauth_refused.take() {
                    return Err(format!("Authentication failed: {reason}"));
                }
                match check_unsecured_token(message) {
                    Ok(()) => Ok(Step::Done(Bytes::new(), None)),
                    Err(reason) => {
                        self.oauth_refused = Some(reason);
                        Ok(Step::Continue(Bytes::from_static(
                            br#"{"status":"invalid_token"}"#,
                        )))
                    }
                }
            }
            other => Err(format!("mechanism {other} is not enabled")),
        }
    }

    fn scram_first(
        &mut self,
        hash: (
            hmac::Algorithm,
            &'static digest::Algorithm,
            pbkdf2::Algorithm,
        ),
        message: &[u8],
    ) -> Result<Bytes, String> {
        const BAD: &str = BAD_CREDENTIALS;
        let text = std::str::from_utf8(message).map_err(|_| BAD.to_string())?;
        const MALFORMED: &str = "Authentication failed: malformed client-first message";
        // GS2 header: "n" (no channel binding, the only choice without TLS
        // channel binding here), then an optional authorization identity.
        let rest = text
            .strip_prefix("n,")
            .ok_or("Authentication failed: channel binding is not supported")?;
        let (authzid, bare) = rest.split_once(',').ok_or(MALFORMED)?;
        let authzid = match authzid {
            "" => None,
            a => Some(decode_sasl_name(a.strip_prefix("a=").ok_or(MALFORMED)?)),
        };
        let gs2_header = &text[..text.len() - bare.len()];
        if bare.starts_with("m=") {
            return Err("Authentication failed: mandatory extensions are not supported".into());
        }
        let mut user = None;
        let mut client_nonce = None;
        for field in bare.split(',') {
            if let Some(v) = field.strip_prefix("n=") {
                user = Some(decode_sasl_name(v));
            } else if let Some(v) = field.strip_prefix("r=") {
                client_nonce = Some(v.to_string());
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(MALFORMED.into());
        };
        if authzid.is_some_and(|a| a != user) {
            return Err(
                "Authentication failed: Client requested an authorization id that \
                        is different from username"
                    .into(),
            );
        }
        let password = self.settings.password(&user).ok_or(BAD)?;
        let salt = random_bytes(16);
        let nonce = format!("{client_nonce}{}", BASE64.encode(random_bytes(18)));
        let iterations = 4096;
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
        let mut salted = vec![0u8; hash.1.output_len()];
        pbkdf2::derive(
            hash.2,
            std::num::NonZeroU32::new(iterations).expect("nonzero"),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        self.scram = Some(ScramExchange {
            hash,
            nonce,
            channel_binding: BASE64.encode(gs2_header),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            salted,
            user,
        });
        Ok(Bytes::from(server_first.into_bytes()))
    }
}

/// A SCRAM user name with its `=2C` and `=3D` escapes undone (RFC 5802).
fn decode_sasl_name(name: &str) -> String {
    name.replace("=2C", ",").replace("=3D", "=")
}

/// Seconds since the Unix epoch: a broker checks token expiry against its
/// wall clock.
#[allow(clippy::disallowed_methods)]
fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks an OAUTHBEARER client message carrying an unsecured JWS (as
/// Kafka's `OAuthBearerUnsecuredJws` validator does): `alg` none, a `sub`
/// claim, an `exp` claim in the future.
fn check_unsecured_token(message: &[u8]) -> Result<(), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_string())?;
    let rest = text.strip_prefix("n,").ok_or("no GS2 header")?;
    let token = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth=Bearer "))
        .ok_or("no bearer token")?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, ""] = parts[..] else {
        return Err("not an unsecured JWS".into());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| "a JWS part is not base64url JSON".to_string())
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    if !header.replace(' ', "").contains(r#""alg":"none""#) {
        return Err("the token is not unsecured (alg none)".into());
    }
    let claims = claims.replace(' ', "");
    if !claims.contains(r#""sub":""#) {
        return Err("the token has no sub claim".into());
    }
    let exp: i64 = claims
        .split(r#""exp":"#)
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .ok_or("the token has no exp claim")?;
    if exp <= unix_seconds() {
        return Err("the token has expired".into());
    }
    Ok(())
}

impl ScramExchange {
    /// Checks the client-final message; returns the server-final one.
    fn finish(self, message: &[u8]) -> Result<Bytes, String> {
        const BAD: &str = BAD_CREDENTIALS;
        let text = std::str::from_utf8(message).map_err(|_| BAD.to_string())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(BAD)?;
        if without_proof != format!("c={},r={}", self.channel_binding, self.nonce) {
            return Err("Authentication failed: nonce or channel binding mismatch".into());
        }
        let proof = BASE64.decode(proof).map_err(|_| BAD.to_string())?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let salted = hmac::Key::new(self.hash.0, &self.salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(self.hash.1, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(self.hash.0, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        if proof.len() != signature.as_ref().len() {
            return Err(BAD.into());
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        if digest::digest(self.hash.1, &recovered).as_ref() != stored_key.as_ref() {
            return Err(BAD.into());
        }
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hash.0, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok(Bytes::from(
            format!("v={}", BASE64.encode(server_signature.as_ref())).into_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> SaslGate {
        let mut users = BTreeMap::new();
        users.insert("user".to_string(), "pencil".to_string());
        SaslGate::new(Arc::new(SaslSettings {
            mechanisms: vec!["SCRAM-SHA-256".into()],
            users: Arc::new(Mutex::new(users)),
            ..SaslSettings::default()
        }))
    }

    fn scram_first(gate: &mut SaslGate, message: &str) -> Result<Bytes, String> {
        gate.scram_first(
            (
                hmac::HMAC_SHA256,
                &digest::SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
            ),
            message.as_bytes(),
        )
    }

    /// RFC 5802: the server extends the client's nonce, sends a 16-byte
    /// salt and 4096 iterations, and binds the GS2 header (with an
    /// authorization identity) into the final message.
    #[test]
    fn the_server_first_message_follows_rfc_5802() {
        let mut gate = gate();
        let first = scram_first(&mut gate, "n,a=user,n=user,r=abc").unwrap();
        let first = std::str::from_utf8(&first).unwrap();
        let fields: Vec<&str> = first.split(',').collect();
        assert!(fields[0].starts_with("r=abc") && fields[0].len() > "r=abc".len());
        let salt = BASE64
            .decode(fields[1].strip_prefix("s=").unwrap())
            .unwrap();
        assert_eq!(salt.len(), 16);
        assert_eq!(fields[2], "i=4096");
        let exchange = gate.scram.as_ref().unwrap();
        assert_eq!(exchange.channel_binding, BASE64.encode("n,a=user,"));
        assert_eq!(exchange.client_first_bare, "n=user,r=abc");
    }

    #[test]
    fn scram_refuses_channel_binding_other_identities_and_mandatory_extensions() {
        for message in [
            "p=tls-unique,,n=user,r=abc",
            "y,,n=user,r=abc",
            "n,a=admin,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=nobody,r=abc",
            "n,,r=abc",
        ] {
            assert!(scram_first(&mut gate(), message).is_err(), "{message}");
        }
    }

    /// RFC 7677: the server's side of the SHA-256 example, with the RFC's
    /// salt and nonces in place of random ones.
    #[test]
    fn the_rfc_7677_server_signature_is_reproduced() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut salted = vec![0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(4096).unwrap(),
            &salt,
            b"pencil",
            &mut salted,
        );
        let exchange = ScramExchange {
            hash: (
                hmac::HMAC_SHA256,
                &digest::SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
            ),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            channel_binding: "biws".into(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                           s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .into(),
            salted,
            user: "user".into(),
        };
        let server_final = exchange
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            &server_final[..],
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
