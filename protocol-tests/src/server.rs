//! Broker network loops.
//!
//! Each fake broker is a tokio task accepting connections on its listener;
//! each connection runs in its own task (owned by the broker task, so they all
//! stop with it). A connection reads frames (4-byte big-endian size, then the
//! body), handles them one at a time in order, as a real broker does, and
//! writes responses. Malformed frames close the connection.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::handlers::{Outcome, handle_frame};
use crate::state::Shared;

/// Largest request frame accepted (matches Kafka's `socket.request.max.bytes`).
const MAX_FRAME: usize = 100 * 1024 * 1024;

/// Accepts connections for broker `broker_id` until the task is aborted.
pub(crate) async fn run_broker(listener: TcpListener, broker_id: i32, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, broker_id, Arc::clone(&shared)));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one client connection until it closes or sends something invalid.
async fn serve_connection(stream: TcpStream, broker_id: i32, shared: Arc<Shared>) {
    let (mut reader, mut writer) = stream.into_split();
    loop {
        let mut size = [0u8; 4];
        if reader.read_exact(&mut size).await.is_err() {
            return;
        }
        let Ok(size) = usize::try_from(i32::from_be_bytes(size)) else {
            return;
        };
        if size > MAX_FRAME {
            return;
        }
        let mut body = vec![0u8; size];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        match handle_frame(&shared, broker_id, Bytes::from(body)).await {
            Outcome::Respond(response) => {
                let Ok(len) = u32::try_from(response.len()) else {
                    return;
                };
                let mut frame = BytesMut::with_capacity(response.len() + 4);
                frame.put_u32(len);
                frame.extend_from_slice(&response);
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Outcome::Silent => {}
            Outcome::Close => return,
        }
    }
}
