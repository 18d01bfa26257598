//! Transactional requests on the wire: builds FindCoordinator,
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and
//! EndTxn from the engine's [`TxnRequest`] at the version negotiated with
//! the broker, and turns the answers into [`TxnAnswer`]s. Decisions about
//! what an answer means stay in the engine (`engine::txn`).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::BrokerConnection;
use crate::engine::{CoordinatorKind, TxnAnswer, TxnRequest};
use crate::error::{Error, ErrorKind};
use crate::metadata::BrokerMetadata;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Sends `request` for `transactional_id` on `conn` and decodes the answer.
pub(crate) async fn send(
    conn: &BrokerConnection,
    transactional_id: &str,
    request: TxnRequest,
) -> Result<TxnAnswer, Error> {
    let txn_id = TransactionalId(text(transactional_id));
    match request {
        TxnRequest::FindCoordinator { kind, key } => find_coordinator(conn, kind, &key).await,
        TxnRequest::InitProducerId {
            timeout_ms,
            producer_id,
            epoch,
        } => {
            let (code, producer_id, epoch) =
                init_producer_id(conn, Some(transactional_id), timeout_ms, producer_id, epoch)
                    .await?;
            Ok(TxnAnswer::ProducerId {
                code,
                producer_id,
                epoch,
            })
        }
        TxnRequest::AddPartitions {
            identity,
            partitions,
        } => {
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id)
                .with_v3_and_below_producer_id(ProducerId(identity.producer_id))
                .with_v3_and_below_producer_epoch(identity.epoch)
                .with_v3_and_below_topics(
                    partitions
                        .into_iter()
                        .map(|(topic, partitions)| {
                            AddPartitionsToTxnTopic::default()
                                .with_name(TopicName(text(&topic)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                );
            let response = conn.send(&request).await?;
            let mut results = Vec::new();
            for topic in &response.results_by_topic_v3_and_below {
                for p in &topic.results_by_partition {
                    results.push((
                        topic.name.0.to_string(),
                        p.partition_index,
                        p.partition_error_code,
                    ));
                }
            }
            Ok(TxnAnswer::Partitions(results))
        }
        TxnRequest::AddOffsets { identity, group_id } => {
            let request = AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id)
                .with_producer_id(ProducerId(identity.producer_id))
                .with_producer_epoch(identity.epoch)
                .with_group_id(GroupId(text(&group_id)));
            let response = conn.send(&request).await?;
            Ok(TxnAnswer::Code(response.error_code))
        }
        TxnRequest::TxnOffsetCommit {
            identity,
            group,
            offsets,
        } => {
            let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
            for o in &offsets {
                let partition = TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(o.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(o.metadata.as_deref().map(text));
                match topics.iter_mut().find(|t| t.name.0.as_str() == o.topic) {
                    Some(t) => t.partitions.push(partition),
                    None => topics.push(
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(text(&o.topic)))
                            .with_partitions(vec![partition]),
                    ),
                }
            }
            // Generation, member and instance id (v3+, KIP-447) let the
            // group coordinator fence a zombie consumer's offsets.
            let request = TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id)
                .with_group_id(GroupId(text(&group.group_id)))
                .with_producer_id(ProducerId(identity.producer_id))
                .with_producer_epoch(identity.epoch)
                .with_generation_id(group.generation_id)
                .with_member_id(text(&group.member_id))
                .with_group_instance_id(group.group_instance_id.as_deref().map(text))
                .with_topics(topics);
            let response = conn.send(&request).await?;
            let mut results = Vec::new();
            for topic in &response.topics {
                for p in &topic.partitions {
                    results.push((topic.name.0.to_string(), p.partition_index, p.error_code));
                }
            }
            Ok(TxnAnswer::Partitions(results))
        }
        TxnRequest::EndTxn { identity, commit } => {
            let request = EndTxnRequest::default()
                .with_transactional_id(txn_id)
                .with_producer_id(ProducerId(identity.producer_id))
                .with_producer_epoch(identity.epoch)
                .with_committed(commit);
            let response = conn.send(&request).await?;
            Ok(TxnAnswer::Code(response.error_code))
        }
    }
}

/// InitProducerId, for a transactional producer (`transactional_id`) or an
/// idempotent one (`None`): `(error code, producer id, epoch)`.
/// `producer_id`/`epoch` are -1 for a fresh id, or the identity to bump;
/// bumping needs v3 (KIP-360), so an older broker is asked for a fresh id.
pub(crate) async fn init_producer_id(
    conn: &BrokerConnection,
    transactional_id: Option<&str>,
    timeout_ms: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(i16, i64, i16), Error> {
    let version = match (
        conn.versions().get(ApiKey::InitProducerId),
        transactional_id,
    ) {
        (Some(version), _) => version,
        // Scenario 26: a clear configuration error, at start-up.
        (None, None) => {
            return Err(Error::config(
                "idempotence",
                "the broker does not support InitProducerId (Kafka 0.11 or later is needed); \
                 turn idempotence off to produce to it",
            ));
        }
        (None, Some(_)) => conn.versions().require(ApiKey::InitProducerId)?,
    };
    let (producer_id, epoch) = if version >= 3 {
        (producer_id, epoch)
    } else {
        (-1, -1)
    };
    let request = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|id| TransactionalId(text(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch);
    let response = conn.send(&request).await?;
    Ok((
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    ))
}

async fn find_coordinator(
    conn: &BrokerConnection,
    kind: CoordinatorKind,
    key: &str,
) -> Result<TxnAnswer, Error> {
    let found = lookup_coordinator(conn, kind, key).await?;
    let addr = BrokerMetadata {
        id: found.node,
        host: found.host,
        port: u16::try_from(found.port).unwrap_or(0),
        rack: None,
    }
    .address();
    Ok(TxnAnswer::Coordinator {
        code: found.code,
        node: found.node,
        addr,
    })
}

/// A FindCoordinator answer: the error code and the coordinator.
pub(crate) struct FoundCoordinator {
    pub(crate) code: i16,
    pub(crate) node: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
}

/// FindCoordinator for one key at the negotiated version: the single-key
/// form below v4, the batched `coordinator_keys` form from v4 on.
pub(crate) async fn lookup_coordinator(
    conn: &BrokerConnection,
    kind: CoordinatorKind,
    key: &str,
) -> Result<FoundCoordinator, Error> {
    let version = conn.versions().require(ApiKey::FindCoordinator)?;
    if version == 0 && kind == CoordinatorKind::Transaction {
        return Err(Error::new(
            ErrorKind::UnsupportedApi,
            "the broker's FindCoordinator v0 cannot look up a transaction coordinator",
        ));
    }
    let mut request = FindCoordinatorRequest::default();
    if version >= 1 {
        request.key_type = match kind {
            CoordinatorKind::Group => 0,
            CoordinatorKind::Transaction => 1,
        };
    }
    if version >= 4 {
        request.coordinator_keys = vec![text(key)];
    } else {
        request.key = text(key);
    }
    let response = conn.send(&request).await?;
    if version >= 4 {
        let entry = response.coordinators.first().ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                format!("FindCoordinator for `{key}` answered no coordinator"),
            )
        })?;
        return Ok(FoundCoordinator {
            code: entry.error_code,
            node: entry.node_id.0,
            host: entry.host.to_string(),
            port: entry.port,
        });
    }
    Ok(FoundCoordinator {
        code: response.error_code,
        node: response.node_id.0,
        host: response.host.to_string(),
        port: response.port,
    })
}
