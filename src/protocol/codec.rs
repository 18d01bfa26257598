//! Request encoding and response decoding: headers, versions, and the
//! bounded-decoding guard in front of every response decode.
//!
//! Header versions come from each message's flexible-version boundary
//! (kafka-protocol's `HeaderVersion`): request header v1 or v2 (v2 adds
//! tagged fields), response header v0 or v1. ApiVersions responses always
//! use header v0, so that a client can read them before it knows anything.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::guard;
use crate::error::{Error, ErrorKind};

/// A request message this client sends, tied to its API key and response.
pub trait ApiRequest: Encodable {
    /// The request's API.
    const KEY: ApiKey;
    /// The response message type.
    type Response: Decodable;

    /// This request as a Produce request, whose record batches the client
    /// writes without copying them into the frame.
    fn as_produce(&self) -> Option<&ProduceRequest> {
        None
    }
}

impl ApiRequest for ProduceRequest {
    const KEY: ApiKey = ApiKey::Produce;
    type Response = ProduceResponse;

    fn as_produce(&self) -> Option<&ProduceRequest> {
        Some(self)
    }
}

macro_rules! api_requests {
    ($($api:ident: $req:ident => $resp:ident,)*) => {
        $(impl ApiRequest for $req {
            const KEY: ApiKey = ApiKey::$api;
            type Response = $resp;
        })*
    };
}

api_requests! {
    Fetch: FetchRequest => FetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    JoinGroup: JoinGroupRequest => JoinGroupResponse,
    SyncGroup: SyncGroupRequest => SyncGroupResponse,
    Heartbeat: HeartbeatRequest => HeartbeatResponse,
    LeaveGroup: LeaveGroupRequest => LeaveGroupResponse,
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
    DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse,
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
    AddPartitionsToTxn: AddPartitionsToTxnRequest => AddPartitionsToTxnResponse,
    AddOffsetsToTxn: AddOffsetsToTxnRequest => AddOffsetsToTxnResponse,
    EndTxn: EndTxnRequest => EndTxnResponse,
    TxnOffsetCommit: TxnOffsetCommitRequest => TxnOffsetCommitResponse,
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
}

/// Encodes one request, size prefix included, at `version`, appending it to
/// `out`.
pub fn encode_request<R: ApiRequest>(
    out: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    request: &R,
) -> Result<(), Error> {
    let api = R::KEY;
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_string())));
    let header_version = api.request_header_version(version);
    // Room for the whole frame at once, so that writing the body (record
    // batches, for a Produce request) does not grow and copy the buffer.
    if let (Ok(head), Ok(body)) = (
        header.compute_size(header_version),
        request.compute_size(version),
    ) {
        out.reserve(4 + head + body);
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    header
        .encode(out, header_version)
        .map_err(|e| Error::protocol(format!("encoding {api:?} v{version} header: {e}")))?;
    request
        .encode(out, version)
        .map_err(|e| Error::protocol(format!("encoding {api:?} v{version} request: {e}")))?;
    let body_len = out.len() - start - 4;
    let len = i32::try_from(body_len).map_err(|_| {
        Error::protocol(format!("{api:?} request of {body_len} bytes is too large"))
    })?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The response header version for `api` at `version`.
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    api.response_header_version(version)
}

/// Splits a response frame into its correlation id and body, checking the
/// header with the guard first.
pub fn split_response(api: ApiKey, version: i16, frame: Bytes) -> Result<(i32, Bytes), Error> {
    let header_version = response_header_version(api, version);
    let header_len = guard::check_response_header(header_version, &frame).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("{api:?} v{version} response header: {e}"),
        )
    })?;
    let mut head = frame.slice(..header_len);
    let header = ResponseHeader::decode(&mut head, header_version)
        .map_err(|e| Error::protocol(format!("{api:?} v{version} response header: {e}")))?;
    Ok((header.correlation_id, frame.slice(header_len..)))
}

/// Decodes a response body of `R`'s API at `version` after the guard has
/// proven that every count and length in it fits in the bytes present.
pub fn decode_response<R: ApiRequest>(version: i16, body: Bytes) -> Result<R::Response, Error> {
    decode_body::<R::Response>(R::KEY, version, body)
}

/// Decodes any response body `T` of `api` at `version`, guarded.
pub fn decode_body<T: Decodable>(api: ApiKey, version: i16, body: Bytes) -> Result<T, Error> {
    if !guard::is_guarded(api, version) {
        return Err(Error::new(
            ErrorKind::UnsupportedApi,
            format!("{api:?} v{version} responses are not decoded by this client"),
        ));
    }
    match guard::check_response_body(api, version, &body) {
        Ok(()) => {}
        // Every field was proven in bounds before the walk reached the end;
        // bytes after a complete message are ignored, as the Java client and
        // librdkafka do (librdkafka's own mock broker appends one to some
        // Metadata responses).
        Err(guard::GuardError::Body {
            problem: guard::Problem::TrailingBytes(n),
            ..
        }) => {
            tracing::debug!(
                ?api,
                version,
                trailing = n,
                "ignoring bytes after a response"
            );
        }
        Err(e) => {
            return Err(Error::protocol(format!(
                "refused {api:?} v{version} response: {e}"
            )));
        }
    }
    let mut body = body;
    T::decode(&mut body, version)
        .map_err(|e| Error::protocol(format!("decoding {api:?} v{version} response: {e}")))
}
