//! A minimal client connection for the raw-protocol suites: encodes a
//! request header and body with kafka-protocol, frames it, and decodes the
//! matching response, so a test can speak to the fake cluster exactly as it
//! chooses (any version, any bytes).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protocol_tests::FakeCluster;
use protocol_tests::kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use protocol_tests::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One TCP connection to one broker of the fake cluster.
pub struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    /// Connects to `broker`.
    pub async fn open(cluster: &FakeCluster, broker: i32) -> Self {
        let addr = cluster
            .broker_addrs()
            .into_iter()
            .find(|(id, _)| *id == broker)
            .expect("broker")
            .1;
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            correlation: 0,
        }
    }

    fn encode<R: Encodable>(&mut self, key: ApiKey, version: i16, request: &R) -> BytesMut {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .expect("encode header");
        request
            .encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
        body
    }

    /// Sends a request; returns its correlation id.
    pub async fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, request: &R) -> i32 {
        let body = self.encode(key, version, request);
        self.send_raw(&body).await;
        self.correlation
    }

    /// Sends a request; `false` if the connection is already closed.
    pub async fn try_send<R: Encodable>(&mut self, key: ApiKey, version: i16, request: &R) -> bool {
        let body = self.encode(key, version, request);
        self.stream.write_all(&frame(&body)).await.is_ok()
    }

    /// Sends `body` (a header and request, already encoded) in one frame.
    pub async fn send_raw(&mut self, body: &[u8]) {
        self.stream.write_all(&frame(body)).await.expect("write");
    }

    /// Writes `bytes` as they are, framing included (for hostile input).
    pub async fn write_unframed(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next response frame body, or `None` once the broker closed.
    pub async fn frame(&mut self) -> Option<Bytes> {
        let read = async {
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(Bytes::from(body))
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("broker answers or closes in time")
    }

    /// The response to the request with `correlation`.
    pub async fn recv<T: Decodable>(&mut self, key: ApiKey, version: i16, correlation: i32) -> T {
        let body = self.frame().await.expect("response frame");
        decode(body, key, version, correlation)
    }

    /// Sends a request and decodes its response.
    pub async fn call<R: Encodable, T: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> T {
        let correlation = self.send(key, version, request).await;
        self.recv(key, version, correlation).await
    }

    /// Like `call`, but `None` when the broker closed the connection
    /// before or instead of answering.
    pub async fn try_call<R: Encodable, T: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> Option<T> {
        if !self.try_send(key, version, request).await {
            return None;
        }
        let body = self.frame().await?;
        Some(decode(body, key, version, self.correlation))
    }
}

fn frame(body: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(body);
    frame
}

fn decode<T: Decodable>(mut body: Bytes, key: ApiKey, version: i16, correlation: i32) -> T {
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .expect("decode response header");
    assert_eq!(header.correlation_id, correlation);
    T::decode(&mut body, version).unwrap_or_else(|e| panic!("decode {key:?} v{version}: {e}"))
}
