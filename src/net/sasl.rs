//! SASL authentication of a fresh connection, before any other request:
//! SaslHandshake names the mechanism, then SaslAuthenticate carries the
//! mechanism's messages in Kafka frames (KIP-152, so brokers from Kafka
//! 1.0 on). PLAIN and OAUTHBEARER take one round, SCRAM two.
//!
//! Every failure is [`ErrorKind::Authentication`] (fatal, not retried)
//! with the cause: the broker's message for wrong credentials, the list of
//! enabled mechanisms for one it does not enable, a server that did not
//! prove it knows the password. Passwords never appear in errors or logs.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::error::{Error, ErrorKind};
use crate::net::connection::BrokerConnection;
use crate::protocol::KafkaCode;
use crate::security::scram::ScramClient;
use crate::security::{SaslConfig, SaslMechanism};

/// Authenticates `conn` (to `addr`) with `sasl`. Returns the session
/// lifetime the broker set (KIP-368), if any.
pub(crate) async fn authenticate(
    conn: &BrokerConnection,
    sasl: &SaslConfig,
    addr: &str,
) -> Result<Option<Duration>, Error> {
    if conn.versions().get(ApiKey::SaslAuthenticate).is_none() {
        return Err(Error::new(
            ErrorKind::UnsupportedApi,
            format!(
                "{addr} does not offer SaslAuthenticate: SASL needs a broker of Kafka 1.0 or later"
            ),
        ));
    }
    let mechanism = sasl.mechanism.name();
    let handshake = conn
        .send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)))
        .await?;
    if let Some(code) = KafkaCode::from_i16(handshake.error_code) {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(Error::new(
            ErrorKind::Authentication,
            if code == KafkaCode::UNSUPPORTED_SASL_MECHANISM {
                format!("{addr} does not enable SASL mechanism {mechanism}; it enables {enabled:?}")
            } else {
                format!("SaslHandshake with {addr} for {mechanism}: {code}")
            },
        ));
    }
    let lifetime = match sasl.mechanism {
        SaslMechanism::Plain => {
            let message = format!("\0{}\0{}", sasl.username, sasl.password);
            round(conn, addr, mechanism, message.into_bytes()).await?.1
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let mut scram = ScramClient::new(sasl.mechanism, &sasl.username, &sasl.password)?;
            let (server_first, _) = round(conn, addr, mechanism, scram.client_first()).await?;
            let client_final = scram
                .client_final(&server_first)
                .map_err(|e| context(e, addr))?;
            let (server_final, lifetime) = round(conn, addr, mechanism, client_final).await?;
            scram
                .verify_server_final(&server_final)
                .map_err(|e| context(e, addr))?;
            lifetime
        }
        SaslMechanism::OAuthBearer => {
            let provider = sasl
                .token_provider
                .as_ref()
                .ok_or_else(|| Error::config("sasl", "OAUTHBEARER needs a token provider"))?;
            let token = provider.token().await.map_err(|e| {
                Error::new(
                    ErrorKind::Authentication,
                    format!("the OAUTHBEARER token provider failed: {e}"),
                )
            })?;
            // RFC 7628: gs2 header, then key=value pairs split by %x01.
            let mut message = format!("n,,\x01auth=Bearer {}", token.value);
            for (key, value) in &token.extensions {
                message.push_str(&format!("\x01{key}={value}"));
            }
            message.push_str("\x01\x01");
            let (reply, lifetime) = round(conn, addr, mechanism, message.into_bytes()).await?;
            if !reply.is_empty() {
                // The server's error (JSON) comes as a challenge; the client
                // ends the exchange with %x01 and the server then fails it.
                let detail = String::from_utf8_lossy(&reply[..reply.len().min(512)]).to_string();
                let _ = round(conn, addr, mechanism, vec![0x01]).await;
                return Err(Error::new(
                    ErrorKind::Authentication,
                    format!("{addr} refused the OAUTHBEARER token: {detail}"),
                ));
            }
            lifetime
        }
    };
    tracing::debug!(%addr, mechanism, "authenticated");
    Ok(lifetime)
}

fn context(error: Error, addr: &str) -> Error {
    Error::new(
        ErrorKind::Authentication,
        format!("SASL with {addr}: {error}"),
    )
}

/// One SaslAuthenticate round: our message out, the server's back.
async fn round(
    conn: &BrokerConnection,
    addr: &str,
    mechanism: &str,
    message: Vec<u8>,
) -> Result<(Bytes, Option<Duration>), Error> {
    let response = conn
        .send(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)))
        .await?;
    if let Some(code) = KafkaCode::from_i16(response.error_code) {
        let detail = response
            .error_message
            .as_ref()
            .map_or_else(|| code.name().to_string(), |m| m.to_string());
        return Err(Error::new(
            ErrorKind::Authentication,
            format!("{mechanism} authentication with {addr} failed: {detail}"),
        ));
    }
    let lifetime = u64::try_from(response.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    Ok((response.auth_bytes, lifetime))
}
