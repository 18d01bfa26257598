//! Transactional fault scenarios (30 to 38 of the fault-scenarios spec)
//! driven through the sans-IO engine with a virtual clock and scripted
//! answers: each test names its scenario. A small harness answers every
//! request with success unless the test scripts otherwise, and keeps a log
//! of what went out, in order.

use std::time::{Duration, Instant};

use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::producer::{Engine, EngineConfig, Event, SendFailure, Transmit};
use super::txn::{CoordinatorKind, TxnAnswer, TxnOp, TxnRequest};
use crate::compression::Compression;
use crate::engine::Acks;
use crate::engine::partitioner::EnginePartitioner;
use crate::error::{Error, ErrorKind};
use crate::metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
use crate::protocol::KafkaCode;
use crate::record::Record;

const PRODUCER_ID: i64 = 4000;

fn config() -> EngineConfig {
    EngineConfig {
        acks: Acks::All,
        linger: Duration::from_millis(5),
        batch_size: 16 * 1024,
        buffer_memory: 1024 * 1024,
        max_request_size: 1024 * 1024,
        max_block: Duration::from_secs(60),
        delivery_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        max_in_flight: 5,
        compression: Compression::None,
        compression_level: None,
        metadata_max_age: Duration::from_secs(300),
        partitioner: EnginePartitioner::default(),
        seed: 11,
        idempotence: true,
        transactional_id: Some("tx".into()),
        transaction_timeout: Duration::from_secs(60),
    }
}

fn metadata() -> ClusterMetadata {
    let partitions = (0..3)
        .map(|id| PartitionMetadata {
            id,
            leader: Some(1 + id % 2),
            leader_epoch: Some(0),
            replicas: vec![],
            isr: vec![],
            error: None,
        })
        .collect();
    let mut topics = std::collections::BTreeMap::new();
    topics.insert(
        "t".to_string(),
        TopicMetadata {
            name: "t".into(),
            error: None,
            is_internal: false,
            partitions,
        },
    );
    ClusterMetadata {
        cluster_id: None,
        controller_id: None,
        brokers: (1..=3)
            .map(|id| BrokerMetadata {
                id,
                host: "h".into(),
                port: 9000 + id as u16,
                rack: None,
            })
            .collect(),
        topics,
    }
}

/// What the harness does with one request.
enum Reply {
    /// The default success answer.
    Ok,
    /// This transactional answer.
    Txn(Result<TxnAnswer, Error>),
    /// These Produce error codes, per partition in the request.
    ProduceCode(i16),
    /// No answer: the connection was lost after writing.
    Lost,
    /// Keep it unanswered for now.
    Hold,
}

/// One request that went out, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Find(CoordinatorKind, Option<i32>),
    Init {
        producer_id: i64,
        epoch: i16,
    },
    Add(Vec<i32>),
    AddOffsets,
    OffsetCommit,
    End {
        commit: bool,
    },
    /// Produce: (partition, epoch, base sequence, transactional bit).
    Produce(Vec<(i32, i16, i32, bool)>),
    Metadata,
}

struct Harness {
    e: Engine,
    now: Instant,
    log: Vec<Out>,
    held: Vec<Transmit>,
    results: Vec<(u64, Result<(), Error>)>,
    failed: Vec<(u64, Error)>,
    delivered: Vec<u64>,
    fatal: Option<Error>,
    next_token: u64,
    next_op: u64,
    next_offset: i64,
    epoch: i16,
    coordinator: i32,
}

