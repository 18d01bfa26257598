//! [`Consumer`]: a member of a consumer group, reading the partitions the
//! group assigns it (or those the application assigns by hand) and
//! committing its positions to the group.
//!
//! Owned here: the subscription, the rebalance flow (eager and
//! cooperative), the records fetched but not yet returned, positions
//! and commits. Fetching is the [`PartitionReader`]'s (same fetcher,
//! decoder and read_committed filter), the coordinator's requests are
//! [`super::coordinator`]'s, heartbeats run in [`super::heartbeat`]'s
//! task, and error codes are read by [`super::membership`].
//!
//! ```text
//!  poll ──► pending signals? ──► rebalance: revoke (eager) ─► JoinGroup
//!    │                              ─► leader assigns ─► SyncGroup
//!    │                              ─► revoke moved (cooperative) ─► assign
//!    ├──► auto-commit when due
//!    └──► records: from the buffer (topped up with the answers already
//!         in when it runs low), else one reader round
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::assignor::{Assignor, RebalanceProtocol};
use super::consumed::ConsumedRecord;
use super::coordinator::{Coordinator, GroupIdentity};
use super::group_config::ConsumerConfig;
use super::heartbeat::{self, HeartbeatPlan, Signals};
use super::join_round::{self, RoundPlan, Synced};
use super::membership::{Member, NO_GENERATION, Reaction, reaction};
use super::reader::PartitionReader;
use super::reader_config::{AutoOffsetReset, StartOffset};
use super::rebalance::{RebalanceContext, RebalanceListener, TopicPartition};
use super::record_queue::RecordQueue;
use crate::client_config::forward_to_config as forward;
use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::group::{ConsumerGroupMetadata, OffsetToCommit};
use crate::protocol::KafkaCode;
use crate::protocol::consumer_protocol::{Assignment, Subscription};

/// What the consumer reads.
#[derive(Debug, Clone)]
enum Interest {
    None,
    Topics(Vec<String>),
    Pattern(regex::Regex),
    /// Partitions assigned by the application: no group membership.
    Manual,
}

/// A consumer group member.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use std::time::Duration;
/// use smartkafka::consumer::Consumer;
///
/// let mut consumer = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     .build()
///     .await?;
/// consumer.subscribe(&["orders"])?;
/// loop {
///     for record in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
/// #   break;
/// }
/// consumer.close().await?;
/// # Ok(()) }
/// ```
pub struct Consumer {
    config: ConsumerConfig,
    reader: PartitionReader,
    coordinator: Coordinator,
    member: Member,
    interest: Interest,
    /// Topics the subscription matched at the last join.
    joined_topics: Vec<String>,
    /// The assigned partitions.
    owned: BTreeSet<TopicPartition>,
    /// Records fetched and not yet returned, in fetch order.
    buffer: RecordQueue,
    paused: BTreeSet<TopicPartition>,
    needs_join: bool,
    signals: Arc<Signals>,
    heartbeat: Option<JoinHandle<()>>,
    /// The rebalance round under way, if any.
    round: Option<JoinHandle<Result<Synced, Error>>>,
    /// In a mutex only so that the consumer is `Sync` with any listener.
    listener: std::sync::Mutex<Option<Box<dyn RebalanceListener>>>,
    last_auto_commit: Instant,
    last_topic_check: Instant,
    closed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id())
            .field("member_id", &self.member.member_id)
            .field("generation", &self.member.generation)
            .field("assignment", &self.owned)
            .finish_non_exhaustive()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

