//! InitProducerId: allocates producer ids, as Kafka's transaction coordinator does.
//!
//! - The request names a producer id and epoch (KIP-360, v3+) or neither
//!   (-1/-1); naming only one is `INVALID_REQUEST`.
//! - Without a transactional id every call gets a fresh producer id at epoch
//!   0, whatever id and epoch it names: Kafka "blindly accepts" these, and an
//!   idempotent producer bumps its epoch itself (KIP-360), asking for a new id
//!   only when the epoch is exhausted.
//! - With a transactional id the coordinator keeps one producer per id. A
//!   call naming nothing, or the current id and epoch, bumps the epoch; once
//!   the epoch has reached `i16::MAX - 1` the call rotates to a new producer
//!   id at epoch 0 instead. A call naming the previous epoch (a retried bump)
//!   or the previous id with an exhausted epoch (a retried rotation) gets the
//!   current id and epoch unchanged. Anything else is fenced:
//!   `PRODUCER_FENCED` from v4 (KIP-588), `INVALID_PRODUCER_EPOCH` before.
//!
//! - A transactional id is only served by its transaction coordinator
//!   (`NOT_COORDINATOR` elsewhere), and its `transaction_timeout_ms` must be
//!   positive and at most the cluster's maximum
//!   (`INVALID_TRANSACTION_TIMEOUT`).
//! - If a transaction is in progress for the id, the coordinator bumps the
//!   epoch (fencing the producer that opened it), aborts it (writing abort
//!   markers) and answers `CONCURRENT_TRANSACTIONS`; the retry then bumps the
//!   epoch again and succeeds, as with Kafka. While markers are being
//!   written it answers `CONCURRENT_TRANSACTIONS`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use tokio::time::Instant;

use super::Ctx;
use crate::state::{ClusterState, TransactionalProducer};
use crate::txn::{EndCause, Transaction, TransactionOutcome, TransactionStatus, epoch_exhausted};

/// Answers an InitProducerId request.
pub(super) fn handle(ctx: &Ctx<'_>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let expected = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => return error(ResponseError::InvalidRequest.code()),
        (id, epoch) => Some((id, epoch)),
    };
    let mut state = ctx.shared.state();
    let mut appended = false;
    let result = match &request.transactional_id {
        None => Ok((state.allocate_producer_id(), 0)),
        Some(txn) if txn.0.is_empty() => Err(ResponseError::InvalidRequest),
        Some(txn) => coordinate(
            ctx,
            &mut state,
            txn.0.as_str(),
            request.transaction_timeout_ms,
            expected,
            &mut appended,
        ),
    };
    drop(state);
    if appended {
        ctx.shared.notify_data();
    }
    match result {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(ResponseError::ProducerFenced) if ctx.version < 4 => {
            error(ResponseError::InvalidProducerEpoch.code())
        }
        Err(e) => error(e.code()),
    }
}