impl Harness {
    fn new() -> Harness {
        // Tests need some starting instant; only differences matter.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut h = Harness {
            e: Engine::new(config()),
            now,
            log: vec![],
            held: vec![],
            results: vec![],
            failed: vec![],
            delivered: vec![],
            fatal: None,
            next_token: 1,
            next_op: 1,
            next_offset: 0,
            epoch: 0,
            coordinator: 1,
        };
        h.e.handle_timeout(now);
        h
    }

    /// An initialised producer, inside a transaction.
    fn in_transaction() -> Harness {
        let mut h = Harness::new();
        h.call_ok(TxnOp::Init);
        h.call_ok(TxnOp::Begin);
        h.log.clear();
        h
    }

    fn call(&mut self, op: TxnOp) -> u64 {
        let id = self.next_op;
        self.next_op += 1;
        self.e.transaction(self.now, id, op);
        id
    }

    /// Runs `op` with every request answered successfully.
    fn call_ok(&mut self, op: TxnOp) {
        let id = self.call(op);
        self.run(|_| Reply::Ok);
        assert_eq!(
            self.result(id).map(|r| r.is_ok()),
            Some(true),
            "{:?}",
            self.result(id)
        );
    }

    fn result(&self, op: u64) -> Option<&Result<(), Error>> {
        self.results
            .iter()
            .find(|(id, _)| *id == op)
            .map(|(_, r)| r)
    }

    fn send(&mut self, partition: i32) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let record = Record::new("t")
            .partition(partition)
            .value(format!("v{token}"));
        self.e.append(
            self.now,
            0,
            record,
            token,
            Some(self.now + Duration::from_secs(10)),
        );
        token
    }

    /// Answers requests as `script` says until nothing moves (advancing
    /// the clock to the engine's next deadline, up to 5 s in total).
    fn run(&mut self, mut script: impl FnMut(&Out) -> Reply) {
        let until = self.now + Duration::from_secs(5);
        loop {
            self.collect_events();
            let Some(t) = self.e.poll_transmit() else {
                match self.e.poll_timeout() {
                    Some(t) if t <= until => {
                        self.now = t.max(self.now);
                        self.e.handle_timeout(self.now);
                        continue;
                    }
                    _ => break,
                }
            };
            let out = self.describe(&t);
            let reply = script(&out);
            self.log.push(out);
            self.answer(t, reply);
        }
        self.collect_events();
    }

    fn describe(&self, t: &Transmit) -> Out {
        match t {
            Transmit::Metadata { .. } => Out::Metadata,
            Transmit::InitProducerId { .. } => {
                panic!("a transactional producer sent a plain InitProducerId")
            }
            Transmit::Produce { request, .. } => Out::Produce(
                request
                    .topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .map(|p| {
                        let b = p.records.as_ref().expect("records");
                        let epoch = i16::from_be_bytes([b[51], b[52]]);
                        let seq = i32::from_be_bytes([b[53], b[54], b[55], b[56]]);
                        let attributes = i16::from_be_bytes([b[21], b[22]]);
                        (p.index, epoch, seq, attributes & 0x10 != 0)
                    })
                    .collect(),
            ),
            Transmit::Txn { request, node, .. } => match request {
                TxnRequest::FindCoordinator { kind, .. } => {
                    Out::Find(*kind, node.as_ref().map(|n| n.0))
                }
                TxnRequest::InitProducerId {
                    producer_id, epoch, ..
                } => Out::Init {
                    producer_id: *producer_id,
                    epoch: *epoch,
                },
                TxnRequest::AddPartitions { partitions, .. } => Out::Add(
                    partitions
                        .iter()
                        .flat_map(|(_, ps)| ps.iter().copied())
                        .collect(),
                ),
                TxnRequest::AddOffsets { .. } => Out::AddOffsets,
                TxnRequest::TxnOffsetCommit { .. } => Out::OffsetCommit,
                TxnRequest::EndTxn { commit, .. } => Out::End { commit: *commit },
            },
        }
    }

    fn answer(&mut self, t: Transmit, reply: Reply) {
        let now = self.now;
        match (t, reply) {
            (t, Reply::Hold) => self.held.push(t),
            (Transmit::Metadata { id, topics, .. }, _) => {
                // Only the topics asked for, as a broker answers.
                let mut answer = metadata();
                answer.topics.retain(|name, _| topics.contains(name));
                self.e.handle_metadata_response(now, id, Ok(answer));
            }
            (Transmit::Produce { id, request, .. }, reply) => {
                let result = match reply {
                    Reply::Lost => Err(SendFailure {
                        error: Error::new(ErrorKind::Io, "connection lost"),
                        written: true,
                    }),
                    reply => {
                        let code = match reply {
                            Reply::ProduceCode(c) => c,
                            _ => 0,
                        };
                        let mut topics = vec![];
                        for td in &request.topic_data {
                            let parts = td
                                .partition_data
                                .iter()
                                .map(|p| {
                                    let n = 1;
                                    let base = self.next_offset;
                                    if code == 0 {
                                        self.next_offset += n;
                                    }
                                    PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_error_code(code)
                                        .with_base_offset(if code == 0 { base } else { -1 })
                                        .with_log_append_time_ms(-1)
                                })
                                .collect();
                            topics.push(
                                TopicProduceResponse::default()
                                    .with_name(TopicName(StrBytes::from_static_str("t")))
                                    .with_partition_responses(parts),
                            );
                        }
                        Ok(ProduceResponse::default().with_responses(topics))
                    }
                };
                self.e.handle_produce_response(now, id, result);
            }
            (Transmit::Txn { id, request, .. }, reply) => {
                let result = match reply {
                    Reply::Txn(r) => r,
                    Reply::Lost => Err(Error::new(ErrorKind::Io, "connection lost")),
                    _ => Ok(self.success(&request)),
                };
                self.e.handle_txn_response(now, id, result);
            }
            (Transmit::InitProducerId { .. }, _) => unreachable!(),
        }
    }

    fn success(&mut self, request: &TxnRequest) -> TxnAnswer {
        match request {
            TxnRequest::FindCoordinator { .. } => TxnAnswer::Coordinator {
                code: 0,
                node: self.coordinator,
                addr: format!("h:{}", 9000 + self.coordinator),
            },
            TxnRequest::InitProducerId { .. } => {
                let answer = TxnAnswer::ProducerId {
                    code: 0,
                    producer_id: PRODUCER_ID,
                    epoch: self.epoch,
                };
                self.epoch += 1;
                answer
            }
            TxnRequest::AddPartitions { partitions, .. } => TxnAnswer::Partitions(
                partitions
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p, 0)))
                    .collect(),
            ),
            TxnRequest::TxnOffsetCommit { offsets, .. } => TxnAnswer::Partitions(
                offsets
                    .iter()
                    .map(|o| (o.topic.clone(), o.partition, 0))
                    .collect(),
            ),
            TxnRequest::AddOffsets { .. } | TxnRequest::EndTxn { .. } => TxnAnswer::Code(0),
        }
    }

    /// Answers the held requests with success, in order.
    fn release_held(&mut self) {
        for t in std::mem::take(&mut self.held) {
            self.answer(t, Reply::Ok);
        }
    }

    fn collect_events(&mut self) {
        while let Some(ev) = self.e.poll_event() {
            match ev {
                Event::TxnDone { op, result } => self.results.push((op, result)),
                Event::Failed { token, error, .. } => self.failed.push((token, error)),
                Event::Delivered(b) => self.delivered.extend(b.records.iter().map(|r| r.token)),
                Event::Fatal { error } => self.fatal = Some(error),
                Event::Accepted { .. } | Event::Initialised => {}
            }
        }
    }

    fn produced(&self) -> Vec<(i32, i16, i32, bool)> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Out::Produce(p) => Some(p.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn code(c: KafkaCode) -> i16 {
    c.code()
}

#[test]
fn a_transaction_adds_its_partitions_before_producing_and_commits() {
    let mut h = Harness::in_transaction();
    h.send(0);
    h.send(1);
    let commit = h.call(TxnOp::Commit);
    h.run(|_| Reply::Ok);
    assert!(
        matches!(h.result(commit), Some(Ok(()))),
        "{:?}",
        h.result(commit)
    );
    let adds = h.log.iter().position(|o| matches!(o, Out::Add(_))).unwrap();
    let first_produce = h
        .log
        .iter()
        .position(|o| matches!(o, Out::Produce(_)))
        .unwrap();
    assert!(adds < first_produce, "{:?}", h.log);
    assert_eq!(h.log.last(), Some(&Out::End { commit: true }));
    assert_eq!(h.delivered.len(), 2);
    // Transactional batches, stamped with the producer's epoch from 0.
    for (_, epoch, seq, txn) in h.produced() {
        assert!(txn);
        assert_eq!((epoch, seq), (0, 0));
    }
}

#[test]
fn fault_30_coordinator_churn_rediscovers_and_succeeds() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let commit = h.call(TxnOp::Commit);
    let mut errors = vec![
        KafkaCode::COORDINATOR_LOAD_IN_PROGRESS,
        KafkaCode::NOT_COORDINATOR,
        KafkaCode::COORDINATOR_NOT_AVAILABLE,
    ];
    h.run(|out| match out {
        Out::End { .. } => match errors.pop() {
            Some(c) => Reply::Txn(Ok(TxnAnswer::Code(code(c)))),
            None => Reply::Ok,
        },
        _ => Reply::Ok,
    });
    assert!(
        matches!(h.result(commit), Some(Ok(()))),
        "{:?}",
        h.result(commit)
    );
    let ends = h
        .log
        .iter()
        .filter(|o| matches!(o, Out::End { commit: true }))
        .count();
    let finds = h.log.iter().filter(|o| matches!(o, Out::Find(..))).count();
    assert_eq!(ends, 4, "{:?}", h.log);
    assert!(
        finds >= 2,
        "the coordinator was looked up again: {:?}",
        h.log
    );
}