impl Consumer {
    /// A builder with the defaults of [`ConsumerConfig`].
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder {
            config: ConsumerConfig::new("localhost:9092", ""),
            listener: None,
        }
    }

    /// Validates `config` and connects to the cluster; nothing is
    /// subscribed yet.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, Error> {
        config.validate()?;
        let reader = PartitionReader::connect(config.reader.clone()).await?;
        let identity = GroupIdentity {
            group: config.group_id().to_string(),
            instance_id: config.group_instance_id.clone(),
        };
        let coordinator = Coordinator::new(Arc::clone(reader.admin().pool()), identity);
        let now = clock::now();
        Ok(Consumer {
            config,
            reader,
            coordinator,
            member: Member::new(),
            interest: Interest::None,
            joined_topics: Vec::new(),
            owned: BTreeSet::new(),
            buffer: RecordQueue::default(),
            paused: BTreeSet::new(),
            needs_join: false,
            signals: Signals::new(),
            heartbeat: None,
            round: None,
            listener: std::sync::Mutex::new(None),
            last_auto_commit: now,
            last_topic_check: now,
            closed: false,
        })
    }

    /// The settings the consumer was built with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Sets the rebalance listener (replacing any earlier one).
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        *self.listener_slot() = Some(Box::new(listener));
    }

    pub(crate) fn set_boxed_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        *self.listener_slot() = Some(listener);
    }

    fn listener_slot(&mut self) -> &mut Option<Box<dyn RebalanceListener>> {
        self.listener
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to `topics` (replacing any earlier subscription or
    /// manual assignment); the group assigns their partitions at the next
    /// `poll`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        self.check_open()?;
        if topics.is_empty() {
            return Err(Error::config("topics", "subscribe to at least one topic"));
        }
        for topic in topics {
            crate::topic_name::validate(topic)?;
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        self.leave_manual();
        self.interest = Interest::Topics(topics);
        self.needs_join = true;
        Ok(())
    }

    /// Subscribes to every topic whose whole name matches `pattern` (a
    /// regular expression), checked again every
    /// [`ConsumerConfig::metadata_max_age`] and at each rebalance; internal topics
    /// are left out.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), Error> {
        self.check_open()?;
        let anchored = format!("^(?:{pattern})$");
        let regex = regex::Regex::new(&anchored)
            .map_err(|e| Error::config("pattern", format!("not a regular expression: {e}")))?;
        self.leave_manual();
        self.interest = Interest::Pattern(regex);
        self.needs_join = true;
        Ok(())
    }

    /// Reads these partitions without group membership (Java's `assign`):
    /// each starts at the group's committed offset, else per
    /// `auto_offset_reset`. Commits are made outside any generation.
    /// Leaves the group first if subscribed.
    pub async fn assign(&mut self, partitions: &[(&str, i32)]) -> Result<(), Error> {
        self.check_open()?;
        self.unsubscribe().await?;
        let partitions: Vec<TopicPartition> = partitions
            .iter()
            .map(|(t, p)| ((*t).to_string(), *p))
            .collect();
        self.interest = Interest::Manual;
        self.add_assigned(&partitions).await?;
        Ok(())
    }

    /// Stops reading: revokes the assignment (committing first with
    /// auto-commit) and leaves the group.
    pub async fn unsubscribe(&mut self) -> Result<(), Error> {
        self.check_open()?;
        if matches!(self.interest, Interest::Manual) {
            self.leave_manual();
            return Ok(());
        }
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if !owned.is_empty() {
            self.revoke(&owned, true).await;
        }
        self.stop_heartbeat();
        self.leave_group("the consumer unsubscribed").await;
        self.interest = Interest::None;
        self.needs_join = false;
        Ok(())
    }

    fn leave_manual(&mut self) {
        if matches!(self.interest, Interest::Manual) {
            let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.drop_partitions(&owned);
            self.interest = Interest::None;
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.owned.iter().cloned().collect()
    }

    /// The subscribed topics (as matched at the last rebalance for a
    /// pattern).
    pub fn subscription(&self) -> Vec<String> {
        match &self.interest {
            Interest::Topics(topics) => topics.clone(),
            Interest::Pattern(_) => self.joined_topics.clone(),
            Interest::None | Interest::Manual => Vec::new(),
        }
    }

    /// This member's group id, generation, member id and instance id, for
    /// `send_offsets_to_transaction` (KIP-447).
    pub fn group_metadata(&self) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: self.config.group_id().to_string(),
            generation_id: self.member.generation,
            member_id: self.member.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    /// Waits up to `timeout` for records and returns at most
    /// `max_poll_records` of them, possibly none.
    ///
    /// Rebalances happen here: the listener's callbacks run inside `poll`,
    /// and a `poll` that takes part in a rebalance may return after
    /// `timeout` (JoinGroup waits for the whole group). Automatic commits
    /// are made here when due. Call `poll` at least every
    /// `max_poll_interval`, or the member leaves the group.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, Error> {
        self.check_open()?;
        let started = clock::now();
        self.signals.polled();
        self.ensure_group(started, timeout).await?;
        self.maybe_auto_commit().await;
        if self.buffer.iter().all(|r| is_among(&self.paused, r)) && !self.owned.is_empty() {
            let left = timeout.saturating_sub(started.elapsed());
            let signals = Arc::clone(&self.signals);
            let round = tokio::select! {
                round = self.reader.poll_queue(left) => Some(round),
                () = signals.wake.notified() => None,
            };
            match round {
                Some(Ok(records)) => self.buffer.append(records),
                Some(Err(e)) => return Err(e),
                // A rebalance or an error is pending: the next poll acts.
                None => {}
            }
        } else if self.owned.is_empty() {
            let left = timeout.saturating_sub(started.elapsed());
            let signals = Arc::clone(&self.signals);
            tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = signals.wake.notified() => {}
            }
        } else if self.buffer.len() <= self.config.max_poll_records {
            // What is held is nearly used up: take the answers already in
            // and ask those brokers again, without waiting. The buffer
            // holds at most this poll's share plus one answer per broker.
            let records = self.reader.take_ready().await;
            self.buffer.append(records);
        }
        Ok(self.take_records())
    }

    /// The records, one at a time, as a stream: each item is the next
    /// record or the error a `poll` returned (the stream goes on after
    /// errors; stop on the first fatal one if that suits).
    ///
    /// ```no_run
    /// # async fn demo(mut consumer: smartkafka::consumer::Consumer) -> Result<(), smartkafka::Error> {
    /// use futures_util::StreamExt;
    /// let mut records = std::pin::pin!(consumer.stream());
    /// while let Some(record) = records.next().await {
    ///     let record = record?;
    ///     println!("{}@{}", record.partition, record.offset);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(
        &mut self,
    ) -> impl futures_core::Stream<Item = Result<ConsumedRecord, Error>> + '_ {
        futures_util::stream::unfold(
            (self, VecDeque::<ConsumedRecord>::new()),
            |(consumer, mut ready)| async move {
                loop {
                    if let Some(record) = ready.pop_front() {
                        return Some((Ok(record), (consumer, ready)));
                    }
                    if consumer.closed {
                        return None;
                    }
                    match consumer.poll(Duration::from_secs(1)).await {
                        Ok(records) => ready.extend(records),
                        Err(e) => return Some((Err(e), (consumer, ready))),
                    }
                }
            },
        )
    }

    /// Commits the positions of every assigned partition (the offset of
    /// the next record `poll` would return), waiting for the answer.
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.check_open()?;
        let offsets = self.positions_to_commit(None);
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets, waiting for the answer. Fails with the
    /// coordinator's error if the group has rebalanced since this member's
    /// generation (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`,
    /// `REBALANCE_IN_PROGRESS`): those offsets may belong to another
    /// member now.
    pub async fn commit_offsets(&mut self, offsets: &[OffsetToCommit]) -> Result<(), Error> {
        self.check_open()?;
        if offsets.is_empty() {
            return Ok(());
        }
        for offset in offsets {
            if offset.offset < 0 {
                return Err(Error::new(
                    ErrorKind::InvalidPartition,
                    format!(
                        "{}-{}: cannot commit negative offset {}",
                        offset.topic, offset.partition, offset.offset
                    ),
                ));
            }
        }
        if self.round.is_some() {
            // The JoinGroup in flight holds the coordinator connection (a
            // broker answers one request per connection at a time) and the
            // generation is about to change: fail at once, as Java's
            // RebalanceInProgressException does, instead of waiting behind
            // the rebalance.
            return Err(Error::broker(
                KafkaCode::REBALANCE_IN_PROGRESS,
                format_args!(
                    "committing offsets of group `{}`: a rebalance is under way; \
                     commit again after the next poll completes it",
                    self.config.group_id()
                ),
            ));
        }
        let (generation, member_id) = self.commit_identity();
        let deadline = self.config.reader.client.request_timeout;
        let started = clock::now();
        loop {
            let result = self
                .coordinator
                .commit(generation, &member_id, offsets)
                .await;
            let error = match result {
                Ok(None) => return Ok(()),
                Ok(Some(code)) => match reaction(code) {
                    Reaction::Rediscover => {
                        self.coordinator.forget();
                        Error::broker(code, "committing offsets")
                    }
                    Reaction::Retry => Error::broker(code, "committing offsets"),
                    r => {
                        // While a rebalance round is under way the group has
                        // simply moved past this generation: the round
                        // settles the membership (as Java's
                        // RebalanceInProgressException leaves it alone).
                        let rebalancing = self.round.is_some();
                        if !rebalancing
                            && matches!(r, Reaction::ResetGeneration | Reaction::ResetMember)
                        {
                            self.signals_reset(r);
                        } else if r == Reaction::Rejoin {
                            self.needs_join = true;
                        }
                        return Err(Error::broker(
                            code,
                            format_args!(
                                "committing offsets of group `{}` at generation {generation} \
                                 (the group rebalanced: these partitions may belong to another member)",
                                self.config.group_id()
                            ),
                        ));
                    }
                },
                Err(e) if e.is_retriable() => {
                    self.coordinator.forget();
                    e
                }
                Err(e) => return Err(e),
            };
            if started.elapsed() >= deadline {
                return Err(error);
            }
            tracing::debug!(error = %error, "commit failed; retrying");
            tokio::time::sleep(self.config.reader.retry_backoff).await;
        }
    }

    /// Commits the positions in the background; `done` receives the
    /// result. Commits are sent in call order on the coordinator's
    /// connection, so a later commit is never overwritten by an earlier
    /// one.
    pub fn commit_async(&mut self, done: impl FnOnce(Result<(), Error>) + Send + 'static) {
        let offsets = self.positions_to_commit(None);
        if offsets.is_empty() || self.closed {
            done(Ok(()));
            return;
        }
        let (generation, member_id) = self.commit_identity();
        let mut coordinator = self.coordinator.fork();
        tokio::spawn(async move {
            let result = match coordinator.commit(generation, &member_id, &offsets).await {
                Ok(None) => Ok(()),
                Ok(Some(code)) => Err(Error::broker(code, "committing offsets")),
                Err(e) => Err(e),
            };
            done(result);
        });
    }

    /// The generation and member id a commit carries: this member's, or
    /// -1 and none outside group management (a manual assignment).
    fn commit_identity(&self) -> (i32, String) {
        match self.interest {
            Interest::Manual | Interest::None => (NO_GENERATION, String::new()),
            _ => (self.member.generation, self.member.member_id.clone()),
        }
    }

    /// The offset group `group_id` has committed for a partition, `None`
    /// without a commit.
    pub async fn committed(&self, topic: &str, partition: i32) -> Result<Option<i64>, Error> {
        let offsets = self
            .reader
            .admin()
            .committed_offsets(self.config.group_id(), topic, &[partition])
            .await?;
        Ok(offsets.get(&partition).copied().flatten())
    }

    /// The offset of the next record `poll` returns for an assigned
    /// partition; `None` if not assigned or not resolved yet.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        if !self.owned.contains(&(topic.to_string(), partition)) {
            return None;
        }
        self.buffer
            .iter()
            .find(|r| r.partition == partition && r.topic == topic)
            .map(|r| r.offset)
            .or_else(|| self.reader.position(topic, partition))
    }

    /// How far the position of an assigned partition is behind its end
    /// (the last stable offset under read_committed, else the high
    /// watermark), as of the latest fetch; `None` before the first.
    pub fn lag(&self, topic: &str, partition: i32) -> Option<i64> {
        let position = self.position(topic, partition)?;
        let end = match self.config.reader.isolation_level {
            super::IsolationLevel::ReadCommitted => {
                self.reader.last_stable_offset(topic, partition)
            }
            super::IsolationLevel::ReadUncommitted => self.reader.high_watermark(topic, partition),
        }?;
        Some((end - position).max(0))
    }

    /// Moves an assigned partition's position: the next `poll` returns
    /// records from `offset` on.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        self.reader.seek(topic, partition, offset)?;
        self.buffer
            .retain(|r| !(r.partition == partition && r.topic == topic));
        Ok(())
    }

    /// Stops returning and fetching records of an assigned partition until
    /// [`resume`](Self::resume); it stays assigned.
    pub fn pause(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        self.reader.pause(topic, partition)?;
        self.paused.insert((topic.to_string(), partition));
        Ok(())
    }

    /// Returns and fetches records of a paused partition again.
    pub fn resume(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        self.reader.resume(topic, partition)?;
        self.paused.remove(&(topic.to_string(), partition));
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<(String, i32)> {
        self.paused.iter().cloned().collect()
    }

    /// Commits (with auto-commit), revokes the assignment through the
    /// listener, leaves the group (a static member stays until its
    /// session times out, as KIP-345 has it) and closes its fetch sessions
    /// with the brokers. The consumer cannot be used afterwards.
    pub async fn close(mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if !owned.is_empty() {
            if matches!(self.interest, Interest::Manual) {
                if self.config.enable_auto_commit {
                    let offsets = self.positions_to_commit(None);
                    if let Err(e) = self.commit_offsets(&offsets).await {
                        tracing::warn!(error = %e, "commit on close failed");
                    }
                }
            } else {
                self.revoke(&owned, true).await;
            }
        }
        self.stop_heartbeat();
        if !matches!(self.interest, Interest::Manual | Interest::None) {
            self.leave_group("the consumer is closing").await;
        }
        self.reader.close_fetch_sessions().await;
        self.closed = true;
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::new(ErrorKind::Closed, "the consumer is closed"));
        }
        Ok(())
    }

    /// Up to `max_poll_records` records of partitions not paused.
    fn take_records(&mut self) -> Vec<ConsumedRecord> {
        let max = self.config.max_poll_records;
        if self.paused.is_empty() {
            return self.buffer.take(max);
        }
        let paused = &self.paused;
        self.buffer.take_where(max, |r| !is_among(paused, r))
    }

    /// The positions of `only` (or of every assigned partition) as offsets
    /// to commit.
    fn positions_to_commit(&self, only: Option<&[TopicPartition]>) -> Vec<OffsetToCommit> {
        let all: Vec<TopicPartition>;
        let partitions = match only {
            Some(p) => p,
            None => {
                all = self.owned.iter().cloned().collect();
                &all
            }
        };
        partitions
            .iter()
            .filter_map(|(topic, partition)| {
                let offset = self.position(topic, *partition)?;
                Some(OffsetToCommit::new(topic.clone(), *partition, offset))
            })
            .collect()
    }

    fn positions_of(&self, partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
        partitions
            .iter()
            .filter_map(|tp| Some((tp.clone(), self.position(&tp.0, tp.1)?)))
            .collect()
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.owned.is_empty()
            || self.last_auto_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        if !matches!(self.interest, Interest::Manual)
            && (!self.member.is_stable() || self.round.is_some())
        {
            return;
        }
        self.last_auto_commit = clock::now();
        let offsets = self.positions_to_commit(None);
        if let Err(e) = self.commit_offsets(&offsets).await {
            tracing::warn!(error = %e, "automatic commit failed");
        }
    }

    fn signals_reset(&mut self, reaction: Reaction) {
        // Acted on by the next `ensure_group`.
        self.member.reset(reaction);
        self.needs_join = true;
    }

    /// Stops the heartbeat task and any rebalance round under way.
    fn stop_heartbeat(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        if let Some(round) = self.round.take() {
            round.abort();
        }
    }

    async fn leave_group(&mut self, reason: &str) {
        if self.config.group_instance_id.is_some() || self.member.member_id.is_empty() {
            self.member.generation = NO_GENERATION;
            return;
        }
        let member_id = self.member.member_id.clone();
        if let Err(e) = self.coordinator.leave(&member_id, reason).await {
            tracing::warn!(error = %e, "leaving the group failed");
        }
        self.member = Member::new();
    }

    /// Runs a rebalance if one is pending or the member has not joined,
    /// waiting for it no longer than what is left of `timeout` (the round
    /// goes on in its task and the next `poll` picks it up).
    async fn ensure_group(&mut self, started: Instant, timeout: Duration) -> Result<(), Error> {
        if matches!(self.interest, Interest::None | Interest::Manual) {
            // A manual assignment has no group to rebalance.
            let _ = self.signals.take();
            return Ok(());
        }
        let pending = self.signals.take();
        if let Some(error) = pending.fatal {
            self.stop_heartbeat();
            let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.lose(&owned);
            self.member = Member::new();
            return Err(error);
        }
        if pending.poll_timeout {
            tracing::warn!(
                group = %self.config.group_id(),
                "the member left the group after max_poll_interval without a poll; rejoining"
            );
        }
        if let Some(reset) = pending.reset {
            self.member.reset(reset);
            self.needs_join = true;
        }
        if pending.rejoin {
            self.needs_join = true;
        }
        if let Interest::Pattern(_) = self.interest
            && self.last_topic_check.elapsed() >= self.config.metadata_max_age
        {
            self.last_topic_check = clock::now();
            if let Ok(topics) = self.subscribed_topics().await
                && topics != self.joined_topics
            {
                self.needs_join = true;
            }
        }
        if self.round.is_none() {
            if !self.needs_join && self.member.is_stable() {
                return Ok(());
            }
            if !self.member.is_stable() && !self.owned.is_empty() {
                // The generation ended without a rebalance: lost, not revoked.
                let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
                self.lose(&owned);
            }
            self.stop_heartbeat();
            self.start_round().await?;
        }
        let left = timeout.saturating_sub(started.elapsed());
        let Some(round) = self.round.as_mut() else {
            return Ok(());
        };
        let Ok(finished) = tokio::time::timeout(left, round).await else {
            // Still rebalancing: the next poll waits on.
            return Ok(());
        };
        self.round = None;
        let synced = match finished {
            Ok(Ok(synced)) => synced,
            Ok(Err(e)) => {
                self.coordinator.forget();
                return Err(e);
            }
            Err(join_error) => {
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!("the rebalance task stopped: {join_error}"),
                ));
            }
        };
        self.apply(synced).await
    }

    /// The topics the subscription names, for a pattern those the cluster
    /// has now.
    async fn subscribed_topics(&self) -> Result<Vec<String>, Error> {
        match &self.interest {
            Interest::Topics(topics) => Ok(topics.clone()),
            Interest::Pattern(regex) => {
                let metadata = self.reader.admin().metadata(None).await?;
                Ok(metadata
                    .topics
                    .values()
                    .filter(|t| !t.is_internal && regex.is_match(&t.name))
                    .map(|t| t.name.clone())
                    .collect())
            }
            Interest::None | Interest::Manual => Ok(Vec::new()),
        }
    }

    /// The rebalance protocol of the current generation (before the first,
    /// that of the most preferred assignor).
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.member
            .protocol
            .as_deref()
            .and_then(Assignor::from_name)
            .or_else(|| self.config.assignors.first().copied())
            .map_or(RebalanceProtocol::Eager, |a| a.rebalance_protocol())
    }

    /// Revokes what the rebalance protocol gives up before joining, then
    /// starts a JoinGroup/SyncGroup round.
    async fn start_round(&mut self) -> Result<(), Error> {
        let topics = self.subscribed_topics().await?;
        // Eager: give up everything before joining. Cooperative: only the
        // partitions of topics no longer subscribed.
        let revoke: Vec<TopicPartition> = match self.rebalance_protocol() {
            RebalanceProtocol::Eager => self.owned.iter().cloned().collect(),
            RebalanceProtocol::Cooperative => self
                .owned
                .iter()
                .filter(|(t, _)| !topics.contains(t))
                .cloned()
                .collect(),
        };
        if !revoke.is_empty() {
            self.revoke(&revoke, true).await;
        }
        self.joined_topics = topics.clone();
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        let protocols: Vec<(String, Bytes)> = self
            .config
            .assignors
            .iter()
            .map(|assignor| {
                let subscription = Subscription {
                    topics: topics.clone(),
                    user_data: None,
                    owned_partitions: match assignor.rebalance_protocol() {
                        RebalanceProtocol::Cooperative => owned.clone(),
                        RebalanceProtocol::Eager => Vec::new(),
                    },
                    generation_id: self.member.generation,
                    rack_id: self.config.reader.client_rack.clone(),
                };
                (assignor.name().to_string(), subscription.encode())
            })
            .collect();
        let plan = RoundPlan {
            identity: self.coordinator.identity().clone(),
            member_id: self.member.member_id.clone(),
            protocols,
            session_timeout: self.config.session_timeout,
            rebalance_timeout: self.config.max_poll_interval,
            retry_backoff: self.config.reader.retry_backoff,
        };
        self.round = Some(join_round::spawn(self.coordinator.fork(), plan));
        Ok(())
    }

    /// Takes the outcome of a round: the new generation and assignment,
    /// revoking what moved (cooperative) and adding what is new.
    async fn apply(&mut self, synced: Synced) -> Result<(), Error> {
        if synced.lost_membership && !self.owned.is_empty() {
            let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.lose(&owned);
        }
        let assignment = Assignment::decode(&synced.assignment).map_err(|e| {
            Error::protocol(format!(
                "the assignment of group `{}` does not decode: {e}",
                self.config.group_id()
            ))
        })?;
        self.member = Member {
            member_id: synced.member_id,
            generation: synced.generation,
            protocol: synced.protocol,
        };
        self.needs_join = false;
        let mut assigned: BTreeSet<TopicPartition> = BTreeSet::new();
        for (topic, partition) in assignment.partitions {
            if self.joined_topics.contains(&topic) {
                assigned.insert((topic, partition));
            } else {
                tracing::warn!(%topic, partition, "assigned a partition of a topic not subscribed; ignored");
            }
        }
        let moved: Vec<TopicPartition> = self.owned.difference(&assigned).cloned().collect();
        if !moved.is_empty() {
            // Cooperative: these go to another member once revoked here;
            // a second rebalance hands them over (KIP-429).
            self.revoke(&moved, true).await;
            self.needs_join = true;
        }
        let added: Vec<TopicPartition> = assigned.difference(&self.owned).cloned().collect();
        self.start_heartbeat();
        self.add_assigned(&added).await
    }

    fn start_heartbeat(&mut self) {
        self.stop_heartbeat();
        let plan = HeartbeatPlan {
            identity: self.coordinator.identity().clone(),
            member_id: self.member.member_id.clone(),
            generation: self.member.generation,
            interval: self.config.heartbeat_interval,
            session_timeout: self.config.session_timeout,
            max_poll_interval: self.config.max_poll_interval,
            retry_backoff: self.config.reader.retry_backoff,
        };
        self.heartbeat = Some(heartbeat::spawn(
            self.coordinator.fork(),
            plan,
            Arc::clone(&self.signals),
        ));
    }

    /// Adds partitions to the assignment at their committed offsets (else
    /// per `auto_offset_reset`), then tells the listener.
    async fn add_assigned(&mut self, added: &[TopicPartition]) -> Result<(), Error> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in added {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let mut starts = Vec::with_capacity(added.len());
        for (topic, partitions) in by_topic {
            let committed = self
                .reader
                .committed_offsets_to_start_from(self.config.group_id(), topic, &partitions)
                .await?;
            for partition in partitions {
                let start = match committed.get(&partition).copied().flatten() {
                    Some(offset) => StartOffset::Offset(offset),
                    None => match self.config.reader.auto_offset_reset {
                        AutoOffsetReset::Earliest => StartOffset::Earliest,
                        AutoOffsetReset::Latest => StartOffset::Latest,
                        AutoOffsetReset::None => {
                            return Err(Error::new(
                                ErrorKind::InvalidPartition,
                                format!(
                                    "{topic}-{partition} has no committed offset in group `{}` \
                                     and auto_offset_reset is none",
                                    self.config.group_id()
                                ),
                            ));
                        }
                    },
                };
                starts.push((topic.to_string(), partition, start));
            }
        }
        self.reader.add_partitions(starts);
        self.owned.extend(added.iter().cloned());
        if let Some(mut listener) = self.listener_slot().take() {
            let mut ctx = RebalanceContext::new(BTreeMap::new());
            listener.on_assigned(added, &mut ctx);
            *self.listener_slot() = Some(listener);
            for ((topic, partition), offset) in ctx.seeks {
                if let Err(e) = self.seek(&topic, partition, offset) {
                    tracing::warn!(error = %e, "seek from on_assigned ignored");
                }
            }
            self.commit_from_listener(ctx.commits).await;
        }
        Ok(())
    }

    /// Revokes partitions in an orderly rebalance: auto-commit, listener,
    /// then they stop being fetched.
    async fn revoke(&mut self, partitions: &[TopicPartition], may_commit: bool) {
        if may_commit && self.config.enable_auto_commit && self.member.is_stable() {
            let offsets = self.positions_to_commit(Some(partitions));
            if let Err(e) = self.commit_offsets(&offsets).await {
                tracing::warn!(error = %e, "commit before revoking partitions failed");
            }
        }
        if let Some(mut listener) = self.listener_slot().take() {
            let mut ctx = RebalanceContext::new(self.positions_of(partitions));
            listener.on_revoked(partitions, &mut ctx);
            *self.listener_slot() = Some(listener);
            if may_commit {
                self.commit_from_listener(ctx.commits).await;
            }
        }
        self.drop_partitions(partitions);
    }

    /// Partitions lost without a rebalance: the listener hears it, nothing
    /// is committed.
    fn lose(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        tracing::info!(group = %self.config.group_id(), lost = partitions.len(), "partitions lost");
        if let Some(mut listener) = self.listener_slot().take() {
            let mut ctx = RebalanceContext::new(self.positions_of(partitions));
            listener.on_lost(partitions, &mut ctx);
            *self.listener_slot() = Some(listener);
            if !ctx.commits.is_empty() {
                tracing::warn!("commits asked for lost partitions are ignored");
            }
        }
        self.drop_partitions(partitions);
    }

    async fn commit_from_listener(&mut self, commits: Vec<OffsetToCommit>) {
        if commits.is_empty() {
            return;
        }
        if let Err(e) = self.commit_offsets(&commits).await {
            tracing::warn!(error = %e, "commit from the rebalance listener failed");
        }
    }

    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        self.buffer.retain(|r| !is_among(partitions, r));
        for tp in partitions {
            self.owned.remove(tp);
            self.paused.remove(tp);
        }
        self.reader.remove_partitions(partitions);
    }
}

