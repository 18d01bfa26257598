//! One broker's side of reading: a connection, and the Fetch and
//! ListOffsets requests for the partitions read from that broker.
//!
//! A [`Fetcher`] knows nothing of assignments or positions: it is handed
//! the partitions and offsets to ask for and returns what the broker said,
//! per partition, with the error code left for the caller to act on.
//!
//! Each Fetch goes through the caller's [`FetchSession`] with that broker
//! (KIP-227): the session decides whether the request is full or lists only
//! the partitions added or changed since the last one (with those no longer
//! wanted to forget), and the answer comes back with its session fields for
//! the caller to hand to the session. Partitions in a response that were
//! not asked for are dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::aborted::AbortedTransaction;
use super::fetch_session::{FetchSession, PartitionFetch, PartitionKey, SessionRequest};
use super::reader_config::IsolationLevel;
use crate::error::Error;
use crate::net::connection::{BrokerConnection, PendingResponse};
use crate::protocol::KafkaCode;
use crate::record::Topic;

/// ListOffsets' timestamp for the log start offset.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets' timestamp for the end of the log.
pub(crate) const LATEST_TIMESTAMP: i64 = -1;

/// One partition to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchTarget {
    pub(crate) topic: Topic,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The leader epoch the reader knows, or -1.
    pub(crate) leader_epoch: i32,
}

/// The request-wide settings of a Fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchParams {
    pub(crate) max_wait_ms: i32,
    pub(crate) min_bytes: i32,
    pub(crate) max_bytes: i32,
    pub(crate) partition_max_bytes: i32,
    pub(crate) isolation: IsolationLevel,
    /// The reader's rack, for a preferred read replica (KIP-392).
    pub(crate) rack: Option<StrBytes>,
}

/// What the broker answered for one partition.
#[derive(Debug, Clone)]
pub(crate) struct FetchedPartition {
    pub(crate) topic: Topic,
    pub(crate) partition: i32,
    pub(crate) error: Option<KafkaCode>,
    pub(crate) high_watermark: i64,
    pub(crate) last_stable_offset: i64,
    pub(crate) log_start_offset: i64,
    pub(crate) aborted: Vec<AbortedTransaction>,
    pub(crate) preferred_read_replica: Option<i32>,
    /// The leader and its epoch, when the broker names them (v12+, with
    /// `NOT_LEADER_OR_FOLLOWER` or `FENCED_LEADER_EPOCH`).
    pub(crate) current_leader: Option<(i32, i32)>,
    pub(crate) records: Bytes,
}

/// The session fields of an answer, for [`FetchSession::handle_response`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionReply {
    /// The session build the request came from.
    pub(crate) build: u64,
    /// The top-level error code (0 for none).
    pub(crate) error_code: i16,
    /// The session id the broker answered with.
    pub(crate) session_id: i32,
    /// Every partition the answer names, asked for or not.
    pub(crate) named: Vec<PartitionKey>,
}

/// A broker's answer to one Fetch.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchAnswer {
    /// The session fields, to hand to the broker's session.
    pub(crate) session: SessionReply,
    /// The partitions asked for, in response order (none when the answer
    /// carries a top-level error).
    pub(crate) partitions: Vec<FetchedPartition>,
}

/// A Fetch written to a broker, waiting for its answer.
pub(crate) struct InFlightFetch {
    broker: i32,
    build: u64,
    asked: HashSet<PartitionKey>,
    pending: PendingResponse<FetchRequest>,
}

impl InFlightFetch {
    /// The broker asked.
    pub(crate) fn broker(&self) -> i32 {
        self.broker
    }

    /// Waits for the answer: the partitions asked for, in response order,
    /// and the session fields.
    pub(crate) async fn wait(self) -> Result<FetchAnswer, Error> {
        let response = self.pending.wait().await?;
        Ok(read_response(self.build, &self.asked, response))
    }
}

fn read_response(
    build: u64,
    asked: &HashSet<PartitionKey>,
    response: FetchResponse,
) -> FetchAnswer {
    let mut session = SessionReply {
        build,
        error_code: response.error_code,
        session_id: response.session_id,
        named: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for topic in response.responses {
        let name = Topic::from(topic.topic.0.as_str());
        for p in topic.partitions {
            let key = (name.clone(), p.partition_index);
            session.named.push(key.clone());
            if response.error_code != 0 || !asked.contains(&key) || !seen.insert(key) {
                continue;
            }
            let current_leader = (p.current_leader.leader_id.0 >= 0)
                .then_some((p.current_leader.leader_id.0, p.current_leader.leader_epoch));
            out.push(FetchedPartition {
                topic: name.clone(),
                partition: p.partition_index,
                error: KafkaCode::from_i16(p.error_code),
                high_watermark: p.high_watermark,
                last_stable_offset: p.last_stable_offset,
                log_start_offset: p.log_start_offset,
                aborted: p
                    .aborted_transactions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| AbortedTransaction {
                        first_offset: a.first_offset,
                        producer_id: a.producer_id.0,
                    })
                    .collect(),
                preferred_read_replica: (p.preferred_read_replica.0 >= 0)
                    .then_some(p.preferred_read_replica.0),
                current_leader,
                records: p.records.unwrap_or_default(),
            });
        }
    }
    FetchAnswer {
        session,
        partitions: out,
    }
}