#[test]
fn fault_31_lost_coordinator_connection_mid_transaction_finds_the_new_one() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let mut lost = false;
    h.run(|out| match out {
        Out::Add(_) if !lost => {
            lost = true;
            Reply::Lost
        }
        _ => Reply::Ok,
    });
    h.coordinator = 3;
    // The coordinator moved: the next lookup answers broker 3.
    h.send(1);
    let commit = h.call(TxnOp::Commit);
    h.run(|_| Reply::Ok);
    assert!(
        matches!(h.result(commit), Some(Ok(()))),
        "{:?}",
        h.result(commit)
    );
    assert!(
        h.log
            .contains(&Out::Find(CoordinatorKind::Transaction, None))
    );
    assert_eq!(h.delivered.len(), 2);
}

#[test]
fn fault_32_concurrent_transactions_is_retried_after_a_short_backoff() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let mut busy = 2;
    let t0 = h.now;
    h.run(|out| match out {
        Out::Add(ps) if busy > 0 => {
            busy -= 1;
            Reply::Txn(Ok(TxnAnswer::Partitions(
                ps.iter()
                    .map(|p| {
                        (
                            "t".to_string(),
                            *p,
                            code(KafkaCode::CONCURRENT_TRANSACTIONS),
                        )
                    })
                    .collect(),
            )))
        }
        _ => Reply::Ok,
    });
    let adds = h.log.iter().filter(|o| matches!(o, Out::Add(_))).count();
    assert_eq!(adds, 3, "{:?}", h.log);
    assert_eq!(h.delivered.len(), 1);
    // Short backoffs, not the 100 ms retry backoff of a failed request.
    assert!(h.now - t0 < Duration::from_millis(100), "{:?}", h.now - t0);
}

