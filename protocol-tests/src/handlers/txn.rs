//! The transactional APIs: AddPartitionsToTxn (v0–v3), AddOffsetsToTxn,
//! EndTxn and TxnOffsetCommit.
//!
//! The first three go to the transaction coordinator of the transactional id
//! (`NOT_COORDINATOR` elsewhere); TxnOffsetCommit goes to the group
//! coordinator. Each checks that the producer id and epoch are the current
//! ones for the transactional id: another producer id (or an unknown
//! transactional id) is `INVALID_PRODUCER_ID_MAPPING`, another epoch is
//! `PRODUCER_FENCED` from the versions KIP-588 added it to
//! (AddPartitionsToTxn v2, AddOffsetsToTxn v2, EndTxn v2, TxnOffsetCommit v3)
//! and `INVALID_PRODUCER_EPOCH` before. While markers are being written the
//! coordinator answers `CONCURRENT_TRANSACTIONS`.
//!
//! EndTxn follows Kafka's transitions: from `Ongoing` it ends the
//! transaction; a retry of the same outcome after completion succeeds, the
//! other outcome is `INVALID_TXN_STATE`; ending a transaction to which
//! nothing was added (`Empty`) is `INVALID_TXN_STATE`, as clients never send
//! it. TxnOffsetCommit stores offsets as pending in the transaction; they
//! reach OffsetFetch only when the transaction commits. It requires the
//! group to have been added with AddOffsetsToTxn (`INVALID_TXN_STATE`
//! otherwise), as a Kafka 3.6+ broker verifies.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::end_txn_response::EndTxnResponse;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, TxnOffsetCommitRequest,
};
use tokio::time::Instant;

use super::Ctx;
use crate::group_coordinator::CommittedOffset;
use crate::state::ClusterState;
use crate::txn::{EndCause, TransactionOutcome, TransactionStatus, fenced_code};

/// The common checks of the coordinator-side APIs.
fn check_coordinator(
    ctx: &Ctx<'_>,
    state: &ClusterState,
    txn: &str,
    producer_id: i64,
    epoch: i16,
    fenced_since: i16,
) -> Result<(), i16> {
    if txn.is_empty() {
        return Err(ResponseError::InvalidRequest.code());
    }
    if state.txn_coordinator(txn).0 != ctx.broker_id {
        return Err(ResponseError::NotCoordinator.code());
    }
    state.check_txn_producer(
        txn,
        producer_id,
        epoch,
        fenced_code(ctx.version, fenced_since),
    )?;
    if state
        .transactions
        .get(txn)
        .is_some_and(|t| t.is_completing())
    {
        return Err(ResponseError::ConcurrentTransactions.code());
    }
    Ok(())
}

fn add_partitions_response(
    request: &AddPartitionsToTxnRequest,
    code: impl Fn(&str, i32) -> i16,
) -> AddPartitionsToTxnResponse {
    let topics = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(t.name.0.as_str(), *p))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

