// Logic of the `frame_decoder` fuzz target, shared with the corpus replay
// test (`tests/fuzz_corpus.rs`), which `include!`s this file.
//
// Input layout: byte 0 and byte 1 are two chunk lengths (0 means "everything
// left"), used alternately to cut the stream into reads; byte 2 picks the
// set of requests pending on the connection; the rest is the byte stream a
// broker sends. The stream goes through a `FrameDecoder` with a small maximum
// frame size and through a `CorrelationState` with requests pending, whose
// matched response bodies are then decoded, guarded, as the client would.

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse,
};
use smartkafka::protocol::{CorrelationState, FrameDecoder, decode_body};

/// Largest frame the decoders accept while fuzzing.
pub const MAX_FRAME_SIZE: usize = 4096;

/// The requests pending on the connection for each value of the selector
/// byte (modulo its length): API and version, in the order they were sent.
pub const PENDING_SETS: [&[(ApiKey, i16)]; 2] = [
    // Flexible response headers (v1) after ApiVersions' fixed v0 header.
    &[
        (ApiKey::ApiVersions, 3),
        (ApiKey::Metadata, 12),
        (ApiKey::Produce, 9),
    ],
    // Pre-flexible versions: response header v0 throughout.
    &[
        (ApiKey::ApiVersions, 0),
        (ApiKey::Metadata, 4),
        (ApiKey::Produce, 3),
    ],
];

/// What one input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Frames the bare `FrameDecoder` produced before the stream ended or
    /// failed.
    pub frames: usize,
    /// Whether the bare `FrameDecoder` refused the stream.
    pub frame_error: bool,
    /// Responses the `CorrelationState` matched to pending requests.
    pub matched: usize,
    /// Matched responses whose body decoded.
    pub decoded: usize,
    /// Whether the `CorrelationState` refused the stream.
    pub connection_error: bool,
}

/// Splits `data` into the chunk lengths, the pending-set selector and the
/// stream. Short inputs get defaults.
fn parse(data: &[u8]) -> ([usize; 2], usize, &[u8]) {
    match data {
        [a, b, set, stream @ ..] => ([usize::from(*a), usize::from(*b)], usize::from(*set), stream),
        _ => ([0, 0], 0, &[]),
    }
}

/// The stream cut into reads of the given lengths, alternately.
fn chunks<'a>(stream: &'a [u8], lens: [usize; 2]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = stream;
    let mut turn = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = match lens[turn % 2] {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        turn += 1;
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

/// Runs one input through both decoders. Never panics on any input.
pub fn run(data: &[u8]) -> Outcome {
    let (lens, set, stream) = parse(data);
    let mut outcome = Outcome::default();

    // The bare frame decoder.
    let decoder = FrameDecoder::new(MAX_FRAME_SIZE);
    let mut buf = BytesMut::new();
    'frames: for chunk in chunks(stream, lens) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME_SIZE, "frame over the limit");
                    outcome.frames += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    outcome.frame_error = true;
                    break 'frames;
                }
            }
        }
    }

    // A connection with requests pending.
    let pending = PENDING_SETS[set % PENDING_SETS.len()];
    let mut conn = CorrelationState::new(Some("fuzz".to_string()), MAX_FRAME_SIZE);
    let mut out = BytesMut::new();
    for &(api, version) in pending {
        let sent = match api {
            ApiKey::ApiVersions => conn.encode(&mut out, version, &ApiVersionsRequest::default(), true),
            ApiKey::Metadata => conn.encode(&mut out, version, &MetadataRequest::default(), true),
            _ => conn.encode(&mut out, version, &ProduceRequest::default(), true),
        };
        sent.expect("encoding a default request");
    }
    let mut buf = BytesMut::new();
    'conn: for chunk in chunks(stream, lens) {
        buf.extend_from_slice(chunk);
        loop {
            match conn.decode(&mut buf) {
                Ok(Some(response)) => {
                    outcome.matched += 1;
                    let request = response.request;
                    let (api, version, body) = (request.api, request.version, response.body);
                    let decoded = match api {
                        ApiKey::ApiVersions => {
                            decode_body::<ApiVersionsResponse>(api, version, body).is_ok()
                        }
                        ApiKey::Metadata => {
                            decode_body::<MetadataResponse>(api, version, body).is_ok()
                        }
                        _ => decode_body::<ProduceResponse>(api, version, body).is_ok(),
                    };
                    outcome.decoded += usize::from(decoded);
                }
                Ok(None) => break,
                Err(_) => {
                    outcome.connection_error = true;
                    break 'conn;
                }
            }
        }
    }
    assert!(outcome.matched <= pending.len(), "matched more responses than requests");
    assert_eq!(conn.pending().len(), pending.len() - outcome.matched);
    outcome
}
