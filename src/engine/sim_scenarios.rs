//! Fault scenarios of the idempotent producer (numbers from the fault
//! scenario list), each replayed exactly on the simulation, and a property
//! test over random sequences of sends and faults.

use std::time::Duration;

use proptest::prelude::*;

use super::sim::{Outcome, Sim, TOPIC, config};
use crate::error::ErrorKind;
use crate::protocol::KafkaCode;

/// A simulation whose producer has its id and its metadata.
fn ready_sim(brokers: i32, partitions: usize) -> Sim {
    let mut sim = Sim::new(config(), brokers, partitions);
    sim.settle(Duration::from_secs(1));
    assert!(sim.initialised, "the producer got its id");
    sim
}

fn assert_clean(sim: &Sim) {
    let problems = sim.check();
    assert!(problems.is_empty(), "{problems:#?}");
}

fn leader(sim: &Sim, partition: usize) -> i32 {
    sim.cluster.leaders[partition].0
}

fn queue_fault(sim: &mut Sim, node: i32, code: KafkaCode, times: usize) {
    let q = sim.cluster.produce_faults.entry(node).or_default();
    for _ in 0..times {
        q.push_back(code);
    }
}

#[test]
fn fault_02_leader_moves_with_five_in_flight_retries_in_order_without_bump() {
    let mut sim = ready_sim(3, 1);
    let node = leader(&sim, 0);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(1));
    // The first request fails NOT_LEADER; the ones behind it then reach
    // the broker out of sequence.
    queue_fault(&mut sim, node, KafkaCode::NOT_LEADER_OR_FOLLOWER, 1);
    sim.send(0, 250);
    assert!(
        sim.in_flight_batches(node).len() >= 4,
        "several requests in flight"
    );
    assert!(
        sim.busy_nodes().contains(&node),
        "requests are in flight to the leader"
    );
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (260, 0));
    assert_eq!(sim.engine.identity_changes(), 0, "no epoch bump");
}

#[test]
fn fault_05_broker_dies_with_requests_in_flight() {
    let mut sim = ready_sim(3, 3);
    for p in 0..3 {
        sim.send(p, 60);
    }
    let node = leader(&sim, 0);
    // Some reached the broker, some did not; none is answered.
    sim.break_connection(node, |i| i % 2 == 0);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (180, 0));
    assert!(sim.fatal.is_none());
}

#[test]
fn fault_06_written_but_response_lost_is_delivered_once() {
    let mut sim = ready_sim(1, 1);
    sim.send(0, 10);
    sim.advance(Duration::from_millis(5));
    assert!(sim.answer(1, true), "a request was waiting");
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (10, 0));
    assert!(
        sim.cluster.duplicates >= 1,
        "the retry was answered as a duplicate"
    );
}

#[test]
fn fault_07_ambiguous_errors_retry_and_count_as_possibly_written() {
    let mut sim = ready_sim(1, 1);
    queue_fault(&mut sim, 1, KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND, 1);
    queue_fault(&mut sim, 1, KafkaCode::REQUEST_TIMED_OUT, 1);
    queue_fault(&mut sim, 1, KafkaCode::NOT_ENOUGH_REPLICAS, 1);
    sim.send(0, 30);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (30, 0));
    assert!(
        sim.cluster.duplicates >= 1,
        "the write before the error was not repeated"
    );
    assert!(sim.engine.stats(false).retries >= 3);
}

#[test]
fn fault_08_out_of_order_completions_across_connections_keep_order() {
    let mut sim = ready_sim(2, 2);
    let (a, b) = (leader(&sim, 0), leader(&sim, 1));
    assert_ne!(a, b);
    queue_fault(&mut sim, a, KafkaCode::NOT_LEADER_OR_FOLLOWER, 1);
    sim.send(0, 40);
    sim.send(1, 40);
    sim.advance(Duration::from_millis(5));
    // The second broker answers first; the first fails its head request.
    while sim.answer(b, false) {}
    sim.answer(a, false);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (80, 0));
}

#[test]
fn fault_09_a_real_gap_fails_the_batch_and_bumps_the_epoch() {
    let mut sim = ready_sim(1, 1);
    queue_fault(&mut sim, 1, KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER, 1);
    sim.send(0, 5);
    sim.settle(Duration::from_secs(10));
    sim.send(0, 5);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    let failed: Vec<&Outcome> = sim
        .outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Failed { .. }))
        .collect();
    assert!(!failed.is_empty(), "the refused batch failed");
    assert!(failed.iter().all(|o| matches!(
        o,
        Outcome::Failed {
            possibly_persisted: false,
            kind: ErrorKind::Broker(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        }
    )));
    assert_eq!(sim.engine.identity_changes(), 1, "one epoch bump");
    let (_, failed) = sim.tally();
    assert_eq!(
        sim.cluster.logs[0].len(),
        10 - failed,
        "the rest was written once"
    );
}

