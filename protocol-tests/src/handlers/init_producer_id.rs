//! InitProducerId: allocates producer ids for idempotent producers.
//!
//! Without a transactional id each call gets a fresh id at epoch 0, except a
//! call naming its current id and epoch (KIP-360), which bumps the epoch. With
//! a transactional id the same id is kept and its epoch bumped on each call;
//! the transaction coordinator itself is not implemented yet.

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use super::Ctx;

/// Answers an InitProducerId request.
pub(super) fn handle(ctx: &Ctx<'_>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut state = ctx.shared.state();
    let (id, epoch) = match &request.transactional_id {
        Some(txn) => {
            let txn = txn.0.as_str().to_owned();
            if let Some((id, epoch)) = state.transactional_ids.get(&txn).copied() {
                let bumped = (id, epoch.wrapping_add(1).max(0));
                state.transactional_ids.insert(txn, bumped);
                bumped
            } else {
                let id = state.allocate_producer_id();
                state.transactional_ids.insert(txn, (id, 0));
                (id, 0)
            }
        }
        None if request.producer_id.0 >= 0 && request.producer_epoch >= 0 => {
            if request.producer_epoch == i16::MAX - 1 {
                (state.allocate_producer_id(), 0)
            } else {
                (request.producer_id.0, request.producer_epoch + 1)
            }
        }
        None => (state.allocate_producer_id(), 0),
    };
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}

/// The InitProducerId response for an injected error.
pub(super) fn error(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