/// InitProducerId at the transaction coordinator: placement, timeout and
/// the transaction in progress, then the epoch transition.
fn coordinate(
    ctx: &Ctx<'_>,
    state: &mut ClusterState,
    txn: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    appended: &mut bool,
) -> Result<(i64, i16), ResponseError> {
    if state.txn_coordinator(txn).0 != ctx.broker_id {
        return Err(ResponseError::NotCoordinator);
    }
    if timeout_ms <= 0 || timeout_ms > state.max_transaction_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let status = state.transactions.get(txn).map(|t| t.status);
    match status {
        Some(TransactionStatus::PrepareCommit | TransactionStatus::PrepareAbort) => {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Some(TransactionStatus::Ongoing) => {
            let current = state.transactional_ids.get(txn).copied();
            if let (Some((id, epoch)), Some(current)) = (expected, current)
                && (id != current.producer_id || epoch != current.epoch)
            {
                return Err(ResponseError::ProducerFenced);
            }
            *appended = state.end_transaction(
                txn,
                TransactionOutcome::Abort,
                EndCause::InitProducerId,
                true,
                Instant::now(),
            );
            return Err(ResponseError::ConcurrentTransactions);
        }
        _ => {}
    }
    let result = transactional(state, txn, expected)?;
    let t = state
        .transactions
        .entry(txn.to_owned())
        .or_insert_with(|| Transaction::new(timeout_ms));
    t.status = TransactionStatus::Empty;
    t.timeout_ms = timeout_ms;
    t.started = None;
    Ok(result)
}

/// The coordinator's InitProducerId transition for a transactional id
/// (`TransactionCoordinator.prepareInitProducerIdTransit`, with no
/// transaction in progress).
fn transactional(
    state: &mut ClusterState,
    txn: &str,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    let current = match state.transactional_ids.get(txn).copied() {
        Some(current) => current,
        None => TransactionalProducer {
            producer_id: state.allocate_producer_id(),
            epoch: -1,
            last_producer_id: -1,
            last_epoch: -1,
        },
    };
    if let Some((id, epoch)) = expected {
        let valid = current.epoch == -1
            || id == current.producer_id
            || (id == current.last_producer_id && epoch_exhausted(epoch));
        if !valid {
            return Err(ResponseError::ProducerFenced);
        }
    }
    let next = if epoch_exhausted(current.epoch)
        && expected.is_none_or(|(_, epoch)| epoch == current.epoch)
    {
        TransactionalProducer {
            producer_id: state.allocate_producer_id(),
            epoch: 0,
            last_producer_id: current.producer_id,
            last_epoch: if expected.is_some() {
                current.epoch
            } else {
                -1
            },
        }
    } else {
        match expected {
            None => TransactionalProducer {
                epoch: current.epoch + 1,
                last_epoch: -1,
                ..current
            },
            Some((_, epoch)) if current.epoch == -1 || epoch == current.epoch => {
                TransactionalProducer {
                    epoch: current.epoch + 1,
                    last_epoch: current.epoch,
                    ..current
                }
            }
            Some((_, epoch)) if epoch == current.last_epoch => current,
            Some(_) => return Err(ResponseError::ProducerFenced),
        }
    };
    state.transactional_ids.insert(txn.to_owned(), next);
    Ok((next.producer_id, next.epoch))
}

/// The InitProducerId response for an error (injected or real).
pub(super) fn error(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::state::{BrokerInfo, Shared};

    fn shared() -> Arc<Shared> {
        let broker = BrokerInfo {
            id: 1,
            host: "127.0.0.1".to_owned(),
            port: 9092,
            versions: Default::default(),
        };
        Arc::new(Shared::new(ClusterState::new(vec![broker])))
    }

    fn call(
        shared: &Arc<Shared>,
        version: i16,
        txn: Option<&str>,
        id: i64,
        epoch: i16,
    ) -> (i16, i64, i16) {
        let ctx = Ctx {
            shared,
            broker_id: 1,
            version,
            client_id: "",
        };
        let request = InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let r = handle(&ctx, request);
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    const FENCED: i16 = ResponseError::ProducerFenced.code();
    const INVALID_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();

    #[test]
    fn idempotent_producers_always_get_a_new_id() {
        let s = shared();
        let (code, first, epoch) = call(&s, 5, None, -1, -1);
        assert_eq!((code, epoch), (0, 0));
        // Naming the current id and epoch (KIP-360) still gets a new id:
        // idempotent producers bump their epoch themselves.
        let (code, second, epoch) = call(&s, 5, None, first, 0);
        assert_eq!((code, epoch), (0, 0));
        assert_ne!(second, first);
        let (code, third, _) = call(&s, 5, None, first, i16::MAX - 1);
        assert_eq!(code, 0);
        assert!(third != first && third != second);
        // Only one of id and epoch is an invalid request.
        assert_eq!(
            call(&s, 5, None, first, -1).0,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            call(&s, 5, None, -1, 3).0,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            call(&s, 5, Some(""), -1, -1).0,
            ResponseError::InvalidRequest.code()
        );
    }

    #[test]
    fn transactional_ids_bump_and_fence() {
        let s = shared();
        let (code, id, epoch) = call(&s, 5, Some("tx"), -1, -1);
        assert_eq!((code, epoch), (0, 0));
        // A fresh call (a new producer instance) bumps and fences the old.
        assert_eq!(call(&s, 5, Some("tx"), -1, -1), (0, id, 1));
        // KIP-360: naming the current id and epoch bumps it.
        assert_eq!(call(&s, 5, Some("tx"), id, 1), (0, id, 2));
        // A retry of that bump (naming the previous epoch) changes nothing.
        assert_eq!(call(&s, 5, Some("tx"), id, 1), (0, id, 2));
        // A stale epoch is fenced: PRODUCER_FENCED from v4 (KIP-588),
        // INVALID_PRODUCER_EPOCH before.
        assert_eq!(call(&s, 5, Some("tx"), id, 0).0, FENCED);
        assert_eq!(call(&s, 4, Some("tx"), id, 0).0, FENCED);
        assert_eq!(call(&s, 3, Some("tx"), id, 0).0, INVALID_EPOCH);
        // So is an unknown producer id.
        assert_eq!(call(&s, 5, Some("tx"), id + 100, 2).0, FENCED);
        assert_eq!(call(&s, 3, Some("tx"), id + 100, 2).0, INVALID_EPOCH);
        // An epoch from the future too.
        assert_eq!(call(&s, 5, Some("tx"), id, 9).0, FENCED);
        // Other transactional ids are independent.
        let (code, other, epoch) = call(&s, 5, Some("other"), -1, -1);
        assert_eq!((code, epoch), (0, 0));
        assert_ne!(other, id);
    }

    #[test]
    fn exhausted_epoch_rotates_the_producer_id() {
        let s = shared();
        let (_, id, _) = call(&s, 5, Some("tx"), -1, -1);
        s.state().transactional_ids.insert(
            "tx".to_owned(),
            TransactionalProducer {
                producer_id: id,
                epoch: i16::MAX - 2,
                last_producer_id: -1,
                last_epoch: -1,
            },
        );
        // One last bump is allowed...
        assert_eq!(
            call(&s, 5, Some("tx"), id, i16::MAX - 2),
            (0, id, i16::MAX - 1)
        );
        // ...then the epoch is exhausted: a new id at epoch 0.
        let (code, rotated, epoch) = call(&s, 5, Some("tx"), id, i16::MAX - 1);
        assert_eq!((code, epoch), (0, 0));
        assert_ne!(rotated, id);
        // A retry of the rotation (old id, exhausted epoch) gets the same answer.
        assert_eq!(call(&s, 5, Some("tx"), id, i16::MAX - 1), (0, rotated, 0));
        // The old id with another epoch is fenced.
        assert_eq!(call(&s, 5, Some("tx"), id, 5).0, FENCED);
        // The new id carries on.
        assert_eq!(call(&s, 5, Some("tx"), rotated, 0), (0, rotated, 1));

        // A fresh call at an exhausted epoch rotates too.
        s.state().transactional_ids.get_mut("tx").expect("tx").epoch = i16::MAX - 1;
        let (code, fresh, epoch) = call(&s, 5, Some("tx"), -1, -1);
        assert_eq!((code, epoch), (0, 0));
        assert!(fresh != rotated && fresh != id);
    }
}