#[test]
fn fault_10_unknown_producer_id_after_state_expiry_bumps_and_resends() {
    let mut sim = ready_sim(1, 2);
    sim.send(0, 20);
    sim.send(1, 20);
    sim.settle(Duration::from_secs(10));
    sim.cluster.expire_producers(0);
    sim.send(0, 20);
    sim.send(1, 20);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (80, 0));
    assert_eq!(sim.engine.identity_changes(), 1);
    let epochs: Vec<i16> = sim.cluster.logs[0].iter().map(|s| s.epoch).collect();
    assert_eq!(epochs.first(), Some(&0));
    assert_eq!(
        epochs.last(),
        Some(&1),
        "later records under the bumped epoch"
    );
}

#[test]
fn fault_10_unknown_producer_id_after_retention_bumps_and_resends() {
    let mut sim = ready_sim(1, 1);
    sim.send(0, 20);
    sim.settle(Duration::from_secs(10));
    sim.cluster.delete_records(0);
    sim.send(0, 20);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (40, 0));
    assert_eq!(sim.engine.identity_changes(), 1);
}

#[test]
fn fault_11_invalid_producer_epoch_takes_a_fresh_id_and_resends() {
    let mut sim = ready_sim(1, 1);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(10));
    let before = sim.engine.identity().unwrap();
    queue_fault(&mut sim, 1, KafkaCode::INVALID_PRODUCER_EPOCH, 1);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (20, 0));
    let after = sim.engine.identity().unwrap();
    assert_ne!(after.producer_id, before.producer_id, "a fresh producer id");
}

#[test]
fn fault_12_epoch_exhaustion_gets_a_new_producer_id() {
    let mut sim = Sim::new(config(), 1, 1);
    sim.cluster.first_epoch = i16::MAX - 1;
    sim.settle(Duration::from_secs(1));
    let first = sim.engine.identity().unwrap();
    assert_eq!(first.epoch, i16::MAX - 1);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(10));
    sim.cluster.first_epoch = 0;
    sim.cluster.expire_producers(0);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (20, 0));
    let now = sim.engine.identity().unwrap();
    assert_ne!(now.producer_id, first.producer_id);
    assert_eq!(now.epoch, 0);
    let last = sim.cluster.logs[0].last().unwrap();
    assert_eq!(
        last.producer_id, now.producer_id,
        "re-stamped under the new id"
    );
}

#[test]
fn fault_13_sequences_wrap_from_max_to_zero() {
    let mut sim = ready_sim(1, 1);
    let id = sim.engine.identity().unwrap();
    // Partition state as if this producer had written up to i32::MAX - 3.
    sim.send(0, 1);
    sim.settle(Duration::from_secs(1));
    sim.engine.set_next_sequence(TOPIC, 0, i32::MAX - 2);
    sim.cluster
        .seed_producer(0, id.producer_id, id.epoch, i32::MAX - 3);
    sim.send(0, 60);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (61, 0));
    assert_eq!(sim.engine.identity_changes(), 0, "wrapping is not an error");
}

#[test]
fn fault_15_and_17_an_in_flight_batch_expires_and_its_late_answer_resolves_it() {
    let mut cfg = config();
    cfg.delivery_timeout = Duration::from_secs(2);
    let mut sim = Sim::new(cfg, 1, 1);
    sim.settle(Duration::from_secs(1));
    sim.send(0, 5);
    sim.advance(Duration::from_millis(5));
    assert!(sim.busy_nodes().contains(&1));
    sim.advance(Duration::from_secs(3));
    assert!(sim.outcomes.values().all(|o| matches!(
        o,
        Outcome::Failed {
            possibly_persisted: true,
            kind: ErrorKind::DeliveryTimeout
        }
    )));
    assert_eq!(sim.outcomes.len(), 5);
    // The late answer is a success: no resurrection, no new epoch.
    sim.answer(1, false);
    assert_eq!(sim.outcomes.len(), 5);
    sim.send(0, 5);
    sim.settle(Duration::from_secs(5));
    assert_clean(&sim);
    assert_eq!(sim.engine.identity_changes(), 0);
    assert_eq!(sim.cluster.logs[0].len(), 10);
}

