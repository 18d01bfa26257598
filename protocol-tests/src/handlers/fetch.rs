//! Fetch: returns stored batches from the requested offsets.
//!
//! Honours partition and response byte limits roughly (the first batch is
//! always returned whole so consumers make progress), reports the high
//! watermark and log start offset, checks leadership and leader epochs, and
//! long-polls up to `max_wait_ms` when fewer than `min_bytes` are available.
//!
//! With `isolation_level` 1 (read_committed, v4+) it returns only batches
//! below the last stable offset, with the aborted transactions overlapping
//! the returned range; it does not filter aborted records, which is the
//! client's job, exactly as Kafka. Every version from v4 reports the last
//! stable offset.
//!
//! From v7 requests go through the broker's fetch sessions
//! ([`crate::fetch_sessions`]): a full request may open one, an
//! incremental request is answered from the whole session but names only
//! the partitions with news, and session errors are top-level.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProducerId};
use tokio::time::Instant;

use super::Ctx;
use crate::fetch_sessions::{
    Asked, INVALID_SESSION_EPOCH, Plan, SESSION_ID_NOT_FOUND, SessionKey, SessionTopic, Told,
};
use crate::state::ClusterState;

/// Longest a fetch waits for data, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(5);

fn empty_partition(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Default::default()))
}

fn topic_response(
    ctx: &Ctx<'_>,
    topic: &FetchTopic,
    partitions: Vec<PartitionData>,
) -> FetchableTopicResponse {
    let mut response = FetchableTopicResponse::default().with_partitions(partitions);
    if ctx.version >= 13 {
        response.topic_id = topic.topic_id;
    } else {
        response.topic = topic.topic.clone();
    }
    response
}

fn topic_name<'s>(
    ctx: &Ctx<'_>,
    state: &'s ClusterState,
    topic: &'s FetchTopic,
) -> Option<&'s str> {
    if ctx.version >= 13 {
        state.topic_name_by_id(topic.topic_id)
    } else {
        Some(topic.topic.0.as_str())
    }
}

/// Builds the response from the current logs; returns it with the number of
/// record bytes it carries and whether any partition has an error.
fn build(ctx: &Ctx<'_>, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let v = ctx.version;
    let state = ctx.shared.state();
    let budget = usize::try_from(request.max_bytes).unwrap_or(0).max(1);
    let read_committed = v >= 4 && request.isolation_level == 1;
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic_name(ctx, &state, topic);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let index = p.partition;
            let unknown = if v >= 13 {
                ResponseError::UnknownTopicId.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            let Some(part) = name.and_then(|n| state.partition(n, index)) else {
                any_error = true;
                partitions.push(empty_partition(index, unknown));
                continue;
            };
            if part.leader != ctx.broker_id {
                any_error = true;
                let mut data = empty_partition(index, ResponseError::NotLeaderOrFollower.code());
                if v >= 12 {
                    data.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(part.leader))
                        .with_leader_epoch(part.leader_epoch);
                }
                partitions.push(data);
                continue;
            }
            if v >= 9 && p.current_leader_epoch >= 0 && p.current_leader_epoch != part.leader_epoch
            {
                any_error = true;
                let code = if p.current_leader_epoch < part.leader_epoch {
                    ResponseError::FencedLeaderEpoch.code()
                } else {
                    ResponseError::UnknownLeaderEpoch.code()
                };
                partitions.push(empty_partition(index, code));
                continue;
            }
            let log = &part.log;
            let hwm = log.high_watermark();
            let lso = log.last_stable_offset();
            let start = log.log_start_offset();
            let mut data = PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(hwm)
                .with_last_stable_offset(lso)
                .with_log_start_offset(start)
                .with_aborted_transactions(None);
            if p.fetch_offset < start || p.fetch_offset > hwm {
                any_error = true;
                data.error_code = ResponseError::OffsetOutOfRange.code();
                partitions.push(data);
                continue;
            }
            let limit = if read_committed { lso } else { hwm };
            let partition_budget = usize::try_from(p.partition_max_bytes).unwrap_or(0);
            let remaining = budget.saturating_sub(total).min(partition_budget);
            let mut end = p.fetch_offset;
            if p.fetch_offset < limit && (total == 0 || remaining > 0) {
                let (bytes, upto) = log.read_until(p.fetch_offset, remaining, limit);
                total += bytes.len();
                end = upto;
                data.records = Some(bytes);
            }
            if read_committed && v >= 4 {
                data.aborted_transactions = Some(
                    log.aborted_between(p.fetch_offset, end)
                        .into_iter()
                        .map(|(producer_id, first_offset)| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(producer_id))
                                .with_first_offset(first_offset)
                        })
                        .collect(),
                );
            }
            partitions.push(data);
        }
        topics.push(topic_response(ctx, topic, partitions));
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        any_error,
    )
}

