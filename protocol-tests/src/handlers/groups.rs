//! Coordinator discovery and committed offsets: FindCoordinator, OffsetFetch
//! and OffsetCommit.
//!
//! The coordinator of a group is the broker its id hashes to, unless a test
//! moved it; other brokers answer `NOT_COORDINATOR`. Commits are stored as
//! sent and fetches answer offset -1 for partitions without a commit.
//! OffsetCommit checks generation, member id and group instance id against
//! the group's membership as Kafka does (see
//! [`GroupCoordinator::validate_commit`](crate::group_coordinator)): a
//! simple commit (generation -1, no member id) is taken only while the group
//! has no members; membership itself (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) lives in `handlers::membership`. FindCoordinator also locates
//! transaction coordinators (key type 1). OffsetFetch v7+ with
//! `require_stable` answers `UNSTABLE_OFFSET_COMMIT` for partitions with an
//! offset pending in an open transaction.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};

use super::{Ctx, sb, tn};
use crate::group_coordinator::CommittedOffset;
use crate::state::ClusterState;

/// Coordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

fn coordinator_entry(state: &ClusterState, key_type: i8, key: &str, code: i16) -> Coordinator {
    let mut code = code;
    if code == 0
        && (!matches!(key_type, GROUP | TRANSACTION) || key_type == TRANSACTION && key.is_empty())
    {
        code = ResponseError::InvalidRequest.code();
    }
    let mut entry = Coordinator::default()
        .with_key(sb(key))
        .with_error_code(code);
    let broker = if key_type == TRANSACTION {
        state.broker(state.txn_coordinator(key).0)
    } else {
        Some(state.group_coordinator(key))
    };
    if let (0, Some(broker)) = (code, broker) {
        entry.node_id = BrokerId(broker.id);
        entry.host = sb(&broker.host);
        entry.port = i32::from(broker.port);
    } else {
        if code == 0 {
            entry.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
        entry.node_id = BrokerId(-1);
        entry.port = -1;
    }
    entry
}

fn coordinator_response(
    ctx: &Ctx<'_>,
    request: &FindCoordinatorRequest,
    code: i16,
) -> FindCoordinatorResponse {
    let state = ctx.shared.state();
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|k| coordinator_entry(&state, request.key_type, k.as_str(), code))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let entry = coordinator_entry(&state, request.key_type, request.key.as_str(), code);
    let code = entry.error_code;
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(entry.node_id)
        .with_host(entry.host)
        .with_port(entry.port);
    if ctx.version >= 1 && code != 0 {
        response.error_message = Some(sb("coordinator lookup failed"));
    }
    response
}

/// Answers a FindCoordinator request: key type 0 (group) or 1
/// (transactional id, placed by [`ClusterState::txn_coordinator`]).
pub(super) fn find_coordinator(
    ctx: &Ctx<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    coordinator_response(ctx, &request, 0)
}

/// The FindCoordinator response for an injected error.
pub(super) fn find_coordinator_error(
    ctx: &Ctx<'_>,
    request: &FindCoordinatorRequest,
    code: i16,
) -> FindCoordinatorResponse {
    coordinator_response(ctx, request, code)
}

fn is_coordinator(ctx: &Ctx<'_>, state: &ClusterState, group: &str) -> bool {
    state.group_coordinator(group).id == ctx.broker_id
}

/// Committed offsets of one group: `(topic, partitions)` requested, or every
/// committed partition when `topics` is `None`.
/// Committed offsets per topic: `(topic, [(partition, committed)])`.
type CommittedTopics = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

fn committed_for(
    state: &ClusterState,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> CommittedTopics {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|p| {
                        let c = state
                            .committed
                            .get(&(group.to_owned(), topic.clone(), p))
                            .cloned();
                        (p, c)
                    })
                    .collect();
                (topic, parts)
            })
            .collect(),
        None => {
            let mut out: CommittedTopics = Vec::new();
            let mut keys: Vec<_> = state
                .committed
                .iter()
                .filter(|((g, _, _), _)| g == group)
                .collect();
            keys.sort_by(|a, b| (&a.0.1, a.0.2).cmp(&(&b.0.1, b.0.2)));
            for ((_, topic, p), c) in keys {
                match out.last_mut() {
                    Some((t, parts)) if t == topic => parts.push((*p, Some(c.clone()))),
                    _ => out.push((topic.clone(), vec![(*p, Some(c.clone()))])),
                }
            }
            out
        }
    }
}

const UNSTABLE: i16 = ResponseError::UnstableOffsetCommit.code();