/// Scenario 16: bytes handed to the network are never changed under it. A
/// batch is re-stamped for its retry (here under a new epoch) while the
/// first attempt's bytes are still held, as a connection writing them
/// would hold them: those keep their old stamp and a valid CRC.
#[test]
fn fault_16_restamping_never_touches_bytes_still_being_written() {
    let mut sim = ready_sim(1, 1);
    sim.send(0, 5);
    sim.advance(Duration::from_millis(5));
    let first_attempt = sim.in_flight_batches(1);
    assert_eq!(first_attempt.len(), 1);
    let before = stamp_of(&first_attempt[0]);
    // The attempt is lost unwritten; the retry meets UNKNOWN_PRODUCER_ID,
    // so the batch goes out again under a new epoch.
    sim.break_connection(1, |_| false);
    queue_fault(&mut sim, 1, KafkaCode::UNKNOWN_PRODUCER_ID, 1);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.engine.identity_changes(), 1);
    assert_eq!(
        stamp_of(&first_attempt[0]),
        before,
        "the held bytes kept their stamp and CRC"
    );
    assert_eq!(
        sim.cluster.logs[0].last().map(|s| s.epoch),
        Some(before.0 + 1)
    );
}

/// (epoch, base sequence) of a batch, after checking its CRC.
fn stamp_of(bytes: &bytes::Bytes) -> (i16, i32) {
    let batch = crate::record_batch::BatchReader::new(bytes)
        .next()
        .unwrap()
        .unwrap();
    let h = batch.header();
    (h.producer_epoch, h.base_sequence)
}

#[test]
fn fault_18_message_too_large_splits_and_resends_in_order() {
    let mut sim = ready_sim(1, 1);
    sim.send(0, 10);
    sim.settle(Duration::from_secs(1));
    // Three refusals: the batch halves, then both halves halve again.
    queue_fault(&mut sim, 1, KafkaCode::MESSAGE_TOO_LARGE, 3);
    sim.send(0, 40);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (50, 0));
    assert_eq!(
        sim.engine.identity_changes(),
        0,
        "the halves kept the sequences"
    );
    assert!(
        sim.engine.stats(false).batches_sent >= 4,
        "the refused batch went out in parts"
    );
}

/// A single record the broker finds too large cannot be split: it fails.
#[test]
fn fault_18_a_single_record_too_large_fails() {
    let mut sim = ready_sim(1, 1);
    queue_fault(&mut sim, 1, KafkaCode::MESSAGE_TOO_LARGE, 1);
    sim.send(0, 1);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    assert!(matches!(
        sim.outcomes.values().next(),
        Some(Outcome::Failed {
            kind: ErrorKind::Broker(KafkaCode::MESSAGE_TOO_LARGE),
            possibly_persisted: false
        })
    ));
}

#[test]
fn fault_19_a_permanent_error_fails_exactly_that_batch_and_resequences_the_rest() {
    let mut sim = ready_sim(1, 1);
    queue_fault(&mut sim, 1, KafkaCode::INVALID_RECORD, 1);
    sim.send(0, 100);
    sim.settle(Duration::from_secs(10));
    assert_clean(&sim);
    let failed: Vec<u64> = sim
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(!failed.is_empty());
    assert!(sim.outcomes.iter().all(|(_, o)| match o {
        Outcome::Failed {
            kind,
            possibly_persisted,
        } => *kind == ErrorKind::Broker(KafkaCode::INVALID_RECORD) && !possibly_persisted,
        Outcome::Delivered { .. } => true,
    }));
    // Exactly one batch failed: its tokens are consecutive.
    assert_eq!(
        failed.last().unwrap() - failed.first().unwrap() + 1,
        failed.len() as u64
    );
    assert_eq!(sim.cluster.logs[0].len(), 100 - failed.len());
}

#[test]
fn fault_20_cluster_authorization_failure_is_fatal() {
    let mut sim = ready_sim(1, 1);
    queue_fault(&mut sim, 1, KafkaCode::CLUSTER_AUTHORIZATION_FAILED, 1);
    sim.send(0, 100);
    sim.settle(Duration::from_secs(10));
    let fatal = sim.fatal.as_ref().expect("a fatal error");
    assert!(fatal.is_fatal());
    assert_eq!(sim.outcomes.len(), 100, "every record has its outcome");
    // Later records fail at once.
    sim.send(0, 3);
    assert_eq!(sim.outcomes.len(), 103);
    assert!(sim.busy_nodes().is_empty(), "nothing more goes out");
    assert_clean(&sim);
}

