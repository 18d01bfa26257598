//! Deterministic simulation of the producer engine against a modelled
//! cluster: a virtual clock, one FIFO connection per broker, and faults
//! injected by script or by a seeded generator, so every run is exact and
//! replayable from its seed.
//!
//! The modelled broker keeps idempotent producer state as Kafka does (the
//! last five batches per producer and partition, duplicates answered with
//! the original offset, gaps with OUT_OF_ORDER_SEQUENCE_NUMBER, epochs,
//! state that can expire). Outcomes are checked by reading the modelled
//! logs back: lost, duplicated, reordered and phantom records, and every
//! record's delivery reported exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::producer::{Engine, EngineConfig, Event, SendFailure, Transmit};
use crate::engine::fixtures;
use crate::error::{Error, ErrorKind};
use crate::metadata::ClusterMetadata;
use crate::protocol::KafkaCode;
use crate::record::Record;
use crate::record_batch::BatchReader;

pub(crate) use crate::engine::fixtures::TOPIC;

/// Engine settings for simulations: idempotent, small batches.
pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        linger: Duration::from_millis(2),
        batch_size: 512,
        delivery_timeout: Duration::from_secs(120),
        request_timeout: Duration::from_secs(30),
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(200),
        seed: 11,
        idempotence: true,
        ..fixtures::config()
    }
}

/// One batch remembered for duplicate detection.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    first: i32,
    last: i32,
    base_offset: i64,
}

#[derive(Debug, Default, Clone)]
struct ProducerState {
    epoch: i16,
    recent: VecDeque<Remembered>,
}

/// One stored record: the token it carries and its producer stamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    pub(crate) token: u64,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
}

/// A modelled cluster: leaders, logs and producer state per partition.
#[derive(Debug)]
pub(crate) struct SimCluster {
    pub(crate) brokers: Vec<i32>,
    pub(crate) leaders: Vec<(i32, i32)>,
    pub(crate) logs: Vec<Vec<Stored>>,
    producers: Vec<BTreeMap<i64, ProducerState>>,
    /// Log start offset per partition (raised by `delete_records`).
    log_start: Vec<i64>,
    next_producer_id: i64,
    epochs: BTreeMap<i64, i16>,
    /// Error codes to answer the next Produce partitions of a broker with.
    pub(crate) produce_faults: BTreeMap<i32, VecDeque<KafkaCode>>,
    /// Whether a topic is missing from metadata answers (scenario 22).
    pub(crate) topic_hidden: bool,
    /// Duplicates the broker recognised.
    pub(crate) duplicates: u64,
    /// The epoch a fresh producer id starts at (0 on a real broker).
    pub(crate) first_epoch: i16,
}

impl SimCluster {
    pub(crate) fn new(brokers: i32, partitions: usize) -> SimCluster {
        let brokers: Vec<i32> = (1..=brokers).collect();
        SimCluster {
            leaders: (0..partitions)
                .map(|p| (brokers[p % brokers.len()], 0))
                .collect(),
            brokers,
            logs: vec![Vec::new(); partitions],
            producers: vec![BTreeMap::new(); partitions],
            log_start: vec![0; partitions],
            next_producer_id: 1000,
            epochs: BTreeMap::new(),
            produce_faults: BTreeMap::new(),
            topic_hidden: false,
            duplicates: 0,
            first_epoch: 0,
        }
    }

    pub(crate) fn metadata(&self) -> ClusterMetadata {
        let partitions: Vec<_> = (0..)
            .zip(&self.leaders)
            .map(|(p, (leader, epoch))| (p, Some(*leader), *epoch))
            .collect();
        let partitions = (!self.topic_hidden).then_some(partitions.as_slice());
        fixtures::metadata("sim", &self.brokers, partitions)
    }

    /// Moves a partition's leadership to the next broker.
    pub(crate) fn move_leader(&mut self, partition: usize) {
        let (leader, epoch) = self.leaders[partition];
        let i = self.brokers.iter().position(|b| *b == leader).unwrap_or(0);
        self.leaders[partition] = (self.brokers[(i + 1) % self.brokers.len()], epoch + 1);
    }

    /// Forgets every producer's state on a partition (as when it expires).
    pub(crate) fn expire_producers(&mut self, partition: usize) {
        self.producers[partition].clear();
    }

    /// Retention: the log now starts after everything written so far, and
    /// the producer state of the removed batches is gone.
    pub(crate) fn delete_records(&mut self, partition: usize) {
        self.log_start[partition] = self.logs[partition].len() as i64;
        self.producers[partition].clear();
    }

