//! Hostile bytes from the network: a scripted broker answers the client's
//! handshake correctly, then answers Metadata with malformed frames. Every
//! case must end in a clear error (never a panic) and must not make the
//! client allocate anywhere near what the bytes claim.

use std::time::Duration;

use smartkafka::{AdminClient, ClientConfig, ErrorKind};

mod support;

use support::alloc::{Counting, largest_during};
use support::scripted_broker::{Answer, one_connection_broker};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs one hostile exchange and returns the error and the largest single
/// allocation made during it.
async fn exchange(metadata_max: i16, answer: Answer) -> (smartkafka::Error, usize) {
    let addr = one_connection_broker(metadata_max, answer).await;
    let (result, largest) = largest_during(AdminClient::connect(
        ClientConfig::new(&addr).request_timeout(Duration::from_secs(5)),
    ))
    .await;
    let err = result.expect_err("a hostile answer must be an error");
    (err, largest)
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
