// Logic of the `response_decode` fuzz target, shared with the corpus replay
// test (`tests/fuzz_corpus.rs`), which `include!`s this file.
//
// Input layout: byte 0 picks an API among `guarded_apis()` (modulo their
// number), byte 1 a version within that API's guarded range, and the rest is
// the response body. The body goes through `decode_body` for the matching
// kafka-protocol response type (the guard, then the decoder); the same bytes
// are also read as a response header (`check_response_header` and
// `split_response`), as if they were a whole frame.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use smartkafka::protocol::guard::{check_response_body, check_response_header, guarded_apis};
use smartkafka::protocol::{decode_body, split_response};

/// What one input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The API the input was decoded as.
    pub api: ApiKey,
    /// The version it was decoded at.
    pub version: i16,
    /// Whether the guard accepted the body as it is (no trailing bytes).
    pub guard_ok: bool,
    /// `Some(true)` if `decode_body` decoded the body, `Some(false)` if it
    /// refused it, `None` if this target has no response type for `api`.
    pub decoded: Option<bool>,
    /// Whether the bytes also read as a response frame (header and body).
    pub frame_ok: bool,
}

/// The input bytes that select `api` at `version`, or `None` if that pair is
/// not guarded. Seeds are built with this.
pub fn selector(api: ApiKey, version: i16) -> Option<[u8; 2]> {
    guarded_apis().enumerate().find_map(|(i, (a, min, max))| {
        (a == api && (min..=max).contains(&version))
            .then(|| [i as u8, (version - min) as u8])
    })
}

/// `Ok` if `decode_body` decoded `body` as `T`, else the error's message.
fn decode<T: Decodable>(api: ApiKey, version: i16, body: &Bytes) -> Option<Result<(), String>> {
    Some(
        decode_body::<T>(api, version, body.clone())
            .map(drop)
            .map_err(|e| e.to_string()),
    )
}

/// Runs `decode_body` with the response type of `api`.
fn decode_as(api: ApiKey, version: i16, body: &Bytes) -> Option<Result<(), String>> {
    match api {
        ApiKey::ApiVersions => decode::<ApiVersionsResponse>(api, version, body),
        ApiKey::Metadata => decode::<MetadataResponse>(api, version, body),
        ApiKey::Produce => decode::<ProduceResponse>(api, version, body),
        ApiKey::Fetch => decode::<FetchResponse>(api, version, body),
        ApiKey::ListOffsets => decode::<ListOffsetsResponse>(api, version, body),
        ApiKey::CreateTopics => decode::<CreateTopicsResponse>(api, version, body),
        ApiKey::DeleteTopics => decode::<DeleteTopicsResponse>(api, version, body),
        ApiKey::InitProducerId => decode::<InitProducerIdResponse>(api, version, body),
        ApiKey::FindCoordinator => decode::<FindCoordinatorResponse>(api, version, body),
        ApiKey::OffsetFetch => decode::<OffsetFetchResponse>(api, version, body),
        ApiKey::OffsetCommit => decode::<OffsetCommitResponse>(api, version, body),
        ApiKey::AddPartitionsToTxn => decode::<AddPartitionsToTxnResponse>(api, version, body),
        ApiKey::AddOffsetsToTxn => decode::<AddOffsetsToTxnResponse>(api, version, body),
        ApiKey::TxnOffsetCommit => decode::<TxnOffsetCommitResponse>(api, version, body),
        ApiKey::EndTxn => decode::<EndTxnResponse>(api, version, body),
        ApiKey::SaslHandshake => decode::<SaslHandshakeResponse>(api, version, body),
        ApiKey::SaslAuthenticate => decode::<SaslAuthenticateResponse>(api, version, body),
        ApiKey::DescribeCluster => decode::<DescribeClusterResponse>(api, version, body),
        ApiKey::JoinGroup => decode::<JoinGroupResponse>(api, version, body),
        ApiKey::SyncGroup => decode::<SyncGroupResponse>(api, version, body),
        ApiKey::Heartbeat => decode::<HeartbeatResponse>(api, version, body),
        ApiKey::LeaveGroup => decode::<LeaveGroupResponse>(api, version, body),
        _ => None,
    }
}

/// Runs one input through the guard and the decoder. Never panics on any
/// input; `None` for inputs shorter than the two selector bytes.
pub fn run(data: &[u8]) -> Option<Outcome> {
    let [a, v, body @ ..] = data else {
        return None;
    };
    let apis: Vec<(ApiKey, i16, i16)> = guarded_apis().collect();
    let (api, min, max) = apis[usize::from(*a) % apis.len()];
    let span = u16::try_from(max - min).expect("version range") + 1;
    let version = min + i16::try_from(u16::from(*v) % span).expect("version offset");

    let guard_ok = check_response_body(api, version, body).is_ok();
    let body = Bytes::copy_from_slice(body);
    let result = decode_as(api, version, &body);
    if guard_ok && let Some(Err(e)) = &result {
        // What the guard accepts, kafka-protocol must decode, or the schema
        // and the decoder disagree. Two refusals are expected: the guard does
        // not check UTF-8, and it skips a tagged field outside the versions
        // that define it as unknown (as the Java client does) where
        // kafka-protocol refuses the tag ("Tag 0 is not valid for version
        // 14" for Fetch's `node_endpoints`, defined from v16).
        assert!(
            e.contains("utf-8") || e.contains("is not valid for version"),
            "{api:?} v{version}: guard accepted, decode failed: {e}"
        );
    }
    let decoded = result.map(|r| r.is_ok());

    // The same bytes as a whole frame: header first, then the body.
    let header_version = api.response_header_version(version);
    if let Ok(len) = check_response_header(header_version, &body) {
        assert!(len <= body.len(), "header longer than its input");
    }
    let frame_ok = match split_response(api, version, body) {
        Ok((_, rest)) => matches!(decode_as(api, version, &rest), Some(Ok(()))),
        Err(_) => false,
    };

    Some(Outcome {
        api,
        version,
        guard_ok,
        decoded,
        frame_ok,
    })
}