#[test]
fn fault_33_fenced_on_produce_is_fatal_and_nothing_more_goes_out() {
    let mut h = Harness::in_transaction();
    h.send(0);
    h.run(|out| match out {
        Out::Produce(_) => Reply::ProduceCode(code(KafkaCode::INVALID_PRODUCER_EPOCH)),
        _ => Reply::Ok,
    });
    let fatal = h.fatal.as_ref().expect("fatal");
    assert_eq!(fatal.kind(), &ErrorKind::Fenced, "{fatal}");
    h.log.clear();
    h.send(1);
    let commit = h.call(TxnOp::Commit);
    h.run(|_| Reply::Ok);
    assert!(
        h.log.iter().all(|o| matches!(o, Out::Metadata)),
        "{:?}",
        h.log
    );
    assert!(matches!(h.result(commit), Some(Err(e)) if e.is_fatal()));
    assert!(
        h.failed
            .iter()
            .all(|(_, e)| e.is_fatal() || e.kind() == &ErrorKind::Fenced)
    );
}

#[test]
fn fault_34_lost_producer_mapping_on_commit_is_abortable_and_abort_succeeds() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let commit = h.call(TxnOp::Commit);
    h.run(|out| match out {
        Out::End { commit: true } => Reply::Txn(Ok(TxnAnswer::Code(code(
            KafkaCode::INVALID_PRODUCER_ID_MAPPING,
        )))),
        _ => Reply::Ok,
    });
    assert!(
        matches!(h.result(commit), Some(Err(e)) if e.is_abortable()),
        "{:?}",
        h.result(commit)
    );
    h.log.clear();
    h.call_ok(TxnOp::Abort);
    assert_eq!(h.log, vec![Out::End { commit: false }]);
    h.call_ok(TxnOp::Begin);
}