    pub(crate) fn init_producer_id(&mut self, producer_id: i64, epoch: i16) -> (i16, i64, i16) {
        if producer_id < 0 {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            self.epochs.insert(id, self.first_epoch);
            return (0, id, self.first_epoch);
        }
        match self.epochs.get(&producer_id).copied() {
            Some(current) if current == epoch => {
                if current >= i16::MAX - 1 {
                    let id = self.next_producer_id;
                    self.next_producer_id += 1;
                    self.epochs.insert(id, 0);
                    (0, id, 0)
                } else {
                    self.epochs.insert(producer_id, current + 1);
                    (0, producer_id, current + 1)
                }
            }
            _ => (KafkaCode::INVALID_PRODUCER_EPOCH.code(), -1, -1),
        }
    }

    /// Gives a partition producer state as if `producer_id` had written up
    /// to sequence `last` (to test sequence wrap).
    pub(crate) fn seed_producer(
        &mut self,
        partition: usize,
        producer_id: i64,
        epoch: i16,
        last: i32,
    ) {
        let state = self.producers[partition].entry(producer_id).or_default();
        state.epoch = epoch;
        state.recent.clear();
        state.recent.push_back(Remembered {
            first: last,
            last,
            base_offset: -1,
        });
    }

    /// Applies one partition's batch; returns (error code, base offset).
    fn append(&mut self, partition: usize, bytes: &[u8]) -> (i16, i64) {
        let Some(Ok(batch)) = BatchReader::new(bytes).next() else {
            return (KafkaCode::CORRUPT_MESSAGE.code(), -1);
        };
        let h = *batch.header();
        let mut scratch = Vec::new();
        let Ok(records) = batch.records(&mut scratch) else {
            return (KafkaCode::CORRUPT_MESSAGE.code(), -1);
        };
        let tokens: Vec<u64> = records
            .filter_map(Result::ok)
            .filter_map(|r| std::str::from_utf8(r.value()?).ok()?.parse().ok())
            .collect();
        let count = tokens.len() as i32;
        let last = super::idempotence::add_sequence(h.base_sequence, count - 1);
        let producers = &mut self.producers[partition];
        if h.producer_id >= 0 {
            match producers.get(&h.producer_id) {
                None if h.base_sequence != 0 => {
                    return (KafkaCode::UNKNOWN_PRODUCER_ID.code(), -1);
                }
                None => {}
                Some(state) if h.producer_epoch < state.epoch => {
                    return (KafkaCode::INVALID_PRODUCER_EPOCH.code(), -1);
                }
                Some(state) if h.producer_epoch > state.epoch && h.base_sequence != 0 => {
                    return (KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code(), -1);
                }
                Some(state) if h.producer_epoch > state.epoch => {}
                Some(state) => {
                    if let Some(dup) = state
                        .recent
                        .iter()
                        .find(|b| b.first == h.base_sequence && b.last == last)
                    {
                        self.duplicates += 1;
                        return (0, dup.base_offset);
                    }
                    let expected = state
                        .recent
                        .back()
                        .map_or(0, |b| super::idempotence::add_sequence(b.last, 1));
                    if h.base_sequence != expected {
                        return (KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code(), -1);
                    }
                }
            }
        }
        let base_offset = self.logs[partition].len() as i64;
        for token in tokens {
            self.logs[partition].push(Stored {
                token,
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
            });
        }
        if h.producer_id >= 0 {
            let state = producers.entry(h.producer_id).or_default();
            if state.epoch != h.producer_epoch {
                state.epoch = h.producer_epoch;
                state.recent.clear();
            }
            state.recent.push_back(Remembered {
                first: h.base_sequence,
                last,
                base_offset,
            });
            if state.recent.len() > 5 {
                state.recent.pop_front();
            }
        }
        (0, base_offset)
    }