fn fetch_partition(
    v: i16,
    p: i32,
    c: Option<&CommittedOffset>,
    code: i16,
) -> OffsetFetchResponsePartition {
    let mut part = OffsetFetchResponsePartition::default()
        .with_partition_index(p)
        .with_error_code(code)
        .with_committed_offset(c.map_or(-1, |c| c.offset))
        .with_metadata(Some(sb(c
            .and_then(|c| c.metadata.as_deref())
            .unwrap_or(""))));
    if v >= 5 {
        part.committed_leader_epoch = c.map_or(-1, |c| c.leader_epoch);
    }
    part
}

fn offset_fetch_response(
    ctx: &Ctx<'_>,
    request: &OffsetFetchRequest,
    code: i16,
) -> OffsetFetchResponse {
    let v = ctx.version;
    let state = ctx.shared.state();
    if v >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let group = g.group_id.0.as_str();
                let mut code = code;
                if code == 0 && !is_coordinator(ctx, &state, group) {
                    code = ResponseError::NotCoordinator.code();
                }
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                        .collect()
                });
                let topics = if code == 0 {
                    committed_for(&state, group, wanted)
                        .into_iter()
                        .map(|(topic, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(tn(&topic))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, c)| {
                                            let unstable = request.require_stable
                                                && state.has_pending_offset(group, &topic, p);
                                            let f = if unstable {
                                                fetch_partition(v, p, None, UNSTABLE)
                                            } else {
                                                fetch_partition(v, p, c.as_ref(), 0)
                                            };
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(f.partition_index)
                                                .with_committed_offset(f.committed_offset)
                                                .with_committed_leader_epoch(
                                                    f.committed_leader_epoch,
                                                )
                                                .with_metadata(f.metadata)
                                                .with_error_code(f.error_code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
                    .with_error_code(code)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group = request.group_id.0.as_str();
    let mut top_code = code;
    if top_code == 0 && !is_coordinator(ctx, &state, group) {
        top_code = ResponseError::NotCoordinator.code();
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
            .collect()
    });
    let topics = if top_code == 0 {
        committed_for(&state, group, wanted)
    } else {
        // Echo the request with the error on every partition (v1 has no top-level code).
        wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
            .collect()
    };
    let partition_code = if v >= 2 { 0 } else { top_code };
    let mut response = OffsetFetchResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(topic, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(tn(&topic))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, c)| {
                                if v >= 7
                                    && top_code == 0
                                    && request.require_stable
                                    && state.has_pending_offset(group, &topic, p)
                                {
                                    fetch_partition(v, p, None, UNSTABLE)
                                } else {
                                    fetch_partition(v, p, c.as_ref(), partition_code)
                                }
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    if v >= 2 {
        response.error_code = top_code;
    }
    response
}

/// Answers an OffsetFetch request.
pub(super) fn offset_fetch(ctx: &Ctx<'_>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    offset_fetch_response(ctx, &request, 0)
}

/// The OffsetFetch response for an injected error.
pub(super) fn offset_fetch_error(
    ctx: &Ctx<'_>,
    request: &OffsetFetchRequest,
    code: i16,
) -> OffsetFetchResponse {
    offset_fetch_response(ctx, request, code)
}

fn commit_response(
    request: &OffsetCommitRequest,
    codes: impl Fn(&TopicName, i32) -> i16,
) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes(&t.name, p.partition_index))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Answers an OffsetCommit request, storing the offsets when the group's
/// membership allows the commit (v1+ carry a generation and member id).
pub(super) fn offset_commit(ctx: &Ctx<'_>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut state = ctx.shared.state();
    let group = request.group_id.0.as_str().to_owned();
    if !is_coordinator(ctx, &state, &group) {
        return commit_response(&request, |_, _| ResponseError::NotCoordinator.code());
    }
    let has_offsets = state.committed.keys().any(|(g, _, _)| *g == group);
    let (generation, member) = if ctx.version >= 1 {
        (
            request.generation_id_or_member_epoch,
            request.member_id.as_str(),
        )
    } else {
        (-1, "")
    };
    let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
    if let Some(code) = state.groups.validate_commit(
        &group,
        generation,
        member,
        instance,
        has_offsets,
        tokio::time::Instant::now(),
    ) {
        return commit_response(&request, |_, _| code);
    }
    for t in &request.topics {
        let topic = t.name.0.as_str();
        for p in &t.partitions {
            if state.partition(topic, p.partition_index).is_some() {
                state.committed.insert(
                    (group.clone(), topic.to_owned(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                    },
                );
            }
        }
    }
    commit_response(&request, |t, p| {
        if state.partition(t.0.as_str(), p).is_some() {
            0
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    })
}

/// The OffsetCommit response for an injected error: every partition carries `code`.
pub(super) fn offset_commit_error(
    _ctx: &Ctx<'_>,
    request: &OffsetCommitRequest,
    code: i16,
) -> OffsetCommitResponse {
    commit_response(request, |_, _| code)
}