#[test]
fn fault_34_transactional_id_authorisation_is_fatal() {
    let mut h = Harness::new();
    let init = h.call(TxnOp::Init);
    h.run(|out| match out {
        Out::Init { .. } => Reply::Txn(Ok(TxnAnswer::ProducerId {
            code: code(KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            producer_id: -1,
            epoch: -1,
        })),
        _ => Reply::Ok,
    });
    assert!(
        matches!(h.result(init), Some(Err(e)) if e.is_fatal()),
        "{:?}",
        h.result(init)
    );
    let again = h.call(TxnOp::Begin);
    h.run(|_| Reply::Ok);
    assert!(matches!(h.result(again), Some(Err(e)) if e.is_fatal()));
}

#[test]
fn fault_35_a_failed_record_makes_commit_abortable_then_abort_and_go_on() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let commit = h.call(TxnOp::Commit);
    h.run(|out| match out {
        Out::Produce(_) => Reply::ProduceCode(code(KafkaCode::INVALID_RECORD)),
        _ => Reply::Ok,
    });
    assert!(
        matches!(h.result(commit), Some(Err(e)) if e.is_abortable()),
        "{:?}",
        h.result(commit)
    );
    assert_eq!(h.failed.len(), 1);
    // Records are refused until the abort.
    let refused = h.send(1);
    h.run(|_| Reply::Ok);
    assert!(
        h.failed
            .iter()
            .any(|(t, e)| *t == refused && e.is_abortable())
    );
    h.log.clear();
    h.call_ok(TxnOp::Abort);
    assert!(h.log.contains(&Out::End { commit: false }), "{:?}", h.log);
    h.call_ok(TxnOp::Begin);
    let ok = h.send(2);
    h.call_ok(TxnOp::Commit);
    assert!(h.delivered.contains(&ok));
}

#[test]
fn fault_36_out_of_order_inside_a_transaction_aborts_then_bumps_the_epoch() {
    let mut h = Harness::in_transaction();
    h.send(0);
    h.run(|_| Reply::Ok);
    h.send(0);
    let commit = h.call(TxnOp::Commit);
    h.run(|out| match out {
        Out::Produce(_) => Reply::ProduceCode(code(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER)),
        _ => Reply::Ok,
    });
    assert!(
        matches!(h.result(commit), Some(Err(e)) if e.is_abortable()),
        "{:?}",
        h.result(commit)
    );
    // No epoch bump mid-transaction.
    assert!(
        !h.log.iter().any(|o| matches!(o, Out::Init { .. })),
        "{:?}",
        h.log
    );
    let refused = h.send(1);
    h.run(|_| Reply::Ok);
    assert!(
        h.failed
            .iter()
            .any(|(t, e)| *t == refused && e.is_abortable())
    );
    h.log.clear();
    h.call_ok(TxnOp::Abort);
    // The abort ends the transaction, then bumps the epoch (KIP-360).
    assert_eq!(
        h.log,
        vec![
            Out::End { commit: false },
            Out::Init {
                producer_id: PRODUCER_ID,
                epoch: 0
            }
        ]
    );
    h.call_ok(TxnOp::Begin);
    h.send(0);
    h.log.clear();
    h.call_ok(TxnOp::Commit);
    assert_eq!(
        h.produced(),
        vec![(0, 1, 0, true)],
        "new epoch, sequences from 0"
    );
}

#[test]
fn fault_37_unknown_end_txn_outcome_is_retriable_and_only_the_same_call_completes_it() {
    let mut h = Harness::in_transaction();
    h.send(0);
    let commit = h.call(TxnOp::Commit);
    let mut lose = true;
    h.run(|out| match out {
        Out::End { .. } if lose => {
            lose = false;
            Reply::Lost
        }
        _ => Reply::Ok,
    });
    let err = match h.result(commit) {
        Some(Err(e)) => e.clone_shallow(),
        other => panic!("{other:?}"),
    };
    assert!(err.is_retriable() && err.is_timeout(), "{err}");
    // Never reported committed; switching to abort or beginning is refused.
    for op in [TxnOp::Abort, TxnOp::Begin] {
        let id = h.call(op);
        h.run(|_| Reply::Ok);
        assert!(
            matches!(h.result(id), Some(Err(e)) if e.kind() == &ErrorKind::InvalidTransactionState),
            "{:?}",
            h.result(id)
        );
    }
    h.log.clear();
    h.call_ok(TxnOp::Commit);
    assert!(h.log.contains(&Out::End { commit: true }), "{:?}", h.log);
    h.call_ok(TxnOp::Begin);
}