/// Answers an AddPartitionsToTxn request (v0–v3).
pub(super) fn add_partitions(
    ctx: &Ctx<'_>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut state = ctx.shared.state();
    let txn = request.v3_and_below_transactional_id.0.as_str();
    if let Err(code) = check_coordinator(
        ctx,
        &state,
        txn,
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
        2,
    ) {
        return add_partitions_response(&request, |_, _| code);
    }
    let any_unknown = request.v3_and_below_topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| state.partition(t.name.0.as_str(), *p).is_none())
    });
    if any_unknown {
        // All or nothing: the known partitions are not added either.
        return add_partitions_response(&request, |t, p| {
            if state.partition(t, p).is_none() {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    let now = Instant::now();
    if let Some(t) = state.transactions.get_mut(txn) {
        t.make_ongoing(now);
        for topic in &request.v3_and_below_topics {
            for p in &topic.partitions {
                let key = (topic.name.0.as_str().to_owned(), *p);
                if !t.partitions.contains(&key) {
                    t.partitions.push(key);
                }
            }
        }
    }
    add_partitions_response(&request, |_, _| 0)
}

/// The AddPartitionsToTxn response for an injected error.
pub(super) fn add_partitions_error(
    request: &AddPartitionsToTxnRequest,
    code: i16,
) -> AddPartitionsToTxnResponse {
    add_partitions_response(request, |_, _| code)
}

/// Answers an AddOffsetsToTxn request: the group joins the transaction.
pub(super) fn add_offsets(
    ctx: &Ctx<'_>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut state = ctx.shared.state();
    let txn = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    let code = match check_coordinator(
        ctx,
        &state,
        txn,
        request.producer_id.0,
        request.producer_epoch,
        2,
    ) {
        Err(code) => code,
        Ok(()) if group.is_empty() => ResponseError::InvalidGroupId.code(),
        Ok(()) => {
            if let Some(t) = state.transactions.get_mut(txn) {
                t.make_ongoing(Instant::now());
                if !t.groups.iter().any(|g| g == group) {
                    t.groups.push(group.to_owned());
                }
            }
            0
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// The AddOffsetsToTxn response for an injected error.
pub(super) fn add_offsets_error(code: i16) -> AddOffsetsToTxnResponse {
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// Answers an EndTxn request.
pub(super) fn end_txn(ctx: &Ctx<'_>, request: EndTxnRequest) -> EndTxnResponse {
    let mut state = ctx.shared.state();
    let txn = request.transactional_id.0.as_str();
    let commit = request.committed;
    let mut appended = false;
    let code = match check_coordinator(
        ctx,
        &state,
        txn,
        request.producer_id.0,
        request.producer_epoch,
        2,
    ) {
        Err(code) if code == ResponseError::ConcurrentTransactions.code() => {
            // Retrying the same outcome while markers are written is
            // CONCURRENT_TRANSACTIONS; switching outcome is refused.
            let status = state.transactions.get(txn).map(|t| t.status);
            match (status, commit) {
                (Some(TransactionStatus::PrepareCommit), false)
                | (Some(TransactionStatus::PrepareAbort), true) => {
                    ResponseError::InvalidTxnState.code()
                }
                _ => code,
            }
        }
        Err(code) => code,
        Ok(()) => {
            let status = state
                .transactions
                .get(txn)
                .map_or(TransactionStatus::Empty, |t| t.status);
            match (status, commit) {
                (TransactionStatus::Ongoing, _) => {
                    let outcome = if commit {
                        TransactionOutcome::Commit
                    } else {
                        TransactionOutcome::Abort
                    };
                    appended = state.end_transaction(
                        txn,
                        outcome,
                        EndCause::EndTxn,
                        false,
                        Instant::now(),
                    );
                    0
                }
                (TransactionStatus::CompleteCommit, true)
                | (TransactionStatus::CompleteAbort, false) => 0,
                _ => ResponseError::InvalidTxnState.code(),
            }
        }
    };
    drop(state);
    if appended {
        ctx.shared.notify_data();
    }
    end_txn_error(code)
}

/// The EndTxn response for an error code (or 0).
pub(super) fn end_txn_error(code: i16) -> EndTxnResponse {
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1)
}

fn txn_commit_response(
    request: &TxnOffsetCommitRequest,
    code: impl Fn(&str, i32) -> i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(t.name.0.as_str(), p.partition_index))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Answers a TxnOffsetCommit request at the group coordinator: the offsets
/// become pending in the transaction.
pub(super) fn txn_offset_commit(
    ctx: &Ctx<'_>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let mut state = ctx.shared.state();
    let txn = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    let top = if group.is_empty() {
        Err(ResponseError::InvalidGroupId.code())
    } else if state.group_coordinator(group).id != ctx.broker_id {
        Err(ResponseError::NotCoordinator.code())
    } else {
        state
            .check_txn_producer(
                txn,
                request.producer_id.0,
                request.producer_epoch,
                fenced_code(ctx.version, 3),
            )
            .and_then(|()| {
                let in_txn = state.transactions.get(txn).is_some_and(|t| {
                    t.status == TransactionStatus::Ongoing && t.groups.iter().any(|g| g == group)
                });
                if in_txn {
                    Ok(())
                } else {
                    Err(ResponseError::InvalidTxnState.code())
                }
            })
    };
    if let Err(code) = top {
        return txn_commit_response(&request, |_, _| code);
    }
    let mut pending = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if state
                .partition(t.name.0.as_str(), p.partition_index)
                .is_some()
            {
                pending.push((
                    group.to_owned(),
                    t.name.0.as_str().to_owned(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                    },
                ));
            }
        }
    }
    if let Some(t) = state.transactions.get_mut(txn) {
        t.pending_offsets.extend(pending);
    }
    txn_commit_response(&request, |t, p| {
        if state.partition(t, p).is_some() {
            0
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    })
}

/// The TxnOffsetCommit response for an injected error.
pub(super) fn txn_offset_commit_error(
    request: &TxnOffsetCommitRequest,
    code: i16,
) -> TxnOffsetCommitResponse {
    txn_commit_response(request, |_, _| code)
}