/// Handles a Fetch request through the broker's fetch sessions, waiting for
/// data up to `max_wait_ms`.
pub(super) async fn handle(ctx: &Ctx<'_>, request: FetchRequest) -> FetchResponse {
    let listed: Vec<(SessionKey, Asked)> = request
        .topics
        .iter()
        .flat_map(|t| {
            let topic = session_topic(ctx, t);
            t.partitions.iter().map(move |p| {
                (
                    (topic.clone(), p.partition),
                    Asked {
                        fetch_offset: p.fetch_offset,
                        current_leader_epoch: p.current_leader_epoch,
                        log_start_offset: p.log_start_offset,
                        max_bytes: p.partition_max_bytes,
                    },
                )
            })
        })
        .collect();
    let forgotten: Vec<SessionKey> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = if ctx.version >= 13 {
                SessionTopic::Id(t.topic_id)
            } else {
                SessionTopic::Name(t.topic.0.to_string())
            };
            t.partitions.iter().map(move |p| (topic.clone(), *p))
        })
        .collect();
    let plan = ctx.shared.fetch_sessions().plan(
        ctx.broker_id,
        ctx.version,
        request.session_id,
        request.session_epoch,
        &listed,
        &forgotten,
    );
    match plan {
        Plan::Error(code) => FetchResponse::default().with_error_code(code),
        Plan::Full { open } => {
            let mut response = long_poll(ctx, &request).await;
            if open {
                let told = response_told(ctx, &response)
                    .into_iter()
                    .map(|(key, told, _)| (key, told))
                    .collect();
                response.session_id =
                    ctx.shared
                        .fetch_sessions()
                        .open(ctx.broker_id, &listed, &told);
            }
            response
        }
        Plan::Incremental {
            session,
            partitions,
        } => {
            let before: HashMap<SessionKey, Told> = partitions
                .iter()
                .map(|(key, _, told)| (key.clone(), *told))
                .collect();
            let whole = request.clone().with_topics(session_topics(&partitions));
            let mut response = long_poll(ctx, &whole).await;
            let mut told = Vec::new();
            let mut moved = Vec::new();
            for (key, now, records) in response_told(ctx, &response) {
                if records {
                    moved.push(key.clone());
                }
                told.push((key, now));
            }
            // Name only the partitions with news.
            for topic in &mut response.responses {
                let name = response_topic(ctx, topic);
                topic.partitions.retain(|p| {
                    let key = (name.clone(), p.partition_index);
                    let records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                    records || p.error_code != 0 || before.get(&key).copied() != Some(told_of(p))
                });
            }
            response.responses.retain(|t| !t.partitions.is_empty());
            ctx.shared
                .fetch_sessions()
                .answered(ctx.broker_id, session, &told, &moved);
            response.session_id = session;
            response
        }
    }
}

/// How a request names `topic`, as a session key.
fn session_topic(ctx: &Ctx<'_>, topic: &FetchTopic) -> SessionTopic {
    if ctx.version >= 13 {
        SessionTopic::Id(topic.topic_id)
    } else {
        SessionTopic::Name(topic.topic.0.to_string())
    }
}

/// How a response names `topic`, as a session key.
fn response_topic(ctx: &Ctx<'_>, topic: &FetchableTopicResponse) -> SessionTopic {
    if ctx.version >= 13 {
        SessionTopic::Id(topic.topic_id)
    } else {
        SessionTopic::Name(topic.topic.0.to_string())
    }
}

fn told_of(p: &PartitionData) -> Told {
    Told {
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
    }
}

/// Every partition of a response: what it told, and whether it carried
/// records.
fn response_told(ctx: &Ctx<'_>, response: &FetchResponse) -> Vec<(SessionKey, Told, bool)> {
    response
        .responses
        .iter()
        .flat_map(|t| {
            let topic = response_topic(ctx, t);
            t.partitions.iter().map(move |p| {
                (
                    (topic.clone(), p.partition_index),
                    told_of(p),
                    p.records.as_ref().is_some_and(|r| !r.is_empty()),
                )
            })
        })
        .collect()
}

/// A session's partitions as the topics of a request, in session order.
fn session_topics(partitions: &[(SessionKey, Asked, Told)]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, index), asked, _) in partitions {
        let partition = FetchPartition::default()
            .with_partition(*index)
            .with_current_leader_epoch(asked.current_leader_epoch)
            .with_fetch_offset(asked.fetch_offset)
            .with_log_start_offset(asked.log_start_offset)
            .with_partition_max_bytes(asked.max_bytes);
        let same = |t: &FetchTopic| match topic {
            SessionTopic::Name(name) => t.topic.0.as_str() == name,
            SessionTopic::Id(id) => t.topic_id == *id,
        };
        // Consecutive partitions of one topic share an entry; a topic may
        // come back later in session order.
        match topics.last_mut() {
            Some(last) if same(last) => last.partitions.push(partition),
            _ => {
                let mut entry = FetchTopic::default().with_partitions(vec![partition]);
                match topic {
                    SessionTopic::Name(name) => entry.topic = super::tn(name),
                    SessionTopic::Id(id) => entry.topic_id = *id,
                }
                topics.push(entry);
            }
        }
    }
    topics
}

/// Answers `request` from the logs, waiting for data up to `max_wait_ms`
/// (a request for no partition at all is answered at once, as Kafka does).
async fn long_poll(ctx: &Ctx<'_>, request: &FetchRequest) -> FetchResponse {
    if request.topics.iter().all(|t| t.partitions.is_empty()) {
        return build(ctx, request).0;
    }
    let mut changes = ctx.shared.data_changed.subscribe();
    let wait =
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    loop {
        changes.borrow_and_update();
        let (response, bytes, any_error) = build(ctx, request);
        if any_error || bytes >= min_bytes || Instant::now() >= deadline {
            return response;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return build(ctx, request).0,
        }
    }
}

/// The Fetch response for an injected error: every partition carries `code`,
/// or for a session error (`FETCH_SESSION_ID_NOT_FOUND`,
/// `INVALID_FETCH_SESSION_EPOCH`) the response does, as Kafka answers them.
pub(super) fn error(ctx: &Ctx<'_>, request: &FetchRequest, code: i16) -> FetchResponse {
    if code == SESSION_ID_NOT_FOUND || code == INVALID_SESSION_EPOCH {
        return FetchResponse::default().with_error_code(code);
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| empty_partition(p.partition, code))
                .collect();
            topic_response(ctx, topic, partitions)
        })
        .collect();
    FetchResponse::default().with_responses(topics)
}