/// Builds a [`Consumer`].
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// let consumer = smartkafka::consumer::Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     .enable_auto_commit(false)
///     .build()
///     .await?;
/// # let _ = consumer; Ok(()) }
/// ```
#[must_use]
pub struct ConsumerBuilder {
    config: ConsumerConfig,
    listener: Option<Box<dyn RebalanceListener>>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConsumerBuilder {
    /// Comma-separated `host:port` list used to discover the cluster.
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        self.config.reader.client.bootstrap_servers =
            crate::client_config::ClientConfig::new(servers).bootstrap_servers;
        self
    }

    /// The consumer group (required).
    pub fn group_id(mut self, group: &str) -> Self {
        self.config.reader = self.config.reader.group_id(group);
        self
    }

    /// The client id (default `"smartkafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.reader = self.config.reader.client_id(id);
        self
    }

    /// Connects over TLS; see [`ClientConfig::tls`](crate::ClientConfig::tls).
    pub fn tls(mut self, tls: crate::security::TlsConfig) -> Self {
        self.config.reader = self.config.reader.tls(tls);
        self
    }

    /// Authenticates with SASL; see [`ClientConfig::sasl`](crate::ClientConfig::sasl).
    pub fn sasl(mut self, sasl: crate::security::SaslConfig) -> Self {
        self.config.reader = self.config.reader.sasl(sasl);
        self
    }

    forward! {
        /// Static membership (default none).
        group_instance_id: String;
        /// Session timeout (default 45 s).
        session_timeout: Duration;
        /// Heartbeat interval (default 3 s).
        heartbeat_interval: Duration;
        /// Maximum time between polls (default 5 minutes).
        max_poll_interval: Duration;
        /// Automatic commits (default on).
        enable_auto_commit: bool;
        /// Automatic commit interval (default 5 s).
        auto_commit_interval: Duration;
        /// Most records per poll (default 500).
        max_poll_records: usize;
        /// Assignors offered, most preferred first (default range, cooperative-sticky).
        assignors: Vec<Assignor>;
        /// Start of partitions without a commit (default latest).
        auto_offset_reset: AutoOffsetReset;
        /// Isolation level (default read_committed).
        isolation_level: super::IsolationLevel;
    }

    /// The rebalance listener.
    pub fn rebalance_listener(mut self, listener: impl RebalanceListener + 'static) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the configuration and connects.
    pub async fn build(self) -> Result<Consumer, Error> {
        let mut consumer = Consumer::new(self.config).await?;
        *consumer.listener_slot() = self.listener;
        Ok(consumer)
    }
}

/// Whether `record` belongs to one of `partitions`.
fn is_among<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
    record: &ConsumedRecord,
) -> bool {
    partitions
        .into_iter()
        .any(|(t, p)| *p == record.partition && *t == *record.topic)
}
