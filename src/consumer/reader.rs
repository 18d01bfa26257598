//! [`PartitionReader`]: reads a fixed set of partitions, each from a start
//! offset the application chooses, without joining a consumer group.
//!
//! This module owns the assignment bookkeeping: per partition its position
//! (or the [`StartOffset`] still to resolve), its leader and leader epoch,
//! a preferred read replica when a broker names one (KIP-392), and the
//! latest watermarks. Each `poll` round refreshes metadata when something
//! went stale, resolves pending start offsets (ListOffsets at the leader,
//! OffsetFetch at the group coordinator through the [`AdminClient`]),
//! writes one Fetch to every broker that serves assigned partitions (all
//! of them queued before any answer is awaited), and hands each answer to
//! [`super::decode`]. The per-broker requests live in [`super::fetcher`].
//!
//! The reader keeps one fetch session per broker (KIP-227,
//! [`super::fetch_session`]): after the first full Fetch, a broker is sent
//! only the partitions whose position, leader epoch or limits changed, and
//! those no longer fetched from it (unassigned, paused, moved away) are
//! forgotten. Its answers name only the partitions with news; the others
//! keep their state. An unknown session or a wrong epoch, a lost
//! connection or an answer that does not fit drops the session, and the
//! next Fetch to that broker is full again; the answer in hand is not used
//! (positions did not move, so nothing is lost or read twice).
//!
//! Errors in one partition do not stop the others: leadership errors mark
//! metadata stale and the partition is retried in the next round;
//! `OFFSET_OUT_OF_RANGE` resets the position per
//! [`ReaderConfig::auto_offset_reset`]; a malformed batch stops its
//! partition at that batch and is reported (after the records read before
//! it, if any, have been returned).

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;

use super::consumed::ConsumedRecord;
use super::fetch_session::{FetchSession, SessionOutcome};
use super::fetcher::{EARLIEST_TIMESTAMP, FetchParams, FetchTarget, Fetcher, LATEST_TIMESTAMP};
use super::prefetch::{Answered, DecodeSettings, PendingFetch, Reply, any_answered};
use super::reader_config::{AutoOffsetReset, IsolationLevel, ReaderConfig, StartOffset};
use super::record_queue::RecordQueue;
use crate::admin::AdminClient;
use crate::error::{Error, ErrorKind};
use crate::group::{ConsumerGroupMetadata, OffsetToCommit};
use crate::net::pool::BrokerPool;
use crate::protocol::KafkaCode;
use crate::record::Topic;
use crate::record_batch::ReadOptions;

/// A partition by its shared topic name and number.
type TopicPartition = (Topic, i32);

/// How long a read_committed start waits for offsets an open transaction is
/// committing (the Java consumer's `default.api.timeout.ms`).
const STABLE_OFFSETS_WAIT: Duration = Duration::from_secs(60);

/// Partitions (topic, partition, leader epoch) to look up, per leader and
/// ListOffsets timestamp.
type OffsetLookups = BTreeMap<(i32, i64), Vec<(String, i32, i32)>>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// Not resolved yet.
    Pending(StartOffset),
    /// The offset of the next record to read.
    At(i64),
}

#[derive(Debug, Clone)]
struct PartitionState {
    position: Position,
    leader: Option<i32>,
    leader_epoch: i32,
    preferred_replica: Option<i32>,
    high_watermark: Option<i64>,
    last_stable_offset: Option<i64>,
}

impl PartitionState {
    fn new(start: StartOffset) -> PartitionState {
        let position = match start {
            StartOffset::Offset(offset) => Position::At(offset),
            other => Position::Pending(other),
        };
        PartitionState {
            position,
            leader: None,
            leader_epoch: -1,
            preferred_replica: None,
            high_watermark: None,
            last_stable_offset: None,
        }
    }

    /// The broker to fetch from: the preferred read replica if the broker
    /// named one that is known, else the leader.
    fn fetch_node(&self, brokers: &BrokerPool) -> Option<i32> {
        self.preferred_replica
            .filter(|id| brokers.address(*id).is_some())
            .or(self.leader)
    }

    fn forget_leader(&mut self) {
        self.leader = None;
        self.preferred_replica = None;
    }
}