#[test]
fn fault_38_partitions_added_while_others_are_pending_and_commit_waits_for_the_adds() {
    let mut h = Harness::in_transaction();
    h.send(0);
    // The first add is held: partitions arriving meanwhile wait for the next.
    h.run(|out| match out {
        Out::Add(_) => Reply::Hold,
        _ => Reply::Ok,
    });
    h.send(1);
    h.send(2);
    let commit = h.call(TxnOp::Commit);
    h.run(|out| match out {
        Out::Add(_) => Reply::Hold,
        _ => Reply::Ok,
    });
    assert_eq!(
        h.log.iter().filter(|o| matches!(o, Out::Add(_))).count(),
        1,
        "one add at a time: {:?}",
        h.log
    );
    assert!(
        !h.log
            .iter()
            .any(|o| matches!(o, Out::Produce(_) | Out::End { .. }))
    );
    assert!(h.result(commit).is_none());
    h.release_held();
    h.run(|_| Reply::Ok);
    assert!(
        matches!(h.result(commit), Some(Ok(()))),
        "{:?}",
        h.result(commit)
    );
    let adds: Vec<&Out> = h.log.iter().filter(|o| matches!(o, Out::Add(_))).collect();
    assert_eq!(adds, vec![&Out::Add(vec![0]), &Out::Add(vec![1, 2])]);
    let end = h
        .log
        .iter()
        .position(|o| matches!(o, Out::End { .. }))
        .unwrap();
    assert_eq!(end, h.log.len() - 1, "EndTxn last: {:?}", h.log);
    assert_eq!(h.delivered.len(), 3);
}

#[test]
fn fault_38_abort_sends_end_txn_whenever_anything_was_added_and_only_then() {
    // Nothing added: the abort needs no EndTxn.
    let mut h = Harness::in_transaction();
    h.call_ok(TxnOp::Abort);
    assert!(h.log.is_empty(), "{:?}", h.log);
    // An add in flight when the abort starts: wait for it, then EndTxn.
    h.call_ok(TxnOp::Begin);
    h.log.clear();
    let queued = h.send(0);
    h.run(|out| match out {
        Out::Add(_) => Reply::Hold,
        _ => Reply::Ok,
    });
    let abort = h.call(TxnOp::Abort);
    h.run(|_| Reply::Ok);
    assert!(h.result(abort).is_none(), "waits for the add");
    assert!(
        h.failed
            .iter()
            .any(|(t, e)| *t == queued && e.kind() == &ErrorKind::TransactionAborted)
    );
    h.release_held();
    h.run(|_| Reply::Ok);
    assert!(matches!(h.result(abort), Some(Ok(()))));
    assert_eq!(
        h.log.last(),
        Some(&Out::End { commit: false }),
        "{:?}",
        h.log
    );
    assert!(!h.log.iter().any(|o| matches!(o, Out::Produce(_))));
}

#[test]
fn offsets_go_to_the_group_coordinator_and_count_as_added() {
    let mut h = Harness::in_transaction();
    let group = crate::group::ConsumerGroupMetadata::new("g");
    let offsets = vec![crate::group::OffsetToCommit::new("in", 0, 42)];
    h.call_ok(TxnOp::SendOffsets { offsets, group });
    assert_eq!(
        h.log,
        vec![
            Out::AddOffsets,
            Out::Find(CoordinatorKind::Group, None),
            Out::OffsetCommit
        ]
    );
    h.log.clear();
    // No partition, but offsets: the commit needs EndTxn.
    h.call_ok(TxnOp::Commit);
    assert_eq!(h.log, vec![Out::End { commit: true }]);
}

#[test]
fn a_call_made_while_another_is_in_progress_waits_for_it() {
    let mut h = Harness::in_transaction();
    h.send(0);
    h.run(|out| match out {
        Out::Add(_) => Reply::Hold,
        _ => Reply::Ok,
    });
    let abort = h.call(TxnOp::Abort);
    let begin = h.call(TxnOp::Begin);
    h.run(|_| Reply::Ok);
    assert!(h.result(abort).is_none() && h.result(begin).is_none());
    h.release_held();
    h.run(|_| Reply::Ok);
    assert!(matches!(h.result(abort), Some(Ok(()))));
    assert!(
        matches!(h.result(begin), Some(Ok(()))),
        "{:?}",
        h.result(begin)
    );
    let position = |op| h.results.iter().position(|(id, _)| *id == op).unwrap();
    assert!(position(abort) < position(begin), "in call order");
}

#[test]
fn a_record_waiting_for_metadata_when_the_commit_starts_still_commits() {
    let mut h = Harness::in_transaction();
    // The first record of the topic waits for its metadata; the commit
    // starts before the metadata answer.
    let token = h.send(0);
    h.run(|out| match out {
        Out::Metadata => Reply::Hold,
        _ => Reply::Ok,
    });
    let commit = h.call(TxnOp::Commit);
    h.release_held();
    h.run(|_| Reply::Ok);
    assert!(
        matches!(h.result(commit), Some(Ok(()))),
        "{:?}",
        h.result(commit)
    );
    assert!(h.delivered.contains(&token));
    assert!(
        h.log.iter().any(|o| matches!(o, Out::Add(_))),
        "{:?}",
        h.log
    );
}
