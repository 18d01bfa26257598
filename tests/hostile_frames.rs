//! Hostile bytes from the network: a scripted broker answers the client's
//! handshake correctly, then answers Metadata with malformed frames. Every
//! case must end in a clear error (never a panic) and must not make the
//! client allocate anywhere near what the bytes claim.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use smartkafka::{AdminClient, ClientConfig, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Records the largest single allocation made while `TRACKING` is on.
struct PeakAlloc;
static TRACKING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the only
// addition is bookkeeping on atomics, which does not allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// What the scripted broker sends in answer to the Metadata request.
#[derive(Clone)]
enum Answer {
    /// Raw bytes written as they are (prefix included), then the socket closes.
    Raw(Vec<u8>),
    /// A framed response with this correlation id offset and body.
    Framed {
        correlation_delta: i32,
        body: Vec<u8>,
    },
}

async fn read_request(stream: &mut TcpStream) -> Option<(i16, i16, i32)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    let api = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    Some((api, version, correlation))
}

/// A one-connection broker: a correct ApiVersions answer advertising
/// Metadata up to `metadata_max`, then `answer` to the next request.
async fn scripted_broker(metadata_max: i16, answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let Some((_, version, correlation)) = read_request(&mut stream).await else {
            return;
        };
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(3),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_max_version(metadata_max),
        ]);
        let mut body = BytesMut::new();
        body.put_i32(correlation);
        response.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.unwrap();
        let Some((_, _, correlation)) = read_request(&mut stream).await else {
            return;
        };
        let bytes = match answer {
            Answer::Raw(bytes) => bytes,
            Answer::Framed {
                correlation_delta,
                body,
            } => {
                let mut frame = BytesMut::new();
                frame.put_i32(body.len() as i32 + 4);
                frame.put_i32(correlation + correlation_delta);
                frame.extend_from_slice(&body);
                frame.to_vec()
            }
        };
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    addr
}

/// Runs one hostile exchange and returns the error and the largest single
/// allocation made during it.
async fn exchange(metadata_max: i16, answer: Answer) -> (smartkafka::Error, usize) {
    let addr = scripted_broker(metadata_max, answer).await;
    LARGEST.store(0, Ordering::SeqCst);
    TRACKING.store(true, Ordering::SeqCst);
    let result =
        AdminClient::connect(ClientConfig::new(&addr).request_timeout(Duration::from_secs(5)))
            .await;
    TRACKING.store(false, Ordering::SeqCst);
    let err = result.expect_err("a hostile answer must be an error");
    (err, LARGEST.load(Ordering::SeqCst))
}

/// Nothing here may allocate more than the default 64 KiB read buffer plus
/// bookkeeping, whatever the bytes claim.
const ALLOCATION_CEILING: usize = 256 * 1024;

#[tokio::test(flavor = "current_thread")]
async fn hostile_answers_are_errors_not_panics_and_allocate_little() {
    // Metadata v8 uses int32 array counts; v12 uses compact (varint) counts.
    let two_gib_prefix = Answer::Raw(vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
    let mut int32_bomb = vec![0, 0, 0, 0]; // throttle_time_ms
    int32_bomb.extend_from_slice(&0x7fff_ffffu32.to_be_bytes()); // brokers: 2^31 - 1
    int32_bomb.extend_from_slice(&[0; 8]);
    let mut varint_bomb = vec![0, 0, 0, 0]; // throttle_time_ms
    varint_bomb.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // brokers: 2^32 - 2
    varint_bomb.extend_from_slice(&[0; 7]);
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0; 50]);
    let random: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    let cases: Vec<(&str, i16, Answer, ErrorKind)> = vec![
        ("2 GiB size prefix", 12, two_gib_prefix, ErrorKind::Protocol),
        (
            "negative size prefix",
            12,
            Answer::Raw(vec![0xff, 0xff, 0xff, 0xfe]),
            ErrorKind::Protocol,
        ),
        (
            "int32 count 2^31 in a 20-byte frame",
            8,
            Answer::Framed {
                correlation_delta: 0,
                body: int32_bomb,
            },
            ErrorKind::Protocol,
        ),
        (
            "varint count 2^32 in a 20-byte frame",
            12,
            Answer::Framed {
                correlation_delta: 0,
                body: varint_bomb,
            },
            ErrorKind::Protocol,
        ),
        (
            "truncated frame, then close",
            12,
            Answer::Raw(truncated),
            ErrorKind::Io,
        ),
        (
            "random body",
            12,
            Answer::Framed {
                correlation_delta: 0,
                body: random.clone(),
            },
            ErrorKind::Protocol,
        ),
        (
            "unexpected correlation id",
            12,
            Answer::Framed {
                correlation_delta: 7,
                body: random,
            },
            ErrorKind::Protocol,
        ),
        (
            "empty frame",
            12,
            Answer::Raw(vec![0, 0, 0, 0]),
            ErrorKind::Protocol,
        ),
    ];
    for (name, metadata_max, answer, kind) in cases {
        let (err, largest) = exchange(metadata_max, answer).await;
        assert_eq!(err.kind(), &kind, "{name}: {err}");
        assert!(
            largest < ALLOCATION_CEILING,
            "{name}: allocated {largest} bytes at once"
        );
    }
}
