//! Produce: validates each partition's record batch, checks leadership and
//! idempotent producer sequences, appends, and returns base offsets.
//!
//! A transactional batch is checked against the transaction coordinator's
//! state first, as a Kafka 3.6+ broker verifies it (KIP-890 part 1): the
//! request's transactional id must map to the batch's producer id
//! (`INVALID_PRODUCER_ID_MAPPING` otherwise), at the batch's epoch
//! (`INVALID_PRODUCER_EPOCH` otherwise, so a fenced zombie writes nothing),
//! and the partition must have been added to the ongoing transaction
//! (`INVALID_TXN_STATE` otherwise).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest};

use super::{Ctx, sb};
use crate::log::{AppendOutcome, BatchHeader, validate_batch};
use crate::state::ClusterState;
use crate::txn::TransactionStatus;

fn partition_error(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Resolves the topic name of one produce entry (by id from v13).
fn topic_name(
    ctx: &Ctx<'_>,
    state: &ClusterState,
    topic: &kafka_protocol::messages::produce_request::TopicProduceData,
) -> Option<String> {
    if ctx.version >= 13 {
        state.topic_name_by_id(topic.topic_id).map(str::to_owned)
    } else {
        Some(topic.name.0.as_str().to_owned())
    }
}

/// One topic's answers. Kafka builds its answer from hash maps, so its
/// order is not the request's; the fake does not keep the request's order
/// either: a topic's partitions are answered by index (and topics by name,
/// see [`in_kafkas_order`]), so clients that match answers to batches by
/// position are caught.
fn topic_response(
    ctx: &Ctx<'_>,
    topic: &kafka_protocol::messages::produce_request::TopicProduceData,
    mut partitions: Vec<PartitionProduceResponse>,
) -> TopicProduceResponse {
    partitions.sort_by_key(|p| p.index);
    let mut response = TopicProduceResponse::default().with_partition_responses(partitions);
    if ctx.version >= 13 {
        response.topic_id = topic.topic_id;
    } else {
        response.name = topic.name.clone();
    }
    response
}

/// The topics of an answer by name (before version 13, which names them by
/// id), not in the request's order (see [`topic_response`]).
fn in_kafkas_order(mut responses: Vec<TopicProduceResponse>) -> Vec<TopicProduceResponse> {
    responses.sort_by(|a, b| a.name.0.as_str().cmp(b.name.0.as_str()));
    responses
}

/// Checks a transactional batch against the coordinator's state.
fn check_transactional(
    state: &ClusterState,
    txn: Option<&str>,
    header: &BatchHeader,
    topic: &str,
    partition: i32,
) -> Result<(), i16> {
    let mapping = ResponseError::InvalidProducerIdMapping.code();
    let txn = txn.filter(|t| !t.is_empty()).ok_or(mapping)?;
    state.check_txn_producer(
        txn,
        header.producer_id,
        header.producer_epoch,
        ResponseError::InvalidProducerEpoch.code(),
    )?;
    let added = state.transactions.get(txn).is_some_and(|t| {
        t.status == TransactionStatus::Ongoing
            && t.partitions
                .iter()
                .any(|(tp, p)| tp == topic && *p == partition)
    });
    if added {
        Ok(())
    } else {
        Err(ResponseError::InvalidTxnState.code())
    }
}

/// Handles a Produce request. Always returns a response; the caller drops it
/// for acks=0.
pub(super) fn handle(ctx: &Ctx<'_>, request: ProduceRequest) -> ProduceResponse {
    let v = ctx.version;
    let mut appended = false;
    // KIP-951: leaders named in NOT_LEADER_OR_FOLLOWER answers, whose
    // endpoints go in the response's `node_endpoints`.
    let mut hinted_leaders: Vec<i32> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let node_endpoints: Vec<NodeEndpoint>;
    {
        let mut state = ctx.shared.state();
        let rules = state.producer_state_rules;
        for topic in &request.topic_data {
            let name = topic_name(ctx, &state, topic);
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for data in &topic.partition_data {
                let index = data.index;
                if !matches!(request.acks, -1..=1) {
                    partitions.push(partition_error(
                        index,
                        ResponseError::InvalidRequiredAcks.code(),
                    ));
                    continue;
                }
                let Some(name) = name.as_deref() else {
                    partitions.push(partition_error(index, ResponseError::UnknownTopicId.code()));
                    continue;
                };
                let Some(partition) = state.partition_mut(name, index) else {
                    partitions.push(partition_error(
                        index,
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                };
                if partition.leader != ctx.broker_id {
                    let mut response =
                        partition_error(index, ResponseError::NotLeaderOrFollower.code());
                    if v >= 10 {
                        response.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(partition.leader))
                            .with_leader_epoch(partition.leader_epoch);
                        if !hinted_leaders.contains(&partition.leader) {
                            hinted_leaders.push(partition.leader);
                        }
                    }
                    partitions.push(response);
                    continue;
                }
                let Some(records) = &data.records else {
                    partitions.push(partition_error(index, ResponseError::InvalidRecord.code()));
                    continue;
                };
                let batch = match validate_batch(records) {
                    Ok(batch) => batch,
                    Err(e) => {
                        let mut response = partition_error(index, e.code);
                        if v >= 8 {
                            response.error_message = Some(sb(&e.message));
                        }
                        partitions.push(response);
                        continue;
                    }
                };
                if batch.header.is_transactional()
                    && let Err(code) = check_transactional(
                        &state,
                        request.transactional_id.as_ref().map(|t| t.0.as_str()),
                        &batch.header,
                        name,
                        index,
                    )
                {
                    partitions.push(partition_error(index, code));
                    continue;
                }
                let Some(partition) = state.partition_mut(name, index) else {
                    continue;
                };
                let epoch = partition.leader_epoch;
                match partition.log.append(batch, epoch, rules) {
                    Ok(AppendOutcome::Appended(base)) | Ok(AppendOutcome::Duplicate(base)) => {
                        appended = true;
                        partitions.push(
                            PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(base)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(partition.log.log_start_offset()),
                        );
                    }
                    // Like Kafka, producer-state errors carry the log start
                    // offset: clients compare it with their last acknowledged
                    // offset to tell retention from a lost write.
                    Err(code) => partitions.push(
                        partition_error(index, code)
                            .with_log_start_offset(partition.log.log_start_offset()),
                    ),
                }
            }
            responses.push(topic_response(ctx, topic, partitions));
        }
        node_endpoints = hinted_leaders
            .iter()
            .filter_map(|id| state.broker(*id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(sb(&b.host))
                    .with_port(i32::from(b.port))
            })
            .collect();
    }
    if appended {
        ctx.shared.notify_data();
    }
    ProduceResponse::default()
        .with_responses(in_kafkas_order(responses))
        .with_node_endpoints(node_endpoints)
}

/// The Produce response for an injected error: every partition carries `code`.
pub(super) fn error(ctx: &Ctx<'_>, request: &ProduceRequest, code: i16) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| partition_error(p.index, code))
                .collect();
            topic_response(ctx, topic, partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(in_kafkas_order(responses))
}
