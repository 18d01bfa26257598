//! The fake brokers' SASL listener with hand-built requests: what passes
//! before authentication, SaslHandshake and SaslAuthenticate at every
//! version (KIP-152 framing, and raw tokens after SaslHandshake v0), PLAIN
//! (RFC 4616) and SCRAM (RFC 5802, RFC 7677) checked from the client's
//! side, Kafka's refusals, and session lifetimes with re-authentication
//! (KIP-368).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use protocol_tests::FakeCluster;
use protocol_tests::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use protocol_tests::kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use protocol_tests::kafka_protocol::messages::*;
use protocol_tests::kafka_protocol::protocol::StrBytes;
use ring::{digest, hmac, pbkdf2};

use crate::support::raw::Conn;

const BAD_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

async fn cluster(mechanisms: &[&str], lifetime: Duration) -> FakeCluster {
    FakeCluster::builder()
        .topic("events", 1)
        .sasl(mechanisms)
        .sasl_user("alice", "alice-secret")
        .sasl_user("bob", "bob-secret")
        .sasl_session_lifetime(lifetime)
        .build()
        .await
}

async fn handshake(conn: &mut Conn, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    conn.call(ApiKey::SaslHandshake, version, &request).await
}

async fn authenticate(
    conn: &mut Conn,
    version: i16,
    message: &[u8],
) -> Option<SaslAuthenticateResponse> {
    let request =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(message));
    conn.try_call(ApiKey::SaslAuthenticate, version, &request)
        .await
}