/// The connection to one broker, for reading.
pub(crate) struct Fetcher {
    broker: i32,
    conn: Arc<BrokerConnection>,
}

impl Fetcher {
    /// Reads from broker `broker` over `conn` (the client's pooled
    /// connection to it).
    pub(crate) fn new(broker: i32, conn: Arc<BrokerConnection>) -> Fetcher {
        Fetcher { broker, conn }
    }

    /// Whether the connection is gone (the next use would fail).
    pub(crate) fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// The Fetch version negotiated with the broker.
    pub(crate) fn fetch_version(&self) -> Option<i16> {
        self.conn.versions().get(ApiKey::Fetch)
    }

    /// Writes one Fetch for `targets` (at the negotiated version, v4 at
    /// least, so record batches are v2) through `session`, without waiting
    /// for the answer: a full request, or an incremental one listing only
    /// what changed since the last. The answer's
    /// [`SessionReply`] goes back to `session`.
    pub(crate) fn start_fetch(
        &self,
        targets: &[FetchTarget],
        params: &FetchParams,
        session: &mut FetchSession,
    ) -> Result<InFlightFetch, Error> {
        let wanted: BTreeMap<PartitionKey, PartitionFetch> = targets
            .iter()
            .map(|t| {
                (
                    (t.topic.clone(), t.partition),
                    PartitionFetch {
                        fetch_offset: t.offset,
                        current_leader_epoch: t.leader_epoch,
                        log_start_offset: -1,
                        max_bytes: params.partition_max_bytes,
                    },
                )
            })
            .collect();
        let asked = wanted.keys().cloned().collect();
        let version = self.fetch_version().unwrap_or(0);
        let next = session.build(&wanted, version);
        let request = fetch_request(&next, params);
        match self.conn.begin(&request) {
            Ok(pending) => Ok(InFlightFetch {
                broker: self.broker,
                build: next.build,
                asked,
                pending,
            }),
            Err(e) => {
                // Not written: the broker never saw this epoch.
                session.reset();
                Err(e)
            }
        }
    }

    /// Closes fetch session `session_id` at the broker: a Fetch with epoch
    /// -1 and no partitions, answered at once (KIP-227). Errors are the
    /// caller's to ignore: the broker evicts a session left behind.
    pub(crate) async fn close_session(&self, session_id: i32) -> Result<(), Error> {
        if self
            .fetch_version()
            .is_none_or(|v| v < super::fetch_session::MIN_SESSION_VERSION)
        {
            return Ok(());
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_session_id(session_id)
            .with_session_epoch(super::fetch_session::FINAL_EPOCH);
        self.conn.send(&request).await.map(|_| ())
    }

    /// Looks up an offset (`timestamp`: [`EARLIEST_TIMESTAMP`],
    /// [`LATEST_TIMESTAMP`] or milliseconds) for each of `partitions`
    /// (topic, partition, leader epoch), answering per partition with the
    /// offset or the broker's error code.
    pub(crate) async fn list_offsets(
        &self,
        partitions: &[(String, i32, i32)],
        timestamp: i64,
        isolation: IsolationLevel,
    ) -> Result<Vec<(String, i32, Result<i64, KafkaCode>)>, Error> {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        let mut asked = HashSet::new();
        for (topic, partition, epoch) in partitions {
            asked.insert((topic.clone(), *partition));
            let entry = ListOffsetsPartition::default()
                .with_partition_index(*partition)
                .with_current_leader_epoch(*epoch)
                .with_timestamp(timestamp);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![entry]),
                ),
            }
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation.as_i8())
            .with_topics(topics);
        let response = self.conn.send(&request).await?;
        let mut out = Vec::new();
        for topic in response.topics {
            let name = topic.name.0.to_string();
            for p in topic.partitions {
                if !asked.remove(&(name.clone(), p.partition_index)) {
                    continue;
                }
                let result = match KafkaCode::from_i16(p.error_code) {
                    Some(code) => Err(code),
                    None if p.offset < 0 => Err(KafkaCode::OFFSET_NOT_AVAILABLE),
                    None => Ok(p.offset),
                };
                out.push((name.clone(), p.partition_index, result));
            }
        }
        // A partition the broker left out of its answer is retried later.
        for (topic, partition) in asked {
            out.push((topic, partition, Err(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)));
        }
        Ok(out)
    }
}

/// The Fetch for a session's next request.
fn fetch_request(next: &SessionRequest, params: &FetchParams) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, index), asked) in &next.partitions {
        let partition = FetchPartition::default()
            .with_partition(*index)
            .with_current_leader_epoch(asked.current_leader_epoch)
            .with_fetch_offset(asked.fetch_offset)
            .with_log_start_offset(asked.log_start_offset)
            .with_partition_max_bytes(asked.max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let mut forgotten: Vec<ForgottenTopic> = Vec::new();
    for (topic, index) in &next.forgotten {
        match forgotten.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partitions.push(*index),
            None => forgotten.push(
                ForgottenTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![*index]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(params.max_wait_ms)
        .with_min_bytes(params.min_bytes)
        .with_max_bytes(params.max_bytes)
        .with_isolation_level(params.isolation.as_i8())
        .with_session_id(next.session_id)
        .with_session_epoch(next.session_epoch)
        .with_rack_id(params.rack.clone().unwrap_or_default())
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}
