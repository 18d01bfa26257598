//! Consumer group membership: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup.
//!
//! These handlers check that this broker coordinates the group
//! (`NOT_COORDINATOR` otherwise), hand the request to the
//! [`GroupCoordinator`](crate::group_coordinator) state machine under the
//! cluster mutex, and when the answer must wait for the rebalance (a
//! JoinGroup during the join phase, a follower's SyncGroup before the
//! leader's) release the mutex and await it. They also build each
//! response for its version and the responses injected errors produce.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use tokio::time::Instant;

use super::{Ctx, sb};
use crate::group_coordinator::{JoinRequest, JoinResult, Leaving, Reply, SyncResult};

const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();

fn is_coordinator(ctx: &Ctx<'_>, group: &str) -> bool {
    ctx.shared.state().group_coordinator(group).id == ctx.broker_id
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn join_response(version: i16, result: JoinResult) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default()
                .with_member_id(sb(&id))
                .with_metadata(metadata);
            if version >= 5 {
                m.group_instance_id = instance.as_deref().map(sb);
            }
            m
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_leader(sb(&result.leader))
        .with_member_id(sb(&result.member_id))
        .with_members(members);
    // Before v7 the protocol name is not nullable: Kafka sends "".
    response.protocol_name = if version >= 7 {
        result.protocol_name.as_deref().map(sb)
    } else {
        Some(sb(result.protocol_name.as_deref().unwrap_or("")))
    };
    if version >= 7 {
        response.protocol_type = result.protocol_type.as_deref().map(sb);
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response
}

/// Answers a JoinGroup, waiting for the join phase to complete when the
/// member takes part in a rebalance.
pub(super) async fn join_group(ctx: &Ctx<'_>, request: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version;
    let group = request.group_id.0.as_str().to_owned();
    if !is_coordinator(ctx, &group) {
        return join_error(ctx, &request, NOT_COORDINATOR);
    }
    let join = JoinRequest {
        member_id: request.member_id.as_str().to_owned(),
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        client_id: ctx.client_id.to_owned(),
        session_timeout: millis(request.session_timeout_ms),
        // v0 has no rebalance timeout: the session timeout stands in.
        rebalance_timeout: millis(if v >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        }),
        protocol_type: request.protocol_type.as_str().to_owned(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let member_id = join.member_id.clone();
    let reply = ctx.shared.state().groups.join(&group, join, Instant::now());
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult {
            error: ResponseError::RebalanceInProgress.code(),
            generation: -1,
            member_id,
            ..JoinResult::default()
        }),
    };
    join_response(v, result)
}

/// The JoinGroup response for an injected error.
pub(super) fn join_error(
    ctx: &Ctx<'_>,
    request: &JoinGroupRequest,
    code: i16,
) -> JoinGroupResponse {
    join_response(
        ctx.version,
        JoinResult {
            error: code,
            generation: -1,
            member_id: request.member_id.as_str().to_owned(),
            ..JoinResult::default()
        },
    )
}

fn sync_response(version: i16, result: SyncResult) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if version >= 5 {
        response.protocol_type = result.protocol_type.as_deref().map(sb);
        response.protocol_name = result.protocol_name.as_deref().map(sb);
    }
    response
}

/// Answers a SyncGroup; a follower's waits for the leader's assignment.
pub(super) async fn sync_group(ctx: &Ctx<'_>, request: SyncGroupRequest) -> SyncGroupResponse {
    let group = request.group_id.0.as_str().to_owned();
    if !is_coordinator(ctx, &group) {
        return sync_error(ctx, &request, NOT_COORDINATOR);
    }
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .iter()
        .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
        .collect();
    let reply = ctx.shared.state().groups.sync(
        &group,
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        request.protocol_type.as_ref().map(|s| s.as_str()),
        request.protocol_name.as_ref().map(|s| s.as_str()),
        assignments,
        Instant::now(),
    );
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx.await.unwrap_or_else(|_| SyncResult {
            error: ResponseError::RebalanceInProgress.code(),
            ..SyncResult::default()
        }),
    };
    sync_response(ctx.version, result)
}

/// The SyncGroup response for an injected error.
pub(super) fn sync_error(
    ctx: &Ctx<'_>,
    _request: &SyncGroupRequest,
    code: i16,
) -> SyncGroupResponse {
    sync_response(
        ctx.version,
        SyncResult {
            error: code,
            ..SyncResult::default()
        },
    )
}

/// Answers a Heartbeat.
pub(super) fn heartbeat(ctx: &Ctx<'_>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.as_str();
    if !is_coordinator(ctx, group) {
        return heartbeat_error(NOT_COORDINATOR);
    }
    let code = ctx.shared.state().groups.heartbeat(
        group,
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        Instant::now(),
    );
    heartbeat_error(code)
}

/// The Heartbeat response carrying `code`.
pub(super) fn heartbeat_error(code: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code)
}

fn leaving_members(version: i16, request: &LeaveGroupRequest) -> Vec<Leaving> {
    if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_owned(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.as_str().to_owned(), None)]
    }
}

fn leave_response(
    version: i16,
    leaving: &[Leaving],
    top: i16,
    codes: &[i16],
) -> LeaveGroupResponse {
    if version < 3 {
        let code = if top != 0 {
            top
        } else {
            codes.first().copied().unwrap_or(0)
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = if top != 0 {
        Vec::new()
    } else {
        leaving
            .iter()
            .zip(codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(sb(id))
                    .with_group_instance_id(instance.as_deref().map(sb))
                    .with_error_code(*code)
            })
            .collect()
    };
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(members)
}

/// Answers a LeaveGroup: v0-2 one member, v3+ a batch that may name static
/// members by group instance id.
pub(super) fn leave_group(ctx: &Ctx<'_>, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = request.group_id.0.as_str();
    let leaving = leaving_members(ctx.version, &request);
    if !is_coordinator(ctx, group) {
        return leave_response(ctx.version, &leaving, NOT_COORDINATOR, &[]);
    }
    let codes = ctx
        .shared
        .state()
        .groups
        .leave(group, &leaving, Instant::now());
    leave_response(ctx.version, &leaving, 0, &codes)
}

/// The LeaveGroup response for an injected error.
pub(super) fn leave_error(
    ctx: &Ctx<'_>,
    request: &LeaveGroupRequest,
    code: i16,
) -> LeaveGroupResponse {
    let leaving = leaving_members(ctx.version, request);
    leave_response(ctx.version, &leaving, code, &[])
}