/// Whether a Metadata request is answered (rather than the connection
/// closed).
async fn metadata_answered(conn: &mut Conn) -> bool {
    conn.try_call::<_, MetadataResponse>(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
        .is_some()
}

/// Whether the broker has closed the connection (reads its end).
async fn closed(conn: &mut Conn) -> bool {
    conn.frame().await.is_none()
}

fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// The client's side of a SCRAM exchange (RFC 5802), checking what the
/// server sends.
struct ScramClient {
    sha512: bool,
    password: String,
    client_first_bare: String,
    nonce: String,
    auth_message: String,
    salted: Vec<u8>,
}

impl ScramClient {
    fn new(sha512: bool, user: &str, password: &str) -> ScramClient {
        let nonce = format!("fyko+d2lbbFgONRv9qkxdawL{}", user.len());
        ScramClient {
            sha512,
            password: password.into(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            auth_message: String::new(),
            salted: Vec::new(),
        }
    }

    fn algorithms(
        &self,
    ) -> (
        hmac::Algorithm,
        &'static digest::Algorithm,
        pbkdf2::Algorithm,
    ) {
        if self.sha512 {
            (
                hmac::HMAC_SHA512,
                &digest::SHA512,
                pbkdf2::PBKDF2_HMAC_SHA512,
            )
        } else {
            (
                hmac::HMAC_SHA256,
                &digest::SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
            )
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Checks the server-first message; returns the client-final one.
    fn last(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let fields: Vec<&str> = server_first.split(',').collect();
        let [nonce, salt, iterations] = fields[..] else {
            panic!("server-first message {server_first:?}");
        };
        let nonce = nonce.strip_prefix("r=").unwrap();
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server's nonce extends the client's"
        );
        let salt = BASE64.decode(salt.strip_prefix("s=").unwrap()).unwrap();
        assert_eq!(salt.len(), 16, "a 16-byte salt");
        assert_eq!(iterations, "i=4096");
        let (mac, hash, kdf) = self.algorithms();
        self.salted = vec![0u8; hash.output_len()];
        pbkdf2::derive(
            kdf,
            std::num::NonZeroU32::new(4096).unwrap(),
            &salt,
            self.password.as_bytes(),
            &mut self.salted,
        );
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = hmac::sign(&hmac::Key::new(mac, &self.salted), b"Client Key");
        let stored_key = digest::digest(hash, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(mac, stored_key.as_ref()),
            self.auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
    }

    /// Checks the server-final message's signature.
    fn verify(&self, server_final: &[u8]) {
        let (mac, _, _) = self.algorithms();
        let server_key = hmac::sign(&hmac::Key::new(mac, &self.salted), b"Server Key");
        let signature = hmac::sign(
            &hmac::Key::new(mac, server_key.as_ref()),
            self.auth_message.as_bytes(),
        );
        assert_eq!(
            std::str::from_utf8(server_final).unwrap(),
            format!("v={}", BASE64.encode(signature.as_ref())),
            "the server signature"
        );
    }
}

/// Authenticates with `mechanism` through SaslHandshake v1 and
/// SaslAuthenticate `version`; returns the last response.
async fn login(
    conn: &mut Conn,
    mechanism: &str,
    version: i16,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    let response = handshake(conn, 1, mechanism).await;
    assert_eq!(response.error_code, 0, "{mechanism} is enabled");
    if mechanism == "PLAIN" {
        return authenticate(conn, version, &plain(user, password))
            .await
            .expect("answered");
    }
    let mut client = ScramClient::new(mechanism == "SCRAM-SHA-512", user, password);
    let first = authenticate(conn, version, &client.first())
        .await
        .expect("answered");
    if first.error_code != 0 {
        // An unknown user is refused at once.
        return first;
    }
    let last = authenticate(conn, version, &client.last(&first.auth_bytes))
        .await
        .expect("answered");
    if last.error_code == 0 {
        client.verify(&last.auth_bytes);
    }
    last
}

#[tokio::test]
async fn sasl_apis_are_advertised_and_nothing_else_passes_before_authentication() {
    let cluster = cluster(&["PLAIN"], Duration::ZERO).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let versions: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let range = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::SaslHandshake), Some((0, 1)));
    assert_eq!(range(ApiKey::SaslAuthenticate), Some((0, 2)));
    assert!(!metadata_answered(&mut conn).await, "Metadata closes");

    // Without SASL the APIs are not advertised.
    let open = FakeCluster::builder().build().await;
    let mut conn = Conn::open(&open, 1).await;
    let versions: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert!(
        !versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslHandshake as i16)
    );
}

#[tokio::test]
async fn a_mechanism_not_enabled_is_refused_and_the_connection_closed() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256"], Duration::ZERO).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let response = handshake(&mut conn, 1, "SCRAM-SHA-512").await;
    assert_eq!(response.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let listed: Vec<String> = response.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(listed, ["PLAIN", "SCRAM-SHA-256"]);
    assert!(closed(&mut conn).await);
}

#[tokio::test]
async fn plain_and_scram_authenticate_at_every_sasl_authenticate_version() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], Duration::ZERO).await;
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        for version in 0..=2 {
            for (user, password) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
                let mut conn = Conn::open(&cluster, 1).await;
                let response = login(&mut conn, mechanism, version, user, password).await;
                assert_eq!(
                    response.error_code, 0,
                    "{mechanism} v{version} {user}: {:?}",
                    response.error_message
                );
                assert_eq!(response.session_lifetime_ms, 0, "no session lifetime");
                assert!(metadata_answered(&mut conn).await, "{mechanism} v{version}");
            }
        }
    }
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_fails_with_kafkas_message_and_closes() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], Duration::ZERO).await;
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        for (user, password) in [("alice", "bob-secret"), ("carol", "alice-secret")] {
            let mut conn = Conn::open(&cluster, 1).await;
            let response = login(&mut conn, mechanism, 2, user, password).await;
            assert_eq!(response.error_code, 58, "SASL_AUTHENTICATION_FAILED");
            assert_eq!(response.error_message.as_deref(), Some(BAD_CREDENTIALS));
            assert!(closed(&mut conn).await, "{mechanism} {user}");
        }
    }
}

#[tokio::test]
async fn after_sasl_handshake_v0_tokens_travel_as_raw_frames() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-512"], Duration::ZERO).await;

    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(handshake(&mut conn, 0, "PLAIN").await.error_code, 0);
    conn.send_raw(&plain("alice", "alice-secret")).await;
    assert_eq!(conn.frame().await.as_deref(), Some(&b""[..]));
    assert!(metadata_answered(&mut conn).await);

    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(handshake(&mut conn, 0, "SCRAM-SHA-512").await.error_code, 0);
    let mut client = ScramClient::new(true, "bob", "bob-secret");
    conn.send_raw(&client.first()).await;
    let server_first = conn.frame().await.expect("server-first message");
    conn.send_raw(&client.last(&server_first)).await;
    client.verify(&conn.frame().await.expect("server-final message"));
    assert!(metadata_answered(&mut conn).await);

    // A failure cannot be reported in this framing: the broker closes.
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(handshake(&mut conn, 0, "PLAIN").await.error_code, 0);
    conn.send_raw(&plain("alice", "wrong")).await;
    assert!(closed(&mut conn).await);
}

