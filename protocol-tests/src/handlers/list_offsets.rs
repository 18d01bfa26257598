//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.
//! Latest is the last stable offset for read_committed requests (v2+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use super::Ctx;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

fn partition_error(index: i32, code: i16) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_timestamp(-1)
        .with_offset(-1)
}

/// Answers a ListOffsets request.
pub(super) fn handle(ctx: &Ctx<'_>, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let state = ctx.shared.state();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let index = p.partition_index;
                    let Some(part) = state.partition(name, index) else {
                        return partition_error(
                            index,
                            ResponseError::UnknownTopicOrPartition.code(),
                        );
                    };
                    if part.leader != ctx.broker_id {
                        return partition_error(index, ResponseError::NotLeaderOrFollower.code());
                    }
                    if ctx.version >= 4 && p.current_leader_epoch >= 0 {
                        if p.current_leader_epoch < part.leader_epoch {
                            return partition_error(index, ResponseError::FencedLeaderEpoch.code());
                        }
                        if p.current_leader_epoch > part.leader_epoch {
                            return partition_error(
                                index,
                                ResponseError::UnknownLeaderEpoch.code(),
                            );
                        }
                    }
                    let log = &part.log;
                    let (offset, timestamp) = match p.timestamp {
                        LATEST if ctx.version >= 2 && request.isolation_level == 1 => {
                            (log.last_stable_offset(), -1)
                        }
                        LATEST | LATEST_TIERED => (log.high_watermark(), -1),
                        EARLIEST | EARLIEST_LOCAL => (log.log_start_offset(), -1),
                        MAX_TIMESTAMP => log.max_timestamp().unwrap_or((-1, -1)),
                        ts if ts >= 0 => log.offset_for_timestamp(ts).unwrap_or((-1, -1)),
                        _ => return partition_error(index, ResponseError::InvalidRequest.code()),
                    };
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(index)
                        .with_offset(offset)
                        .with_timestamp(timestamp);
                    if ctx.version >= 4 {
                        response.leader_epoch = part.leader_epoch;
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The ListOffsets response for an injected error: every partition carries `code`.
pub(super) fn error(
    _ctx: &Ctx<'_>,
    request: &ListOffsetsRequest,
    code: i16,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| partition_error(p.partition_index, code))
                        .collect(),
                )
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