    /// Answers a Produce request that reached broker `node`.
    pub(crate) fn produce(&mut self, node: i32, request: &ProduceRequest) -> ProduceResponse {
        let mut topics = Vec::new();
        for topic in &request.topic_data {
            let mut partitions = Vec::new();
            for data in &topic.partition_data {
                let p = data.index as usize;
                let answer = |code: i16, base: i64| {
                    PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_error_code(code)
                        .with_base_offset(base)
                        .with_log_append_time_ms(-1)
                };
                let log_start = self.log_start.get(p).copied().unwrap_or(0);
                let response = if p >= self.leaders.len() {
                    answer(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION.code(), -1)
                } else if self.leaders[p].0 != node {
                    answer(KafkaCode::NOT_LEADER_OR_FOLLOWER.code(), -1)
                } else if let Some(code) = self
                    .produce_faults
                    .get_mut(&node)
                    .and_then(VecDeque::pop_front)
                {
                    // These two come after the leader wrote the batch.
                    if matches!(
                        code,
                        KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND | KafkaCode::REQUEST_TIMED_OUT
                    ) {
                        let bytes = data.records.as_deref().unwrap_or_default();
                        let _ = self.append(p, bytes);
                    }
                    answer(code.code(), -1)
                } else {
                    let bytes = data.records.as_deref().unwrap_or_default();
                    let (code, base) = self.append(p, bytes);
                    answer(code, base)
                };
                partitions.push(response.with_log_start_offset(log_start));
            }
            // Not in the request's order: Kafka builds its answer from hash
            // maps, and a client must match answers to batches by name.
            partitions.reverse();
            topics.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.0.to_string())))
                    .with_partition_responses(partitions),
            );
        }
        ProduceResponse::default().with_responses(topics)
    }
}

/// A request on its way, as the connection holds it.
#[derive(Debug)]
enum Pending {
    Produce {
        id: u64,
        request: ProduceRequest,
    },
    Metadata {
        id: u64,
    },
    Init {
        id: u64,
        producer_id: i64,
        epoch: i16,
    },
}

/// What the producer reported for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered {
        partition: i32,
        offset: i64,
    },
    Failed {
        possibly_persisted: bool,
        kind: ErrorKind,
    },
}

/// The simulation: engine, cluster, connections and the virtual clock.
pub(crate) struct Sim {
    pub(crate) engine: Engine,
    pub(crate) cluster: SimCluster,
    pub(crate) now: Instant,
    /// FIFO per broker; node 0 stands for "any bootstrap server".
    conns: BTreeMap<i32, VecDeque<Pending>>,
    /// Per partition, the tokens appended, in order.
    pub(crate) sent: Vec<Vec<u64>>,
    pub(crate) outcomes: BTreeMap<u64, Outcome>,
    /// Terminal events seen per token (must end at exactly one).
    reports: BTreeMap<u64, u32>,
    next_token: u64,
    pub(crate) fatal: Option<Error>,
    pub(crate) initialised: bool,
}

impl Sim {
    pub(crate) fn new(config: EngineConfig, brokers: i32, partitions: usize) -> Sim {
        let mut sim = Sim {
            engine: Engine::new(config),
            cluster: SimCluster::new(brokers, partitions),
            now: virtual_epoch(),
            conns: BTreeMap::new(),
            sent: vec![Vec::new(); partitions],
            outcomes: BTreeMap::new(),
            reports: BTreeMap::new(),
            next_token: 1,
            fatal: None,
            initialised: false,
        };
        sim.engine.handle_timeout(sim.now);
        sim.collect();
        sim
    }

    /// Appends `n` records to `partition`.
    pub(crate) fn send(&mut self, partition: usize, n: usize) {
        for _ in 0..n {
            let token = self.next_token;
            self.next_token += 1;
            self.sent[partition].push(token);
            let record = Record::new(TOPIC)
                .partition(partition as i32)
                .value(token.to_string());
            let deadline = self.now + Duration::from_secs(60);
            self.engine
                .append(self.now, 1_700_000_000_000, record, token, Some(deadline));
        }
        self.collect();
    }

    /// Appends `n` keyless records of 20-byte values, for the partitioner
    /// to place (they are not in `sent`: read the logs to see where they went).
    pub(crate) fn send_keyless(&mut self, n: usize) {
        for _ in 0..n {
            let token = self.next_token;
            self.next_token += 1;
            let record = Record::new(TOPIC).value(format!("{token:020}"));
            let deadline = self.now + Duration::from_secs(60);
            self.engine
                .append(self.now, 1_700_000_000_000, record, token, Some(deadline));
        }
        self.collect();
    }