#[tokio::test]
async fn an_expired_session_closes_on_the_next_request_unless_re_authenticated() {
    const LIFETIME: Duration = Duration::from_millis(1500);
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256"], LIFETIME).await;

    // Reported from SaslAuthenticate v1 on.
    let mut conn = Conn::open(&cluster, 1).await;
    let response = login(&mut conn, "PLAIN", 1, "alice", "alice-secret").await;
    assert_eq!(response.session_lifetime_ms, 1500);

    // Expired: any request but SaslHandshake closes, ApiVersions too.
    let mut expired = Conn::open(&cluster, 1).await;
    login(&mut expired, "SCRAM-SHA-256", 2, "alice", "alice-secret").await;
    let mut versions = Conn::open(&cluster, 1).await;
    login(&mut versions, "PLAIN", 2, "alice", "alice-secret").await;
    // Re-authenticates once expired (SaslHandshake starts it).
    let mut late = Conn::open(&cluster, 1).await;
    login(&mut late, "SCRAM-SHA-256", 2, "bob", "bob-secret").await;
    assert!(metadata_answered(&mut expired).await, "within the lifetime");

    // Re-authenticates within the lifetime: a new session starts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = login(&mut conn, "PLAIN", 2, "alice", "alice-secret").await;
    assert_eq!(again.error_code, 0);
    assert_eq!(again.session_lifetime_ms, 1500);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(metadata_answered(&mut conn).await, "the new session holds");
    assert!(
        !metadata_answered(&mut expired).await,
        "the first one ended"
    );
    let answered = versions
        .try_call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert!(answered.is_none(), "ApiVersions after expiry closes");
    let renewed = login(&mut late, "SCRAM-SHA-256", 2, "bob", "bob-secret").await;
    assert_eq!(renewed.error_code, 0, "{:?}", renewed.error_message);
    assert!(metadata_answered(&mut late).await, "re-authenticated late");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !metadata_answered(&mut conn).await,
        "the second session ended"
    );
}

#[tokio::test]
async fn re_authentication_keeps_the_mechanism_and_the_principal() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256"], Duration::ZERO).await;

    let mut conn = Conn::open(&cluster, 1).await;
    login(&mut conn, "PLAIN", 2, "alice", "alice-secret").await;
    let response = login(&mut conn, "PLAIN", 2, "bob", "bob-secret").await;
    assert_eq!(response.error_code, 58);
    assert_eq!(
        response.error_message.as_deref(),
        Some("Cannot change principals during re-authentication from User:alice: User:bob")
    );
    assert!(closed(&mut conn).await);

    let mut conn = Conn::open(&cluster, 1).await;
    login(&mut conn, "PLAIN", 2, "alice", "alice-secret").await;
    assert_eq!(
        handshake(&mut conn, 1, "SCRAM-SHA-256").await.error_code,
        33
    );
    assert!(closed(&mut conn).await);
}

#[tokio::test]
async fn a_password_changed_at_run_time_refuses_the_next_re_authentication() {
    let cluster = cluster(&["PLAIN", "SCRAM-SHA-256"], Duration::ZERO).await;
    let mut plain_conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        login(&mut plain_conn, "PLAIN", 2, "alice", "alice-secret")
            .await
            .error_code,
        0
    );
    let mut scram_conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        login(&mut scram_conn, "SCRAM-SHA-256", 2, "alice", "alice-secret")
            .await
            .error_code,
        0
    );
    assert_eq!(cluster.sasl_authentications(), 2);

    cluster.set_sasl_password("alice", "rotated");
    // Open sessions hold.
    assert!(metadata_answered(&mut plain_conn).await);
    assert!(metadata_answered(&mut scram_conn).await);
    // A re-authentication with the old password is refused and closes.
    for (conn, mechanism) in [
        (&mut plain_conn, "PLAIN"),
        (&mut scram_conn, "SCRAM-SHA-256"),
    ] {
        let refused = login(conn, mechanism, 2, "alice", "alice-secret").await;
        assert_eq!(refused.error_code, 58, "{mechanism}");
        assert_eq!(refused.error_message.as_deref(), Some(BAD_CREDENTIALS));
        assert!(closed(conn).await, "{mechanism}");
    }
    // The new password works for new connections and re-authentications.
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        login(&mut conn, "SCRAM-SHA-256", 2, "alice", "rotated")
            .await
            .error_code,
        0
    );
    assert_eq!(
        login(&mut conn, "SCRAM-SHA-256", 2, "alice", "rotated")
            .await
            .error_code,
        0
    );
    assert!(metadata_answered(&mut conn).await);
    assert_eq!(cluster.sasl_authentications(), 4);
}
