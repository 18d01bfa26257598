//! Broker network loops.
//!
//! Each fake broker is a tokio task accepting connections on its listener;
//! each connection runs in its own task (owned by the broker task, so they all
//! stop with it). A connection reads frames (4-byte big-endian size, then the
//! body), handles them one at a time in order, as a real broker does, and
//! writes responses. Malformed frames close the connection, and so does the
//! end of a [connection lifetime](crate::chaos) when one is set.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::chaos::{hard_stop, plan};
use crate::handlers::{Outcome, handle_frame};
use crate::security::{SaslGate, SaslSettings};
use crate::state::Shared;

/// What every connection of a broker goes through before Kafka requests.
#[derive(Clone, Default)]
pub(crate) struct Listener {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub sasl: Option<Arc<SaslSettings>>,
}

/// Largest request frame accepted (matches Kafka's `socket.request.max.bytes`).
const MAX_FRAME: usize = 100 * 1024 * 1024;

/// Accepts connections for broker `broker_id` until the task is aborted.
pub(crate) async fn run_broker(
    listener: TcpListener,
    broker_id: i32,
    shared: Arc<Shared>,
    security: Listener,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let security = security.clone();
                    connections.spawn(async move {
                        let gate = security.sasl.map(SaslGate::new);
                        match security.tls {
                            Some(acceptor) => {
                                // A failed handshake (untrusted or missing
                                // client certificate) just ends the connection.
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    serve_connection(tls, broker_id, shared, gate).await;
                                }
                            }
                            None => serve_connection(stream, broker_id, shared, gate).await,
                        }
                    });
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads one request frame body; `None` once the connection is closed or
/// sends an invalid size.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Bytes> {
    let mut size = [0u8; 4];
    reader.read_exact(&mut size).await.ok()?;
    let size = usize::try_from(i32::from_be_bytes(size)).ok()?;
    if size > MAX_FRAME {
        return None;
    }
    let mut body = vec![0u8; size];
    reader.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

/// Writes one response frame (size prefix added here).
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, response: &[u8]) -> Option<()> {
    let len = u32::try_from(response.len()).ok()?;
    let mut frame = BytesMut::with_capacity(response.len() + 4);
    frame.put_u32(len);
    frame.extend_from_slice(response);
    writer.write_all(&frame).await.ok()?;
    // A TLS stream holds what is written until flushed.
    writer.flush().await.ok()
}

/// Serves one client connection until it closes, sends something invalid,
/// or its [connection lifetime](crate::chaos) ends.
async fn serve_connection<S>(
    stream: S,
    broker_id: i32,
    shared: Arc<Shared>,
    mut gate: Option<SaslGate>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let number = shared.chaos.accept();
    let accepted = Instant::now();
    let mut setting = shared.chaos.subscribe();
    let (mut reader, mut writer) = tokio::io::split(stream);
    loop {
        let body = tokio::select! {
            frame = read_frame(&mut reader) => match frame {
                Some(body) => body,
                None => return,
            },
            () = hard_stop(&mut setting, number, accepted) => {
                shared.chaos.record_kill(false);
                return;
            }
        };
        if let Some(gate) = gate.as_mut()
            && let Some(outcome) = gate.intercept(&body, Instant::now())
        {
            match outcome {
                Outcome::Respond(response) => {
                    if write_frame(&mut writer, &response).await.is_none() || gate.closing() {
                        return;
                    }
                    continue;
                }
                Outcome::Silent => continue,
                Outcome::Close => return,
            }
        }
        let is_produce =
            body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == ApiKey::Produce as i16;
        let outcome = tokio::select! {
            outcome = handle_frame(&shared, broker_id, body) => outcome,
            () = hard_stop(&mut setting, number, accepted) => {
                shared.chaos.record_kill(false);
                return;
            }
        };
        if is_produce && !matches!(outcome, Outcome::Close) {
            let plan = plan(&setting.borrow(), number, accepted);
            if plan.is_some_and(|p| p.after_produce && Instant::now() >= p.deadline) {
                // Applied, never answered.
                shared.chaos.record_kill(true);
                return;
            }
        }
        match outcome {
            Outcome::Respond(response) => {
                let written = tokio::select! {
                    written = write_frame(&mut writer, &response) => written,
                    () = hard_stop(&mut setting, number, accepted) => {
                        shared.chaos.record_kill(false);
                        return;
                    }
                };
                if written.is_none() {
                    return;
                }
            }
            Outcome::Silent => {}
            Outcome::Close => return,
        }
    }
}
