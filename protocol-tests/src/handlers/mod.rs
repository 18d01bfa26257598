//! Request dispatch and per-API handlers.
//!
//! [`handle_frame`] turns one request frame into what the connection must do
//! next: send a response, send nothing (acks=0), or close. It checks the API
//! key and version against the broker's advertised table, decodes with
//! kafka-protocol, applies any injected fault, and calls the handler for the
//! API. Each API has its own module; [`error_response`] builds the response an
//! injected error code produces.

mod api_versions;
mod create_topics;
mod fetch;
mod groups;
mod init_producer_id;
mod list_offsets;
mod membership;
mod metadata;
mod produce;
mod txn;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::faults::FaultAction;
use crate::state::{RequestRecord, Shared};

/// What the connection does after a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Write this frame body (size prefix not included).
    Respond(Bytes),
    /// Write nothing and read the next request.
    Silent,
    /// Close the connection.
    Close,
}

/// What a handler works with.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub broker_id: i32,
    pub version: i16,
    /// The client id from the request header ("" when absent).
    pub client_id: &'a str,
}

/// Builds a [`StrBytes`] from a string slice.
pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Builds a [`TopicName`] from a string slice.
pub(crate) fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// Handles one request frame body.
pub(crate) async fn handle_frame(shared: &Arc<Shared>, broker_id: i32, mut body: Bytes) -> Outcome {
    if body.len() < 8 {
        return Outcome::Close;
    }
    let raw_key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Outcome::Close;
    };
    let table = {
        let state = shared.state();
        match state.broker(broker_id) {
            Some(b) => b.versions.clone(),
            None => return Outcome::Close,
        }
    };

    if !table.supports(api_key, version) {
        if api_key != ApiKey::ApiVersions {
            return Outcome::Close;
        }
        // Real brokers answer an unknown ApiVersions version with a v0 response
        // carrying UNSUPPORTED_VERSION and their supported ranges.
        shared.requests().push(RequestRecord {
            broker_id,
            api_key,
            api_version: version,
            client_id: None,
        });
        let response = api_versions::response(
            &table,
            kafka_protocol::ResponseError::UnsupportedVersion.code(),
        );
        return encode_response(
            correlation_id,
            ApiKey::ApiVersions,
            0,
            ResponseKind::ApiVersions(response),
        );
    }

    let header_version = api_key.request_header_version(version);
    let Ok(header) = RequestHeader::decode(&mut body, header_version) else {
        return Outcome::Close;
    };
    let Ok(request) = RequestKind::decode(api_key, &mut body, version) else {
        return Outcome::Close;
    };
    shared.requests().push(RequestRecord {
        broker_id,
        api_key,
        api_version: version,
        client_id: header.client_id.as_ref().map(|s| s.as_str().to_owned()),
    });

    {
        let mut state = shared.state();
        let now = tokio::time::Instant::now();
        state.groups.tick(now);
        if state.tick_transactions(now) {
            drop(state);
            shared.notify_data();
        }
    }
    let triggered = shared.faults().take(broker_id, api_key);
    if let Some(delay) = triggered.and_then(|t| t.delay) {
        tokio::time::sleep(delay).await;
    }
    let action = triggered.map_or(FaultAction::Respond, |t| t.action);
    let ctx = Ctx {
        shared,
        broker_id,
        version,
        client_id: header.client_id.as_ref().map_or("", |s| s.as_str()),
    };
    let silent = matches!(&request, RequestKind::Produce(p) if p.acks == 0);
    let response = match action {
        FaultAction::DropConnection => return Outcome::Close,
        FaultAction::Error(code) => Some(error_response(&ctx, &request, code)),
        FaultAction::Respond | FaultAction::DropAfterApply => dispatch(&ctx, request).await,
    };
    if action == FaultAction::DropAfterApply {
        return Outcome::Close;
    }
    match response {
        Some(_) if silent => Outcome::Silent,
        Some(response) => encode_response(header.correlation_id, api_key, version, response),
        None => Outcome::Close,
    }
}

pub(crate) fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: ResponseKind,
) -> Outcome {
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    if let Err(e) = header.encode(&mut buf, header_version) {
        eprintln!("fake kafka: cannot encode {api_key:?} v{version} response header: {e}");
        return Outcome::Close;
    }
    if let Err(e) = response.encode(&mut buf, version) {
        eprintln!("fake kafka: cannot encode {api_key:?} v{version} response: {e}");
        return Outcome::Close;
    }
    Outcome::Respond(buf.freeze())
}

async fn dispatch(ctx: &Ctx<'_>, request: RequestKind) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r)),
        RequestKind::Produce(r) => ResponseKind::Produce(produce::handle(ctx, r)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r)),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, r))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(ctx, r)),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r))
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(groups::offset_fetch(ctx, r)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(groups::offset_commit(ctx, r)),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(membership::join_group(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(membership::sync_group(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(membership::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(membership::leave_group(ctx, r)),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(ctx, r))
        }
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r)),
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(ctx, r)),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(ctx, r))
        }
        _ => return None,
    })
}

/// The response to `request` when a fault injects error `code` instead of
/// handling it: the request's shape echoed with `code` in every error field.
fn error_response(ctx: &Ctx<'_>, request: &RequestKind, code: i16) -> ResponseKind {
    match request {
        RequestKind::ApiVersions(_) => {
            let table = ctx
                .shared
                .state()
                .broker(ctx.broker_id)
                .map(|b| b.versions.clone())
                .unwrap_or_default();
            ResponseKind::ApiVersions(api_versions::response(&table, code))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::error(ctx, r, code)),
        RequestKind::Produce(r) => ResponseKind::Produce(produce::error(ctx, r, code)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::error(ctx, r, code)),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::error(ctx, r, code)),
        RequestKind::InitProducerId(_) => {
            ResponseKind::InitProducerId(init_producer_id::error(code))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::error(ctx, r, code))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator_error(ctx, r, code))
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch_error(ctx, r, code))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit_error(ctx, r, code))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(membership::join_error(ctx, r, code)),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(membership::sync_error(ctx, r, code)),
        RequestKind::Heartbeat(_) => ResponseKind::Heartbeat(membership::heartbeat_error(code)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(membership::leave_error(ctx, r, code))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions_error(r, code))
        }
        RequestKind::AddOffsetsToTxn(_) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets_error(code))
        }
        RequestKind::EndTxn(_) => ResponseKind::EndTxn(txn::end_txn_error(code)),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit_error(r, code))
        }
        // Unreachable in practice: only implemented APIs are advertised and decoded.
        _ => ResponseKind::ApiVersions(api_versions::response(&Default::default(), code)),
    }
}