/// Reads assigned partitions from chosen offsets, with read_committed
/// filtering of aborted transactions by default.
///
/// A reader does not join a consumer group and commits nothing itself; its
/// positions can be committed in a transaction by a transactional producer
/// (see [`offsets_to_commit`](Self::offsets_to_commit) and
/// [`group_metadata`](Self::group_metadata)).
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use std::time::Duration;
/// use smartkafka::consumer::{PartitionReader, ReaderConfig, StartOffset};
///
/// let config = ReaderConfig::new("localhost:9092").group_id("billing");
/// let mut reader = PartitionReader::connect(config).await?;
/// reader
///     .assign(&[
///         ("orders", 0, StartOffset::Committed("billing".into())),
///         ("orders", 1, StartOffset::Earliest),
///     ])
///     .await?;
/// loop {
///     for record in reader.poll(Duration::from_secs(1)).await? {
///         println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
///     let _next = reader.offsets_to_commit();
/// #   break;
/// }
/// # Ok(()) }
/// ```
pub struct PartitionReader {
    config: ReaderConfig,
    admin: AdminClient,
    fetchers: BTreeMap<i32, Fetcher>,
    /// The fetch session with each broker fetched from.
    sessions: BTreeMap<i32, FetchSession>,
    assignment: IndexMap<TopicPartition, PartitionState>,
    /// Assigned partitions left out of fetching until resumed.
    paused: std::collections::BTreeSet<TopicPartition>,
    metadata_stale: bool,
    /// An error met after records were read in the same round, reported by
    /// the next `poll`.
    deferred_error: Option<Error>,
    /// Fetches written ahead (at most one per broker), waiting for the
    /// next round.
    prefetched: Vec<PendingFetch>,
    /// Records whose positions moved but that a dropped `poll` did not
    /// return; the next `poll` returns them first.
    undelivered: RecordQueue,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("isolation_level", &self.config.isolation_level)
            .field("assignment", &self.assignment.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    /// Validates `config` and connects to the cluster (the first reachable
    /// bootstrap server). Nothing is assigned yet.
    pub async fn connect(config: ReaderConfig) -> Result<PartitionReader, Error> {
        config.validate()?;
        let admin = AdminClient::connect(config.client.clone()).await?;
        Ok(PartitionReader {
            config,
            admin,
            fetchers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            assignment: IndexMap::new(),
            paused: std::collections::BTreeSet::new(),
            metadata_stale: true,
            deferred_error: None,
            prefetched: Vec::new(),
            undelivered: RecordQueue::default(),
        })
    }

    /// The admin client on the reader's connections (shared with a group
    /// consumer's coordinator requests).
    pub(crate) fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// Adds partitions to the assignment, each from its start offset,
    /// keeping the positions of those already assigned; a partition
    /// already assigned is moved to its new start. Start offsets are
    /// resolved by the next `poll`.
    pub(crate) fn add_partitions(&mut self, partitions: Vec<(String, i32, StartOffset)>) {
        let mut names = self.topic_names();
        for (topic, partition, start) in partitions {
            let key = (shared_name(&mut names, &topic), partition);
            self.paused.remove(&key);
            self.assignment.insert(key, PartitionState::new(start));
        }
        self.metadata_stale = true;
    }

    /// Removes partitions from the assignment (those not assigned are
    /// ignored).
    pub(crate) fn remove_partitions(&mut self, partitions: &[(String, i32)]) {
        for (topic, partition) in partitions {
            let key = (Topic::from(topic.as_str()), *partition);
            self.rewind_undelivered(&key);
            self.assignment.shift_remove(&key);
            self.paused.remove(&key);
        }
    }

    /// Drops a partition's records that a dropped `poll` left undelivered,
    /// moving its position back to the first of them, so a pause, a seek or
    /// a revocation never has them returned later.
    fn rewind_undelivered(&mut self, key: &TopicPartition) {
        let mut first = None;
        self.undelivered.retain(|r| {
            let ours = *r.topic == *key.0 && r.partition == key.1;
            if ours {
                first = Some(first.map_or(r.offset, |f: i64| f.min(r.offset)));
            }
            !ours
        });
        if let (Some(offset), Some(state)) = (first, self.assignment.get_mut(key)) {
            state.position = Position::At(offset);
        }
    }

    /// Stops fetching an assigned partition until [`resume`](Self::resume);
    /// its position is kept.
    pub fn pause(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        let key = (Topic::from(topic), partition);
        if !self.assignment.contains_key(&key) {
            return Err(not_assigned(topic, partition));
        }
        self.rewind_undelivered(&key);
        self.paused.insert(key);
        Ok(())
    }

    /// Fetches a paused partition again.
    pub fn resume(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        let key = (Topic::from(topic), partition);
        if !self.assignment.contains_key(&key) {
            return Err(not_assigned(topic, partition));
        }
        self.paused.remove(&key);
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<(String, i32)> {
        self.paused
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect()
    }

    /// The settings the reader was built with.
    pub fn config(&self) -> &ReaderConfig {
        &self.config
    }

    /// Replaces the assignment with `partitions`, each starting at its
    /// [`StartOffset`], and resolves the start offsets now.
    ///
    /// Fails if a topic name breaks Kafka's rules (`INVALID_TOPIC_EXCEPTION`,
    /// without asking the cluster), if a topic or partition does not exist,
    /// if an offset is negative, or if a start offset cannot be looked up;
    /// the assignment is then left empty.
    pub async fn assign(&mut self, partitions: &[(&str, i32, StartOffset)]) -> Result<(), Error> {
        self.assignment.clear();
        self.paused.clear();
        self.undelivered.clear();
        self.deferred_error = None;
        let mut names = Vec::new();
        let mut assignment = IndexMap::new();
        for (topic, partition, start) in partitions {
            crate::topic_name::validate(topic)?;
            if let StartOffset::Offset(offset) = start
                && *offset < 0
            {
                return Err(Error::new(
                    ErrorKind::InvalidPartition,
                    format!("{topic}-{partition}: start offset {offset} is negative"),
                ));
            }
            if let StartOffset::Committed(group) = start
                && group.is_empty()
            {
                return Err(Error::config(
                    "group_id",
                    "the group of a committed start offset is empty",
                ));
            }
            assignment.insert(
                (shared_name(&mut names, topic), *partition),
                PartitionState::new(start.clone()),
            );
        }
        self.assignment = assignment;
        self.metadata_stale = true;
        let result = async {
            self.refresh_metadata().await?;
            for ((topic, partition), state) in &self.assignment {
                if state.leader.is_none() {
                    return Err(Error::broker(
                        KafkaCode::LEADER_NOT_AVAILABLE,
                        format_args!("{topic}-{partition}"),
                    ));
                }
            }
            // A start offset that cannot be looked up right now (a leader
            // moving) is looked up again by `poll`.
            match self.resolve_positions().await {
                Err(e) if !e.is_retriable() => Err(e),
                _ => Ok(()),
            }
        }
        .await;
        if let Err(e) = result {
            self.assignment.clear();
            return Err(e);
        }
        Ok(())
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment
            .keys()
            .map(|(t, p)| (t.to_string(), *p))
            .collect()
    }

    /// The offset of the next record `poll` returns for a partition; `None`
    /// if it is not assigned or its start offset is not resolved yet.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        match self
            .assignment
            .get(&(Topic::from(topic), partition))?
            .position
        {
            Position::At(offset) => Some(offset),
            Position::Pending(_) => None,
        }
    }

    /// Every resolved position, in assignment order.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.assignment
            .iter()
            .filter_map(|((topic, partition), state)| match state.position {
                Position::At(offset) => Some((topic.to_string(), *partition, offset)),
                Position::Pending(_) => None,
            })
            .collect()
    }

