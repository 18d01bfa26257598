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

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProducerId};
use tokio::time::Instant;

use super::Ctx;
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

/// Handles a Fetch request, waiting for data up to `max_wait_ms`.
pub(super) async fn handle(ctx: &Ctx<'_>, request: FetchRequest) -> FetchResponse {
    let mut changes = ctx.shared.data_changed.subscribe();
    let wait =
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    loop {
        changes.borrow_and_update();
        let (response, bytes, any_error) = build(ctx, &request);
        if any_error || bytes >= min_bytes || Instant::now() >= deadline {
            return response;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return build(ctx, &request).0,
        }
    }
}

/// The Fetch response for an injected error: every partition carries `code`.
pub(super) fn error(ctx: &Ctx<'_>, request: &FetchRequest, code: i16) -> FetchResponse {
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