    /// Moves transmits onto connections and records events.
    pub(crate) fn collect(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            let (node, pending) = match t {
                Transmit::Produce {
                    id, node, request, ..
                } => (node, Pending::Produce { id, request }),
                Transmit::Metadata { id, node, .. } => {
                    (node.map_or(0, |(n, _)| n), Pending::Metadata { id })
                }
                Transmit::InitProducerId {
                    id,
                    node,
                    producer_id,
                    epoch,
                } => (
                    node.map_or(0, |(n, _)| n),
                    Pending::Init {
                        id,
                        producer_id,
                        epoch,
                    },
                ),
                Transmit::Txn { .. } => panic!("the simulation models no transactions"),
            };
            self.conns.entry(node).or_default().push_back(pending);
        }
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Accepted { .. } | Event::TxnDone { .. } => {}
                Event::Delivered(batch) => {
                    for (i, r) in batch.records.iter().enumerate() {
                        *self.reports.entry(r.token).or_default() += 1;
                        self.outcomes.insert(
                            r.token,
                            Outcome::Delivered {
                                partition: batch.partition,
                                offset: batch.offset(i),
                            },
                        );
                    }
                }
                Event::Failed { token, error, .. } => {
                    *self.reports.entry(token).or_default() += 1;
                    self.outcomes.insert(
                        token,
                        Outcome::Failed {
                            possibly_persisted: error.possibly_persisted(),
                            kind: error.kind().clone(),
                        },
                    );
                }
                Event::Initialised => self.initialised = true,
                Event::Fatal { error } => self.fatal = Some(error),
            }
        }
    }

    /// Nodes with requests waiting.
    pub(crate) fn busy_nodes(&self) -> Vec<i32> {
        self.conns
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(n, _)| *n)
            .collect()
    }

    /// The broker handles the oldest request on `node`'s connection and
    /// (unless `lose_response`) its answer reaches the producer.
    /// Control requests (metadata, producer id) ahead of the first Produce
    /// are answered normally; `lose_response` is about Produce requests.
    pub(crate) fn answer(&mut self, node: i32, lose_response: bool) -> bool {
        let Some(pending) = self.conns.get_mut(&node).and_then(VecDeque::pop_front) else {
            return false;
        };
        if lose_response && !matches!(pending, Pending::Produce { .. }) {
            self.conns.entry(node).or_default().push_front(pending);
            self.answer(node, false);
            return self.answer(node, true);
        }
        let now = self.now;
        match pending {
            Pending::Produce { id, request } => {
                let response = self.cluster.produce(node, &request);
                let result = if lose_response {
                    Err(SendFailure {
                        error: Error::new(ErrorKind::Io, "connection lost"),
                        written: true,
                    })
                } else {
                    Ok(response)
                };
                self.engine.handle_produce_response(now, id, result);
            }
            Pending::Metadata { id } => {
                let md = self.cluster.metadata();
                self.engine.handle_metadata_response(now, id, Ok(md));
            }
            Pending::Init {
                id,
                producer_id,
                epoch,
            } => {
                let answer = self.cluster.init_producer_id(producer_id, epoch);
                self.engine
                    .handle_init_producer_id_response(now, id, Ok(answer));
            }
        }
        self.collect();
        true
    }

    /// The connection to `node` breaks: each waiting Produce request either
    /// reached the broker (`written`) or not; none is answered.
    pub(crate) fn break_connection(&mut self, node: i32, written: impl Fn(usize) -> bool) {
        let pending: Vec<Pending> = self
            .conns
            .get_mut(&node)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        let now = self.now;
        for (i, p) in pending.into_iter().enumerate() {
            match p {
                Pending::Produce { id, request } => {
                    let was_written = written(i);
                    if was_written {
                        let _ = self.cluster.produce(node, &request);
                    }
                    let failure = SendFailure {
                        error: Error::new(ErrorKind::Io, "connection reset"),
                        written: was_written,
                    };
                    self.engine.handle_produce_response(now, id, Err(failure));
                }
                Pending::Metadata { id } => {
                    let e = Error::new(ErrorKind::Io, "connection reset");
                    self.engine.handle_metadata_response(now, id, Err(e));
                }
                Pending::Init { id, .. } => {
                    let e = Error::new(ErrorKind::Io, "connection reset");
                    self.engine
                        .handle_init_producer_id_response(now, id, Err(e));
                }
            }
        }
        self.collect();
    }

    /// The record batches of the Produce requests waiting on `node`'s
    /// connection (clones, as a connection writing them holds them).
    pub(crate) fn in_flight_batches(&self, node: i32) -> Vec<bytes::Bytes> {
        self.conns
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                Pending::Produce { request, .. } => Some(request),
                _ => None,
            })
            .flat_map(|r| r.topic_data.iter())
            .flat_map(|t| t.partition_data.iter())
            .filter_map(|p| p.records.clone())
            .collect()
    }

    /// Makes the engine ask for metadata now.
    pub(crate) fn force_metadata_refresh(&mut self) {
        self.engine.request_metadata(self.now);
        self.collect();
    }

    /// Lets `d` of virtual time pass.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.now);
        self.collect();
    }

    /// Answers everything, in order per connection, letting time pass
    /// when nothing is waiting, until every record has an outcome or
    /// `limit` of virtual time passed.
    pub(crate) fn settle(&mut self, limit: Duration) {
        let end = self.now + limit;
        let mut rounds = 0u32;
        while self.now < end {
            rounds += 1;
            assert!(
                rounds < 200_000,
                "no progress: queues {:?}, stats {:?}",
                self.conns
                    .iter()
                    .map(|(n, q)| (*n, q.len()))
                    .collect::<Vec<_>>(),
                self.engine.stats(false)
            );
            let busy = self.busy_nodes();
            if busy.is_empty() {
                if self.engine.is_idle() {
                    return;
                }
                let next = self
                    .engine
                    .poll_timeout()
                    .unwrap_or(self.now + Duration::from_millis(10));
                let step = next
                    .saturating_duration_since(self.now)
                    .max(Duration::from_millis(1));
                self.advance(step);
                continue;
            }
            for node in busy {
                self.answer(node, false);
            }
            // Answers take a little time, so backoffs run out even while
            // requests keep coming.
            self.advance(Duration::from_millis(1));
        }
    }

    /// Checks the invariants against the logs; returns the problems found.
    pub(crate) fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let sent_total: usize = self.sent.iter().map(Vec::len).sum();
        for (token, n) in &self.reports {
            if *n != 1 {
                problems.push(format!("token {token}: {n} reports"));
            }
        }
        if self.reports.len() != sent_total {
            problems.push(format!(
                "{} of {sent_total} records have an outcome",
                self.reports.len()
            ));
        }
        for (p, sent) in self.sent.iter().enumerate() {
            let log: Vec<u64> = self.cluster.logs[p].iter().map(|s| s.token).collect();
            let mut seen = BTreeMap::new();
            for (offset, token) in log.iter().enumerate() {
                if let Some(first) = seen.insert(*token, offset) {
                    problems.push(format!(
                        "p{p}: token {token} duplicated at {first} and {offset}"
                    ));
                }
            }
            // Log order must follow send order.
            let position: BTreeMap<u64, usize> =
                sent.iter().enumerate().map(|(i, t)| (*t, i)).collect();
            let mut last = None;
            for token in &log {
                let Some(i) = position.get(token) else {
                    problems.push(format!("p{p}: phantom token {token} never sent here"));
                    continue;
                };
                if last.is_some_and(|l| *i < l) {
                    problems.push(format!("p{p}: token {token} reordered"));
                }
                last = Some(*i);
            }
            for token in sent {
                match self.outcomes.get(token) {
                    Some(Outcome::Delivered { partition, offset }) => {
                        if *partition != p as i32 {
                            problems.push(format!("token {token}: delivered to p{partition}"));
                        }
                        match seen.get(token) {
                            None => problems.push(format!("p{p}: token {token} lost")),
                            Some(at) if *offset >= 0 && *offset != *at as i64 => problems.push(
                                format!("p{p}: token {token} reported at {offset}, stored at {at}"),
                            ),
                            Some(_) => {}
                        }
                    }
                    Some(Outcome::Failed {
                        possibly_persisted: false,
                        ..
                    }) if seen.contains_key(token) => problems.push(format!(
                        "p{p}: token {token} failed as not persisted but is in the log"
                    )),
                    _ => {}
                }
            }
        }
        let stats = self.engine.stats(false);
        if self.engine.is_idle() && (stats.queued_bytes != 0 || stats.queued_records != 0) {
            problems.push(format!("buffer accounting: {stats:?}"));
        }
        problems
    }

    /// Delivered and failed counts.
    pub(crate) fn tally(&self) -> (usize, usize) {
        let delivered = self
            .outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Delivered { .. }))
            .count();
        (delivered, self.outcomes.len() - delivered)
    }
}

#[allow(clippy::disallowed_methods)]
fn virtual_epoch() -> Instant {
    // Only the differences matter; the engine never reads the clock.
    Instant::now()
}