    /// The latest high watermark a Fetch reported for a partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignment
            .get(&(Topic::from(topic), partition))?
            .high_watermark
    }

    /// The latest last stable offset a Fetch reported for a partition (the
    /// end of what read_committed can read).
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignment
            .get(&(Topic::from(topic), partition))?
            .last_stable_offset
    }

    /// The current positions as offsets to commit (the next offset to read
    /// per partition), for
    /// `send_offsets_to_transaction(reader.offsets_to_commit(), reader.group_metadata())`.
    pub fn offsets_to_commit(&self) -> Vec<OffsetToCommit> {
        self.positions()
            .into_iter()
            .map(|(topic, partition, offset)| OffsetToCommit::new(topic, partition, offset))
            .collect()
    }

    /// The group of [`ReaderConfig::group_id`], without generation or
    /// member (the reader is not a group member); `None` without a group.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.config
            .group_id
            .as_ref()
            .map(ConsumerGroupMetadata::new)
    }

    /// Moves an assigned partition's position to `offset`: the next `poll`
    /// reads from there. An offset outside the log is handled by
    /// [`ReaderConfig::auto_offset_reset`] when fetched.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        if offset < 0 {
            return Err(Error::new(
                ErrorKind::InvalidPartition,
                format!("{topic}-{partition}: cannot seek to negative offset {offset}"),
            ));
        }
        let key = (Topic::from(topic), partition);
        self.rewind_undelivered(&key);
        let state = self
            .assignment
            .get_mut(&key)
            .ok_or_else(|| not_assigned(topic, partition))?;
        state.position = Position::At(offset);
        self.deferred_error = None;
        Ok(())
    }

    /// Waits up to `timeout` for records and returns those available,
    /// possibly none when the timeout passes.
    ///
    /// Positions move only for the answers a round takes, and records whose
    /// positions moved are returned by the next `poll` if this one is
    /// dropped before it completes, so a dropped `poll` skips no records.
    ///
    /// `timeout` bounds the waiting for records (the Fetch `max_wait` is
    /// cut to what is left of it); connecting to a broker, metadata and
    /// offset lookups are bounded by the connect and request timeouts of
    /// [`ReaderConfig::client`], so a round that has to reconnect may end
    /// after `timeout`.
    ///
    /// Retriable failures (lost connections, leader changes, timeouts) are
    /// retried within `timeout` after a metadata refresh. Other errors are
    /// returned: a malformed batch ([`ErrorKind::Protocol`], the position
    /// stays at it so [`seek`](Self::seek) can move past it), an
    /// authorisation failure, `OFFSET_OUT_OF_RANGE` when
    /// [`AutoOffsetReset::None`] is set.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, Error> {
        self.poll_queue(timeout).await.map(|mut q| q.take_all())
    }

    /// [`poll`](Self::poll), with the records in the chunks they were
    /// decoded in.
    pub(crate) async fn poll_queue(&mut self, timeout: Duration) -> Result<RecordQueue, Error> {
        if !self.undelivered.is_empty() {
            return Ok(std::mem::take(&mut self.undelivered));
        }
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let started = crate::clock::now();
        if self.assignment.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(RecordQueue::default());
        }
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match self.round(left).await {
                Ok(records) if !records.is_empty() => return Ok(records),
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e, "reader round failed; retrying");
                    self.metadata_stale = true;
                    let left = timeout.saturating_sub(started.elapsed());
                    tokio::time::sleep(self.config.retry_backoff.min(left)).await;
                }
                Err(e) => return Err(e),
            }
            if let Some(e) = self.deferred_error.take() {
                return Err(e);
            }
            if started.elapsed() >= timeout {
                return Ok(RecordQueue::default());
            }
        }
    }

    /// One round: metadata and positions as needed, then one Fetch per
    /// broker (the one written ahead at the end of the last round, if it
    /// asked for the positions as they are now), answered and decoded on
    /// their own tasks; the round takes the answers that are in once the
    /// first one is, and positions move only for those.
    async fn round(&mut self, wait: Duration) -> Result<RecordQueue, Error> {
        // A partition whose metadata or start offset is missing is left
        // out of this round; the others are fetched all the same.
        let mut last_error = None;
        if self.metadata_stale || self.assignment.values().any(|s| s.leader.is_none()) {
            match self.refresh_metadata().await {
                Err(e) if !e.is_retriable() => return Err(e),
                Err(e) => last_error = Some(e),
                Ok(()) => {}
            }
        }
        match self.resolve_positions().await {
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => last_error = Some(e),
            Ok(()) => {}
        }

        let by_node = self.fetch_targets();
        if by_node.is_empty() {
            self.prefetched.clear();
            return match last_error {
                Some(e) => Err(e),
                None => {
                    tokio::time::sleep(self.config.retry_backoff.min(wait)).await;
                    Ok(RecordQueue::default())
                }
            };
        }
        // Fetches written ahead that asked for what is wanted now are kept;
        // the others (a seek, a pause, a new assignment since) are dropped.
        let mut kept: Vec<PendingFetch> = Vec::new();
        for fetch in std::mem::take(&mut self.prefetched) {
            let node = fetch.node();
            let wanted = by_node.get(&node).is_some_and(|targets| {
                fetch.covers(
                    targets
                        .iter()
                        .map(|t| ((t.topic.clone(), t.partition), t.offset)),
                )
            });
            if wanted && !kept.iter().any(|p| p.node() == node) {
                kept.push(fetch);
            }
        }
        self.prefetched = kept;
        let max_wait = self.config.max_wait.min(wait);
        for (node, targets) in &by_node {
            if self.prefetched.iter().any(|p| p.node() == *node) {
                continue;
            }
            match self.start_fetch(*node, targets, max_wait).await {
                Ok(fetch) => self.prefetched.push(fetch),
                Err(e) => last_error = Some(e),
            }
        }
        // The answers in by the deadline are used as soon as the first one
        // is: each broker is fetched from again as soon as its own answer
        // is taken, whatever the others are doing. The fetches stay in
        // `prefetched` while waiting, so a poll dropped meanwhile loses
        // nothing, and positions move only for answers taken.
        let deadline = tokio::time::Instant::from_std(crate::clock::now()) + wait;
        any_answered(&mut self.prefetched, deadline).await;
        let answers = self.take_answers();
        let records = self.apply_answers(answers, last_error)?;
        Ok(self.hand_out(records).await)
    }

    /// Takes the answers already in, without waiting, and writes the next
    /// Fetch to the brokers that sent them; none when no answer is in. A
    /// consumer calls this while it still holds records, so each broker
    /// is asked again as soon as it answered rather than when the
    /// application has used up what it holds.
    ///
    /// Errors are kept for the next [`poll`](Self::poll), which reports
    /// them as a round would.
    pub(crate) async fn take_ready(&mut self) -> RecordQueue {
        if !self.undelivered.is_empty() || self.deferred_error.is_some() {
            return RecordQueue::default();
        }
        let answers = self.take_answers();
        if answers.is_empty() {
            return RecordQueue::default();
        }
        match self.apply_answers(answers, None) {
            Ok(records) => self.hand_out(records).await,
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "taking a fetched answer failed; the next round retries");
                self.metadata_stale = true;
                RecordQueue::default()
            }
            Err(e) => {
                self.deferred_error = Some(e);
                RecordQueue::default()
            }
        }
    }

    /// The pending fetches whose answers are in, taken out of `prefetched`.
    fn take_answers(&mut self) -> Vec<(PendingFetch, Result<Reply, Error>)> {
        let mut answers = Vec::with_capacity(self.prefetched.len());
        let mut waiting = Vec::with_capacity(self.prefetched.len());
        for mut fetch in std::mem::take(&mut self.prefetched) {
            match fetch.take_answer() {
                Some(answer) => answers.push((fetch, answer)),
                None => waiting.push(fetch),
            }
        }
        self.prefetched = waiting;
        answers
    }

    /// Moves positions by what `answers` hold and returns their records;
    /// `last_error` (a failure earlier in the round) is returned if there
    /// are no records.
    fn apply_answers(
        &mut self,
        answers: Vec<(PendingFetch, Result<Reply, Error>)>,
        mut last_error: Option<Error>,
    ) -> Result<RecordQueue, Error> {
        let mut records = RecordQueue::default();
        let mut fatal = None;
        for (fetch, answer) in answers {
            let node = fetch.node();
            let partitions = match answer {
                Ok(reply) => match self.take_reply(node, reply) {
                    Ok(partitions) => partitions,
                    Err(e) if e.is_retriable() => {
                        last_error = Some(self.broker_failed(node, e));
                        continue;
                    }
                    Err(e) => {
                        fatal.get_or_insert(e);
                        continue;
                    }
                },
                Err(e) => {
                    if e.is_retriable() {
                        last_error = Some(self.broker_failed(node, e));
                        continue;
                    }
                    self.reset_session(node);
                    fatal.get_or_insert(e);
                    continue;
                }
            };
            for Answered { fetched, decoded } in partitions {
                let key = (fetched.topic.clone(), fetched.partition);
                let reset = self.config.auto_offset_reset;
                if self.paused.contains(&key) {
                    continue;
                }
                let Some(state) = self.assignment.get_mut(&key) else {
                    continue;
                };
                // Asked for where the partition still is, or stale.
                let position = match (state.position.clone(), fetch.offset_asked(&key)) {
                    (Position::At(position), Some(asked)) if position == asked => position,
                    _ => continue,
                };
                match fetched.error {
                    None => {}
                    Some(KafkaCode::OFFSET_OUT_OF_RANGE) if state.preferred_replica.is_some() => {
                        // A follower may lag the leader: ask the leader.
                        state.preferred_replica = None;
                        continue;
                    }
                    Some(KafkaCode::OFFSET_OUT_OF_RANGE) => {
                        let start = match reset {
                            AutoOffsetReset::Earliest => StartOffset::Earliest,
                            AutoOffsetReset::Latest => StartOffset::Latest,
                            AutoOffsetReset::None => {
                                fatal.get_or_insert(Error::broker(
                                    KafkaCode::OFFSET_OUT_OF_RANGE,
                                    format_args!(
                                        "{}-{} at offset {position} (log start {}, high watermark {})",
                                        key.0, key.1, fetched.log_start_offset, fetched.high_watermark
                                    ),
                                ));
                                continue;
                            }
                        };
                        tracing::info!(
                            topic = %key.0, partition = key.1, position, reset = ?start,
                            "offset out of range; resetting"
                        );
                        state.position = Position::Pending(start);
                        continue;
                    }
                    // Leadership and availability errors, and (as the Java
                    // consumer does) an unknown server error: retry after
                    // finding the leader again.
                    Some(code)
                        if code.is_retriable() || code == KafkaCode::UNKNOWN_SERVER_ERROR =>
                    {
                        tracing::debug!(topic = %key.0, partition = key.1, %code, "fetch error; refreshing metadata");
                        match fetched.current_leader {
                            Some((leader, epoch))
                                if epoch > state.leader_epoch
                                    && self.admin.pool().address(leader).is_some() =>
                            {
                                state.leader = Some(leader);
                                state.leader_epoch = epoch;
                                state.preferred_replica = None;
                            }
                            _ => {
                                state.forget_leader();
                                self.metadata_stale = true;
                            }
                        }
                        last_error = Some(Error::broker(
                            code,
                            format_args!("fetch {}-{}", key.0, key.1),
                        ));
                        continue;
                    }
                    Some(code) => {
                        fatal.get_or_insert(Error::broker(
                            code,
                            format_args!("fetch {}-{} at offset {position}", key.0, key.1),
                        ));
                        continue;
                    }
                }
                if fetched.high_watermark >= 0 {
                    state.high_watermark = Some(fetched.high_watermark);
                }
                if fetched.last_stable_offset >= 0 {
                    state.last_stable_offset = Some(fetched.last_stable_offset);
                }
                if let Some(replica) = fetched.preferred_read_replica
                    && Some(replica) != state.preferred_replica
                {
                    state.preferred_replica = Some(replica);
                    if self.admin.pool().address(replica).is_none() {
                        self.metadata_stale = true;
                    }
                }
                let Some(decoded) = decoded else {
                    continue;
                };
                state.position = Position::At(decoded.next_position);
                if let Some(e) = decoded.error {
                    if decoded.records.is_empty() {
                        fatal.get_or_insert(e);
                    } else {
                        self.deferred_error.get_or_insert(e);
                    }
                }
                records.push(decoded.records);
            }
        }
        if let Some(e) = fatal {
            if records.is_empty() {
                return Err(e);
            }
            self.deferred_error.get_or_insert(e);
        }
        if records.is_empty()
            && let Some(e) = last_error
        {
            return Err(e);
        }
        Ok(records)
    }

    /// Writes the next Fetch to the brokers that have none pending, then
    /// returns `records`, so the brokers work on the next ones while these
    /// are processed. The records wait in the reader meanwhile: if the
    /// caller is dropped while a Fetch is written, the next `poll` returns
    /// them (their positions have moved).
    async fn hand_out(&mut self, records: RecordQueue) -> RecordQueue {
        if records.is_empty() {
            return records;
        }
        self.undelivered = records;
        self.fetch_ahead().await;
        std::mem::take(&mut self.undelivered)
    }

    /// Hands an answer's session fields to broker `node`'s fetch session and
    /// returns the partitions to use: none when the session was dropped
    /// (the next Fetch is full), an error for any other top-level error.
    fn take_reply(&mut self, node: i32, reply: Reply) -> Result<Vec<Answered>, Error> {
        let session = reply.session;
        let outcome = match self.sessions.get_mut(&node) {
            Some(state) => state.handle_response(
                session.build,
                session.error_code,
                session.session_id,
                &session.named,
            ),
            None => SessionOutcome::Accepted,
        };
        match KafkaCode::from_i16(session.error_code) {
            None => {}
            Some(
                code @ (KafkaCode::FETCH_SESSION_ID_NOT_FOUND
                | KafkaCode::INVALID_FETCH_SESSION_EPOCH),
            ) => {
                tracing::debug!(broker = node, %code, "fetch session dropped; the next fetch is full");
                return Ok(Vec::new());
            }
            Some(code) => {
                return Err(Error::broker(
                    code,
                    format_args!("fetch from broker {node}"),
                ));
            }
        }
        match outcome {
            SessionOutcome::Accepted | SessionOutcome::Reset { usable: true } => {
                Ok(reply.partitions)
            }
            SessionOutcome::Reset { usable: false } => {
                tracing::debug!(
                    broker = node,
                    session = session.session_id,
                    "fetch answer does not fit the session; dropped, the next fetch is full"
                );
                Ok(Vec::new())
            }
        }
    }

    /// Closes the fetch session with every broker that has one (as the Java
    /// consumer does on close), so that the brokers free their slots at
    /// once; fetches written ahead are dropped. Waits at most the request
    /// timeout; a broker not reached evicts the session later.
    pub(crate) async fn close_fetch_sessions(&mut self) {
        self.prefetched.clear();
        let mut closing = Vec::new();
        for (node, session) in &mut self.sessions {
            if let Some(id) = session.close()
                && let Some(fetcher) = self.fetchers.get(node)
                && !fetcher.is_closed()
            {
                closing.push((*node, fetcher.close_session(id)));
            }
        }
        let wait = self.config.client.request_timeout;
        for (node, close) in closing {
            match tokio::time::timeout(wait, close).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(broker = node, error = %e, "closing the fetch session failed")
                }
                Err(_) => tracing::debug!(broker = node, "closing the fetch session timed out"),
            }
        }
    }

    /// Drops broker `node`'s fetch session (the next Fetch to it is full).
    fn reset_session(&mut self, node: i32) {
        if let Some(session) = self.sessions.get_mut(&node) {
            session.reset();
        }
    }

    /// The partitions to fetch now, by the broker to fetch them from:
    /// assigned, not paused, with a position and a known broker.
    fn fetch_targets(&self) -> BTreeMap<i32, Vec<FetchTarget>> {
        let mut by_node: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        for ((topic, partition), state) in &self.assignment {
            if !self.paused.is_empty() && self.paused.contains(&(topic.clone(), *partition)) {
                continue;
            }
            let (Position::At(offset), Some(node)) =
                (&state.position, state.fetch_node(self.admin.pool()))
            else {
                continue;
            };
            by_node.entry(node).or_default().push(FetchTarget {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                leader_epoch: state.leader_epoch,
            });
        }
        by_node
    }

    /// Writes the next Fetch to every broker that has none pending, for the
    /// positions as they are now.
    async fn fetch_ahead(&mut self) {
        for (node, targets) in self.fetch_targets() {
            if self.prefetched.iter().any(|p| p.node() == node) {
                continue;
            }
            match self.start_fetch(node, &targets, self.config.max_wait).await {
                Ok(fetch) => self.prefetched.push(fetch),
                // The next round asks again and reports the failure.
                Err(e) => tracing::debug!(broker = node, error = %e, "fetching ahead failed"),
            }
        }
    }

    /// Writes a Fetch for `targets` to broker `node`; its answer is awaited
    /// and decoded on a task of its own.
    async fn start_fetch(
        &mut self,
        node: i32,
        targets: &[FetchTarget],
        max_wait: Duration,
    ) -> Result<PendingFetch, Error> {
        let params = FetchParams {
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: i32::try_from(self.config.min_bytes).unwrap_or(i32::MAX),
            max_bytes: i32::try_from(self.config.max_fetch_bytes).unwrap_or(i32::MAX),
            partition_max_bytes: i32::try_from(self.config.max_partition_bytes).unwrap_or(i32::MAX),
            isolation: self.config.isolation_level,
            rack: self.config.client_rack.clone().map(StrBytes::from_string),
        };
        let settings = DecodeSettings {
            isolation: self.config.isolation_level,
            options: ReadOptions {
                max_decompressed_bytes: self.config.max_decompressed_batch_bytes,
                verify_crc: true,
            },
            budget: self.config.max_fetch_bytes,
        };
        let started = match self.fetcher(node).await {
            Ok(_) => match self.fetchers.get(&node) {
                Some(fetcher) => {
                    let session = self
                        .sessions
                        .entry(node)
                        .or_insert_with(|| FetchSession::new(true));
                    fetcher.start_fetch(targets, &params, session)
                }
                None => Err(Error::new(
                    ErrorKind::NoBrokerAvailable,
                    format!("broker {node}"),
                )),
            },
            Err(e) => Err(e),
        };
        match started {
            Ok(fetch) => {
                let asked = targets
                    .iter()
                    .map(|t| ((t.topic.clone(), t.partition), t.offset))
                    .collect();
                Ok(PendingFetch::spawn(fetch, asked, settings))
            }
            Err(e) => Err(self.broker_failed(node, e)),
        }
    }

    /// Drops a broker's connection after a failure and marks metadata stale.
    fn broker_failed(&mut self, node: i32, error: Error) -> Error {
        tracing::debug!(broker = node, %error, "fetching failed");
        self.fetchers.remove(&node);
        self.reset_session(node);
        let brokers = self.admin.pool();
        for state in self.assignment.values_mut() {
            if state.fetch_node(brokers) == Some(node) {
                state.preferred_replica = None;
            }
        }
        self.metadata_stale = true;
        error
    }

    async fn fetcher(&mut self, node: i32) -> Result<&Fetcher, Error> {
        if self.fetchers.get(&node).is_some_and(Fetcher::is_closed) {
            // A new connection: the broker's session is not trusted.
            self.fetchers.remove(&node);
            self.reset_session(node);
        }
        if !self.fetchers.contains_key(&node) {
            let brokers = self.admin.pool();
            let Some(addr) = brokers.address(node) else {
                // Named (a leader kept from an earlier answer) but no
                // longer listed: look the leaders up again next round.
                self.metadata_stale = true;
                for state in self.assignment.values_mut() {
                    if state.fetch_node(brokers) == Some(node) {
                        state.forget_leader();
                    }
                }
                return Err(Error::broker(
                    KafkaCode::LEADER_NOT_AVAILABLE,
                    format_args!("broker {node} is not among the cluster's brokers"),
                ));
            };
            let conn = self.admin.pool().connect_at(node, &addr).await?;
            let fetcher = Fetcher::new(node, conn);
            self.fetchers.insert(node, fetcher);
        }
        self.fetchers
            .get(&node)
            .ok_or_else(|| Error::new(ErrorKind::NoBrokerAvailable, format!("broker {node}")))
    }

    /// Reads metadata for the assigned topics: brokers, leaders, epochs.
    async fn refresh_metadata(&mut self) -> Result<(), Error> {
        let mut topics: Vec<&str> = self.assignment.keys().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        // The admin client records the brokers listed in the shared pool,
        // which is where addresses are looked up from here on.
        let metadata = self.admin.metadata(Some(&topics)).await?;
        let brokers = self.admin.pool();
        self.fetchers.retain(|id, _| metadata.broker(*id).is_some());
        self.sessions.retain(|id, _| metadata.broker(*id).is_some());
        let mut first_error = None;
        for ((topic, partition), state) in &mut self.assignment {
            let Some(t) = metadata.topic(topic) else {
                state.forget_leader();
                first_error.get_or_insert(Error::broker(
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format_args!("topic `{topic}`"),
                ));
                continue;
            };
            if let Some(code) = t.error {
                state.forget_leader();
                first_error.get_or_insert(Error::broker(code, format_args!("topic `{topic}`")));
                continue;
            }
            let Some(p) = t.partitions.iter().find(|p| p.id == *partition) else {
                state.forget_leader();
                first_error.get_or_insert(Error::new(
                    ErrorKind::InvalidPartition,
                    format!(
                        "{topic}-{partition}: the topic has {} partitions",
                        t.partitions.len()
                    ),
                ));
                continue;
            };
            let epoch = p.leader_epoch.unwrap_or(-1);
            // Never go back to an older leader epoch than one already seen
            // (unless the leader kept is no longer a broker of the cluster).
            if epoch < state.leader_epoch
                && state.leader.is_some_and(|id| brokers.address(id).is_some())
            {
                continue;
            }
            if state.leader != p.leader {
                state.preferred_replica = None;
            }
            state.leader = p.leader.filter(|id| brokers.address(*id).is_some());
            state.leader_epoch = epoch;
        }
        self.metadata_stale = false;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Resolves every pending start offset it can: committed offsets first
    /// (a partition without one starts at the log start), then log start
    /// and end offsets at the leaders.
    /// The committed offsets of `group` to start `partitions` from: under
    /// read_committed, stable ones (KIP-447: offsets an open transaction is
    /// committing are waited for, up to a minute as the Java consumer's
    /// `default.api.timeout.ms`), else as they stand.
    pub(crate) async fn committed_offsets_to_start_from(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, Error> {
        match self.config.isolation_level {
            IsolationLevel::ReadCommitted => {
                self.admin
                    .stable_committed_offsets(group, topic, partitions, STABLE_OFFSETS_WAIT)
                    .await
            }
            IsolationLevel::ReadUncommitted => {
                self.admin.committed_offsets(group, topic, partitions).await
            }
        }
    }

    /// The topic names of the assignment, one shared name per topic.
    fn topic_names(&self) -> Vec<Topic> {
        let mut names: Vec<Topic> = Vec::new();
        for (topic, _) in self.assignment.keys() {
            if !names.iter().any(|n| n.same(topic)) {
                names.push(topic.clone());
            }
        }
        names
    }

    async fn resolve_positions(&mut self) -> Result<(), Error> {
        // Committed offsets, per group and topic.
        let mut committed: BTreeMap<(String, String), Vec<i32>> = BTreeMap::new();
        for ((topic, partition), state) in &self.assignment {
            if let Position::Pending(StartOffset::Committed(group)) = &state.position {
                committed
                    .entry((group.clone(), topic.to_string()))
                    .or_default()
                    .push(*partition);
            }
        }
        for ((group, topic), partitions) in committed {
            let offsets = self
                .committed_offsets_to_start_from(&group, &topic, &partitions)
                .await?;
            for (partition, offset) in offsets {
                if let Some(state) = self
                    .assignment
                    .get_mut(&(Topic::from(topic.as_str()), partition))
                {
                    state.position = match offset {
                        Some(offset) => Position::At(offset),
                        None => Position::Pending(StartOffset::Earliest),
                    };
                }
            }
        }
        // Log start and end offsets, per leader.
        let mut lookups: OffsetLookups = BTreeMap::new();
        for ((topic, partition), state) in &self.assignment {
            let timestamp = match state.position {
                Position::Pending(StartOffset::Earliest) => EARLIEST_TIMESTAMP,
                Position::Pending(StartOffset::Latest) => LATEST_TIMESTAMP,
                _ => continue,
            };
            let Some(leader) = state.leader else { continue };
            lookups.entry((leader, timestamp)).or_default().push((
                topic.to_string(),
                *partition,
                state.leader_epoch,
            ));
        }
        let mut last_error = None;
        let isolation = self.config.isolation_level;
        for ((leader, timestamp), partitions) in lookups {
            let fetcher = match self.fetcher(leader).await {
                Ok(fetcher) => fetcher,
                Err(e) => {
                    last_error = Some(self.broker_failed(leader, e));
                    continue;
                }
            };
            let answers = match fetcher
                .list_offsets(&partitions, timestamp, isolation)
                .await
            {
                Ok(answers) => answers,
                Err(e) => {
                    last_error = Some(self.broker_failed(leader, e));
                    continue;
                }
            };
            for (topic, partition, answer) in answers {
                let Some(state) = self
                    .assignment
                    .get_mut(&(Topic::from(topic.as_str()), partition))
                else {
                    continue;
                };
                match answer {
                    Ok(offset) => state.position = Position::At(offset),
                    Err(code) if code.is_retriable() => {
                        state.forget_leader();
                        self.metadata_stale = true;
                        last_error = Some(Error::broker(
                            code,
                            format_args!("looking up the start offset of {topic}-{partition}"),
                        ));
                    }
                    Err(code) => {
                        return Err(Error::broker(
                            code,
                            format_args!("looking up the start offset of {topic}-{partition}"),
                        ));
                    }
                }
            }
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn not_assigned(topic: &str, partition: i32) -> Error {
    Error::new(
        ErrorKind::InvalidPartition,
        format!("{topic}-{partition} is not assigned"),
    )
}

/// `name` as one of `names` (so every partition of a topic shares one name,
/// and the maps keyed by partition compare a pointer rather than bytes),
/// added to them if it is new.
fn shared_name(names: &mut Vec<Topic>, name: &str) -> Topic {
    if let Some(known) = names.iter().find(|n| n.as_str() == name) {
        return known.clone();
    }
    let topic = Topic::from(name);
    names.push(topic.clone());
    topic
}