#[test]
fn fault_22_a_topic_missing_from_metadata_keeps_its_producer_state() {
    let mut sim = ready_sim(2, 2);
    sim.send(0, 20);
    sim.settle(Duration::from_secs(10));
    sim.cluster.topic_hidden = true;
    sim.force_metadata_refresh();
    sim.send(0, 20);
    sim.advance(Duration::from_secs(1));
    sim.cluster.topic_hidden = false;
    sim.settle(Duration::from_secs(30));
    assert_clean(&sim);
    assert_eq!(sim.tally(), (40, 0));
    assert_eq!(sim.engine.identity_changes(), 0, "sequences carried on");
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    Send { partition: usize, n: usize },
    Answer { node: i32, lose: bool },
    Break { node: i32, written_mask: u8 },
    MoveLeader { partition: usize },
    Fault { node: i32, code: u8 },
    ExpireProducers { partition: usize },
    Wait { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 1usize..40).prop_map(|(partition, n)| Op::Send { partition, n }),
        6 => (1i32..=3, prop::bool::weighted(0.1)).prop_map(|(node, lose)| Op::Answer { node, lose }),
        1 => (1i32..=3, any::<u8>()).prop_map(|(node, written_mask)| Op::Break { node, written_mask }),
        1 => (0usize..3).prop_map(|partition| Op::MoveLeader { partition }),
        1 => (1i32..=3, 0u8..6).prop_map(|(node, code)| Op::Fault { node, code }),
        1 => (0usize..3).prop_map(|partition| Op::ExpireProducers { partition }),
        2 => (1u64..300).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn fault_code(i: u8) -> KafkaCode {
    match i {
        0 => KafkaCode::NOT_LEADER_OR_FOLLOWER,
        1 => KafkaCode::NOT_ENOUGH_REPLICAS,
        2 => KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        3 => KafkaCode::REQUEST_TIMED_OUT,
        4 => KafkaCode::KAFKA_STORAGE_ERROR,
        _ => KafkaCode::UNKNOWN_SERVER_ERROR,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// Random sends, answers in any order across connections, broken
    /// connections (written or not), leader moves, broker errors and lost
    /// producer state: no record lost, duplicated, reordered or phantom,
    /// every record reported exactly once, and the buffer back to empty.
    #[test]
    fn random_faults_never_lose_duplicate_or_reorder(ops in prop::collection::vec(op(), 1..120)) {
        let mut sim = ready_sim(3, 3);
        for op in ops {
            match op {
                Op::Send { partition, n } => sim.send(partition, n),
                Op::Answer { node, lose } => { sim.answer(node, lose); }
                Op::Break { node, written_mask } => {
                    sim.break_connection(node, |i| written_mask & (1 << (i % 8)) != 0);
                }
                Op::MoveLeader { partition } => sim.cluster.move_leader(partition),
                Op::Fault { node, code } => {
                    sim.cluster.produce_faults.entry(node).or_default().push_back(fault_code(code));
                }
                // A broker forgets a producer only after long silence
                // (`producer.id.expiration.ms`): forgetting it while a write
                // of unknown outcome is pending would let its retry in twice,
                // which no client can prevent, so it happens only when idle.
                Op::ExpireProducers { partition } if sim.engine.is_idle() => {
                    sim.cluster.expire_producers(partition);
                }
                Op::ExpireProducers { .. } => {}
                Op::Wait { ms } => sim.advance(Duration::from_millis(ms)),
            }
        }
        sim.settle(Duration::from_secs(180));
        let problems = sim.check();
        prop_assert!(problems.is_empty(), "{:#?}", problems);
        prop_assert!(sim.engine.is_idle(), "every record settled");
        prop_assert!(sim.fatal.is_none());
        // Every fault here is survivable within the delivery timeout except
        // UNKNOWN_SERVER_ERROR, which fails exactly its batch (scenario 19).
        for outcome in sim.outcomes.values() {
            // (`check` has verified that those reported not persisted are
            // absent from the log.)
            if let Outcome::Failed { kind, .. } = outcome {
                prop_assert_eq!(kind, &ErrorKind::Broker(KafkaCode::UNKNOWN_SERVER_ERROR));
            }
        }
    }
}
