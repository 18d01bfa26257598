//! The public handle on a running fake cluster and its builder.
//!
//! [`FakeCluster`] starts its brokers on ephemeral `127.0.0.1` ports, exposes
//! their addresses, lets tests change the cluster (topics, leaders, advertised
//! versions, faults, producer state, retention, connection lifetimes,
//! transaction and group coordinators) and read what it stored (records, raw
//! batches, transaction markers and the committed view, offsets, transaction
//! states, consumer group membership, the request journal, chaos counters). Dropping it stops every broker and connection task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::chaos::ConnectionLifetime;
use crate::faults::Fault;
use crate::group_coordinator::CommittedOffset;
use crate::group_coordinator::{GroupConfig, GroupMemberSnapshot, GroupSnapshot};
use crate::log::{ControlMarker, ProducerStateRules, StoredRecord};
use crate::security::{SaslSettings, SaslUsers, TlsMaterial, TlsOptions};
use crate::server::{Listener, run_broker};
use crate::state::{BrokerInfo, ClusterState, RequestRecord, Shared};
use crate::txn::TransactionState;
use crate::versions::ApiVersionTable;

type VersionEdit = (Option<i32>, Box<dyn Fn(&mut ApiVersionTable) + Send>);

/// Configures a [`FakeCluster`] before it starts.
pub struct FakeClusterBuilder {
    brokers: usize,
    topics: Vec<(String, i32)>,
    auto_create_partitions: Option<i32>,
    version_edits: Vec<VersionEdit>,
    connection_lifetime: Option<ConnectionLifetime>,
    producer_state_rules: ProducerStateRules,
    max_transaction_timeout: Duration,
    tls: Option<TlsOptions>,
    sasl: Option<SaslSettings>,
    groups: GroupConfig,
    fetch_session_slots: usize,
}

impl std::fmt::Debug for FakeClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClusterBuilder")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("auto_create_partitions", &self.auto_create_partitions)
            .field("version_edits", &self.version_edits.len())
            .field("connection_lifetime", &self.connection_lifetime)
            .field("producer_state_rules", &self.producer_state_rules)
            .field("max_transaction_timeout", &self.max_transaction_timeout)
            .field("tls", &self.tls)
            .field("groups", &self.groups)
            .field("fetch_session_slots", &self.fetch_session_slots)
            .field(
                "sasl_mechanisms",
                &self.sasl.as_ref().map(|s| &s.mechanisms),
            )
            .finish()
    }
}

impl Default for FakeClusterBuilder {
    fn default() -> Self {
        Self {
            brokers: 1,
            topics: Vec::new(),
            auto_create_partitions: None,
            version_edits: Vec::new(),
            connection_lifetime: None,
            producer_state_rules: ProducerStateRules::default(),
            max_transaction_timeout: Duration::from_secs(900),
            tls: None,
            sasl: None,
            groups: GroupConfig::default(),
            fetch_session_slots: crate::fetch_sessions::DEFAULT_CACHE_SLOTS,
        }
    }
}

impl FakeClusterBuilder {
    /// Number of brokers (ids 1..=n). At least one; defaults to one.
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n.max(1);
        self
    }

    /// Creates `name` with `partitions` partitions at start-up.
    pub fn topic(mut self, name: &str, partitions: i32) -> Self {
        self.topics.push((name.to_owned(), partitions));
        self
    }

    /// Lets Metadata requests create unknown topics with `partitions`
    /// partitions (off by default).
    pub fn auto_create_topics(mut self, partitions: i32) -> Self {
        self.auto_create_partitions = Some(partitions);
        self
    }

    /// Edits the advertised API versions of broker `broker` (or of every
    /// broker when `None`), e.g. `|t| t.set_max(ApiKey::Produce, 7)`.
    pub fn api_versions(
        mut self,
        broker: Option<i32>,
        edit: impl Fn(&mut ApiVersionTable) + Send + 'static,
    ) -> Self {
        self.version_edits.push((broker, Box::new(edit)));
        self
    }

    /// Closes every accepted connection after a lifetime drawn from
    /// `[min, max]`, deterministic per `seed` and connection number; about
    /// half the connections end right after applying a Produce request whose
    /// response is then never written. See [`crate::chaos`].
    pub fn connection_lifetime(mut self, min: Duration, max: Duration, seed: u64) -> Self {
        self.connection_lifetime = Some(ConnectionLifetime::new(min, max, seed));
        self
    }

    /// Which broker generation's producer-state rules partitions follow
    /// (defaults to [`ProducerStateRules::Current`]).
    pub fn producer_state_rules(mut self, rules: ProducerStateRules) -> Self {
        self.producer_state_rules = rules;
        self
    }

    /// The longest transaction timeout InitProducerId accepts (Kafka's
    /// `transaction.max.timeout.ms`, 15 minutes by default).
    pub fn max_transaction_timeout(mut self, max: Duration) -> Self {
        self.max_transaction_timeout = max;
        self
    }

    /// How long the first rebalance of an empty consumer group waits for
    /// more members (Kafka's `group.initial.rebalance.delay.ms`, 3 s on a
    /// real broker); 100 ms by default here so that tests stay fast. Members
    /// joining during the delay extend it by as much again, up to the
    /// rebalance timeout.
    pub fn group_initial_rebalance_delay(mut self, delay: Duration) -> Self {
        self.groups.initial_rebalance_delay = delay;
        self
    }

    /// The session timeouts JoinGroup accepts (Kafka's
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`,
    /// 6 s and 30 min by default); others get `INVALID_SESSION_TIMEOUT`.
    pub fn group_session_timeout_range(mut self, min: Duration, max: Duration) -> Self {
        self.groups.min_session_timeout = min;
        self.groups.max_session_timeout = max;
        self
    }

    /// How many fetch sessions (KIP-227) each broker keeps (Kafka's
    /// `max.incremental.fetch.session.cache.slots`, 1000 by default); when
    /// all are taken a new session evicts the least recently used. Zero
    /// turns sessions off: every Fetch is answered in full with session
    /// id 0.
    pub fn fetch_session_cache_slots(mut self, slots: usize) -> Self {
        self.fetch_session_slots = slots;
        self
    }

    /// Serves TLS only (listener type SSL, or SASL_SSL with
    /// [`sasl`](Self::sasl)), with a CA and a server certificate for
    /// `localhost` and `127.0.0.1` generated now; clients trust
    /// [`FakeCluster::tls_ca_pem`].
    pub fn tls(mut self) -> Self {
        self.tls.get_or_insert_with(TlsOptions::default);
        self
    }

    /// Requires a client certificate signed by the cluster's CA (mutual
    /// TLS); [`FakeCluster::client_cert_pem`] and
    /// [`FakeCluster::client_key_pem`] are one. Implies [`tls`](Self::tls).
    pub fn require_client_cert(mut self) -> Self {
        self.tls
            .get_or_insert_with(TlsOptions::default)
            .require_client_cert = true;
        self
    }

    /// Issues the server certificate for `names` only (to test clients
    /// against a certificate for the wrong host). Implies [`tls`](Self::tls).
    pub fn tls_server_names(mut self, names: &[&str]) -> Self {
        self.tls
            .get_or_insert_with(TlsOptions::default)
            .server_names = Some(names.iter().map(|n| (*n).to_string()).collect());
        self
    }

    /// Serves a server certificate that expired in 2002. Implies
    /// [`tls`](Self::tls).
    pub fn tls_expired(mut self) -> Self {
        self.tls.get_or_insert_with(TlsOptions::default).expired = true;
        self
    }

    /// Requires SASL authentication with one of `mechanisms` (`PLAIN`,
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` with unsecured
    /// tokens) before any request but
    /// ApiVersions, SaslHandshake and SaslAuthenticate.
    pub fn sasl(mut self, mechanisms: &[&str]) -> Self {
        self.sasl
            .get_or_insert_with(SaslSettings::default)
            .mechanisms = mechanisms.iter().map(|m| (*m).to_string()).collect();
        self
    }

    /// Gives every SASL session this lifetime (Kafka's
    /// `connections.max.reauth.ms`, KIP-368): SaslAuthenticate v1+ reports
    /// it in `session_lifetime_ms`, and once it has passed the broker closes
    /// the connection on any request but a SaslHandshake that starts a
    /// re-authentication. Zero (the default) keeps sessions for ever.
    /// SASL is on only with [`sasl`](Self::sasl).
    pub fn sasl_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.sasl
            .get_or_insert_with(SaslSettings::default)
            .session_lifetime = lifetime;
        self
    }

    /// Adds a SASL user (for every enabled mechanism). SASL is on only
    /// with [`sasl`](Self::sasl).
    pub fn sasl_user(mut self, name: &str, password: &str) -> Self {
        self.sasl
            .get_or_insert_with(SaslSettings::default)
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), password.to_string());
        self
    }

    /// Binds the brokers and starts serving.
    ///
    /// # Panics
    ///
    /// If a listener cannot be bound or a configured topic is invalid.
    pub async fn build(mut self) -> FakeCluster {
        // Users and a session lifetime alone do not turn SASL on.
        self.sasl = self.sasl.filter(|s| !s.mechanisms.is_empty());
        let mut listeners = Vec::with_capacity(self.brokers);
        let mut brokers = Vec::with_capacity(self.brokers);
        for index in 0..self.brokers {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a fake broker listener");
            let addr = listener.local_addr().expect("listener address");
            let id = index as i32 + 1;
            let mut versions = ApiVersionTable::default();
            if self.sasl.is_some() {
                versions.set(ApiKey::SaslHandshake, 0, 1);
                versions.set(ApiKey::SaslAuthenticate, 0, 2);
            }
            for (target, edit) in &self.version_edits {
                if target.is_none_or(|t| t == id) {
                    edit(&mut versions);
                }
            }
            brokers.push(BrokerInfo {
                id,
                host: addr.ip().to_string(),
                port: addr.port(),
                versions,
            });
            listeners.push((id, addr, listener));
        }
        let mut state = ClusterState::new(brokers);
        state.auto_create_partitions = self.auto_create_partitions;
        state.producer_state_rules = self.producer_state_rules;
        state.max_transaction_timeout_ms =
            i32::try_from(self.max_transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        state.groups.config = self.groups;
        for (name, partitions) in &self.topics {
            if let Err(e) = state.create_topic(name, *partitions) {
                panic!("cannot create topic {name:?} with {partitions} partitions: {e}");
            }
        }
        let shared = Arc::new(Shared::new(state));
        shared.chaos.set(self.connection_lifetime);
        shared.fetch_sessions().set_slots(self.fetch_session_slots);
        let material = self.tls.as_ref().map(TlsMaterial::generate);
        let security = Listener {
            tls: material.as_ref().map(|m| m.acceptor.clone()),
            sasl: self.sasl.clone().map(Arc::new),
        };
        let mut tasks = Vec::with_capacity(listeners.len());
        let mut addrs = Vec::with_capacity(listeners.len());
        for (id, addr, listener) in listeners {
            let handle = tokio::spawn(run_broker(
                listener,
                id,
                Arc::clone(&shared),
                security.clone(),
            ));
            tasks.push(handle.abort_handle());
            addrs.push((id, addr));
        }
        tasks.push(tokio::spawn(run_transaction_timer(Arc::clone(&shared))).abort_handle());
        FakeCluster {
            shared,
            tasks,
            addrs,
            tls: material.map(|m| (m.ca_pem, m.client_cert_pem, m.client_key_pem)),
            sasl_users: self.sasl.as_ref().map(|s| Arc::clone(&s.users)),
            sasl_authentications: self.sasl.map(|s| s.authentications).unwrap_or_default(),
        }
    }
}

/// How often the coordinators check transaction timeouts, delayed markers,
/// group sessions and rebalance deadlines between requests.
const TRANSACTION_TICK: Duration = Duration::from_millis(10);

/// Completes delayed transactions, aborts timed-out ones and runs consumer
/// group deadlines until aborted.
async fn run_transaction_timer(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(TRANSACTION_TICK).await;
        let now = tokio::time::Instant::now();
        let appended = {
            let mut state = shared.state();
            state.groups.tick(now);
            state.tick_transactions(now)
        };
        if appended {
            shared.notify_data();
        }
    }
}

/// A running in-process fake Kafka cluster.
///
/// Must be built inside a tokio runtime; the brokers run as tasks on it.
#[derive(Debug)]
pub struct FakeCluster {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    addrs: Vec<(i32, SocketAddr)>,
    /// The CA, and a client certificate and key it signed, in PEM.
    tls: Option<(String, String, String)>,
    /// The SASL users, shared with the brokers; `None` without SASL.
    sasl_users: Option<SaslUsers>,
    /// Successful SASL authentications, re-authentications included.
    sasl_authentications: Arc<AtomicU64>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeCluster {
    /// The CA certificate (PEM) a client must trust, when the cluster
    /// serves TLS.
    pub fn tls_ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.0.clone())
    }

    /// A client certificate (PEM) signed by the cluster's CA.
    pub fn client_cert_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.1.clone())
    }

    /// The key (PKCS#8 PEM) of [`client_cert_pem`](Self::client_cert_pem).
    pub fn client_key_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.2.clone())
    }

    /// A builder for a one-broker cluster without topics.
    pub fn builder() -> FakeClusterBuilder {
        FakeClusterBuilder::default()
    }

    /// `host:port` of every broker, comma-separated, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.addrs
            .iter()
            .map(|(_, a)| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `(broker id, address)` of every broker.
    pub fn broker_addrs(&self) -> Vec<(i32, SocketAddr)> {
        self.addrs.clone()
    }

    /// The broker ids.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.addrs.iter().map(|(id, _)| *id).collect()
    }

    /// Stops every broker and connection task (same as dropping the cluster).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Creates a topic, with leaders continuing the round-robin over brokers.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), ResponseError> {
        self.shared
            .state()
            .create_topic(name, partitions)
            .map(|_| ())
    }

    /// Names of all topics, in creation order.
    pub fn topics(&self) -> Vec<String> {
        self.shared.state().topics.keys().cloned().collect()
    }

    /// Number of partitions of `topic`, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.shared
            .state()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
    }

    /// The topic id of `topic`, if it exists.
    pub fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.shared.state().topics.get(topic).map(|t| t.id)
    }

    /// `(leader broker id, leader epoch)` of a partition, if it exists.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| (p.leader, p.leader_epoch))
    }

    /// Moves leadership of a partition to `broker_id` and bumps its leader
    /// epoch (even if the leader does not change). Returns the new epoch.
    ///
    /// # Panics
    ///
    /// If the partition or the broker does not exist.
    pub fn set_leader(&self, topic: &str, partition: i32, broker_id: i32) -> i32 {
        let mut state = self.shared.state();
        assert!(state.broker(broker_id).is_some(), "no broker {broker_id}");
        let part = state
            .partition_mut(topic, partition)
            .unwrap_or_else(|| panic!("no partition {topic}-{partition}"));
        part.leader = broker_id;
        part.leader_epoch += 1;
        part.leader_epoch
    }

    /// Makes Metadata report `controller` as the controller id (`None`: the
    /// first broker, the default). Any id may be given, including one no
    /// broker has, as librdkafka's mock cluster does (controller 0, brokers
    /// 1 to n).
    pub fn set_controller_id(&self, controller: Option<i32>) {
        self.shared.state().controller_id = controller;
    }

    /// Lists broker `broker_id` in Metadata responses or not (listed by
    /// default). An unlisted broker still serves requests, leads its
    /// partitions and coordinates its groups: a client learns of it only
    /// through answers that name it (a partition leader, a coordinator).
    pub fn set_listed_in_metadata(&self, broker_id: i32, listed: bool) {
        let mut state = self.shared.state();
        state.unlisted_brokers.retain(|id| *id != broker_id);
        if !listed {
            state.unlisted_brokers.push(broker_id);
        }
    }

    /// Every data record stored in a partition, in offset order (empty if
    /// the partition does not exist). Transaction markers are not records
    /// here; see [`Self::control_markers`].
    pub fn records(&self, topic: &str, partition: i32) -> Vec<StoredRecord> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| {
                p.log
                    .batches()
                    .iter()
                    .flat_map(|b| b.records.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stored batches of a partition as served by Fetch: the bytes the
    /// producer sent, with base offset and partition leader epoch re-stamped.
    pub fn raw_batches(&self, topic: &str, partition: i32) -> Vec<Bytes> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| p.log.batches().iter().map(|b| b.raw.clone()).collect())
            .unwrap_or_default()
    }

    /// How many produced batches the partition recognised as idempotent
    /// retries of batches already stored (answered without appending).
    pub fn duplicate_batches(&self, topic: &str, partition: i32) -> u64 {
        self.shared
            .state()
            .partition(topic, partition)
            .map_or(0, |p| p.log.duplicates())
    }

    /// High watermark (next offset) of a partition, or -1 if it does not exist.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        self.shared
            .state()
            .partition(topic, partition)
            .map_or(-1, |p| p.log.high_watermark())
    }

    /// Log start offset of a partition, or -1 if it does not exist.
    pub fn log_start_offset(&self, topic: &str, partition: i32) -> i64 {
        self.shared
            .state()
            .partition(topic, partition)
            .map_or(-1, |p| p.log.log_start_offset())
    }

    /// The offset group `group` committed for a partition, if any.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .state()
            .committed
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .map(|c| c.offset)
    }

    /// Stores `offset` as group `group`'s committed offset for a partition,
    /// as an OffsetCommit from one of its consumers would: for tests that
    /// simulate consumers keeping up or stalling.
    pub fn commit_offset(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        self.shared.state().committed.insert(
            (group.to_owned(), topic.to_owned(), partition),
            CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: None,
            },
        );
    }

    /// Turns Metadata-driven topic auto-creation on (with this many
    /// partitions) or off.
    pub fn set_auto_create_topics(&self, partitions: Option<i32>) {
        self.shared.state().auto_create_partitions = partitions;
    }

    /// Edits the advertised API versions of broker `broker` (every broker when
    /// `None`). Clients see the change on their next connection.
    pub fn update_api_versions(
        &self,
        broker: Option<i32>,
        mut edit: impl FnMut(&mut ApiVersionTable),
    ) {
        let mut state = self.shared.state();
        for b in state.brokers.iter_mut() {
            if broker.is_none_or(|id| id == b.id) {
                edit(&mut b.versions);
            }
        }
    }

    /// The advertised API versions of broker `broker_id`.
    pub fn api_versions(&self, broker_id: i32) -> Option<ApiVersionTable> {
        self.shared
            .state()
            .broker_mut(broker_id)
            .map(|b| b.versions.clone())
    }

    /// Arms a fault for the next matching requests.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults().push(fault);
    }

    /// Disarms every fault not yet consumed.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Remaining uses over all armed faults.
    pub fn pending_faults(&self) -> u64 {
        self.shared.faults().pending()
    }

    /// How many requests faults have been applied to so far.
    pub fn triggered_faults(&self) -> u64 {
        self.shared.faults().triggered()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests().clone()
    }

    /// Drops every fetch session of every broker, as a broker evicting them
    /// would: the next incremental Fetch of each gets
    /// `FETCH_SESSION_ID_NOT_FOUND`. Returns how many were dropped.
    pub fn evict_fetch_sessions(&self) -> usize {
        self.shared.fetch_sessions().evict_all()
    }

    /// How many fetch sessions are open over all brokers.
    pub fn fetch_sessions(&self) -> usize {
        self.shared.fetch_sessions().len()
    }

    /// The fetch session counters: sessions opened, evicted and closed,
    /// full, incremental and sessionless requests, session errors.
    pub fn fetch_session_stats(&self) -> crate::FetchSessionStats {
        self.shared.fetch_sessions().stats()
    }

    /// How many partitions Fetch requests have listed so far, over every
    /// broker and request (injected errors aside): with fetch sessions an
    /// incremental request lists only what changed.
    pub fn fetch_partitions_listed(&self) -> u64 {
        self.fetch_session_stats().partitions_listed
    }

    /// How many requests of `api_key` have been received so far.
    pub fn request_count(&self, api_key: ApiKey) -> usize {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.api_key == api_key)
            .count()
    }

    /// Forgets all producer state of a partition, like a broker whose
    /// producers were idle past `producer.id.expiration.ms`. What the next
    /// batch of a forgotten producer gets depends on the
    /// [`ProducerStateRules`]: under `Current` (Kafka 2.5+) it is accepted at
    /// any sequence; under `Legacy` a batch not at sequence 0 gets
    /// `UNKNOWN_PRODUCER_ID`.
    ///
    /// # Panics
    ///
    /// If the partition does not exist.
    pub fn expire_producers(&self, topic: &str, partition: i32) {
        self.shared
            .state()
            .partition_mut(topic, partition)
            .unwrap_or_else(|| panic!("no partition {topic}-{partition}"))
            .log
            .expire_producers();
    }

    /// Producer ids a partition holds idempotent producer state for, in
    /// ascending order (empty if the partition does not exist).
    pub fn producer_ids(&self, topic: &str, partition: i32) -> Vec<i64> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| p.log.producer_ids())
            .unwrap_or_default()
    }

    /// Deletes the records of a partition below `before_offset` (-1: up to
    /// the high watermark), as the DeleteRecords API or retention would: the
    /// log start offset rises to it, which Produce responses, Fetch and
    /// ListOffsets (earliest) report from then on. Under
    /// [`ProducerStateRules::Legacy`] producers whose batches were all removed
    /// are forgotten; under `Current` producer state is kept, as Kafka 2.4+
    /// does. Returns the new log start offset.
    ///
    /// # Errors
    ///
    /// `UnknownTopicOrPartition` if the partition does not exist,
    /// `OffsetOutOfRange` if `before_offset` is above the high watermark or
    /// negative (other than -1).
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ResponseError> {
        let mut state = self.shared.state();
        let rules = state.producer_state_rules;
        let part = state
            .partition_mut(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        part.log
            .delete_records(before_offset, rules)
            .map_err(|_| ResponseError::OffsetOutOfRange)
    }

    /// Switches the producer-state rules at run time (existing state is kept).
    pub fn set_producer_state_rules(&self, rules: ProducerStateRules) {
        self.shared.state().producer_state_rules = rules;
    }

    /// The producer-state rules in force.
    pub fn producer_state_rules(&self) -> ProducerStateRules {
        self.shared.state().producer_state_rules
    }

    /// Turns connection lifetime chaos on (or changes it) or off at run time.
    /// The new setting applies at once to every open connection, with
    /// lifetimes counted from now; `None` spares them all.
    pub fn set_connection_lifetime(&self, lifetime: Option<ConnectionLifetime>) {
        self.shared.chaos.set(lifetime);
    }

    /// The connection lifetime setting in force.
    pub fn connection_lifetime(&self) -> Option<ConnectionLifetime> {
        self.shared.chaos.lifetime()
    }

    /// Sets the password of SASL user `name` (adding the user if new) at
    /// run time, as a credential rotation would: open connections keep
    /// their sessions, and every later authentication, a re-authentication
    /// (KIP-368) included, checks the new password.
    ///
    /// # Panics
    ///
    /// If the cluster was built without [`sasl`](FakeClusterBuilder::sasl).
    pub fn set_sasl_password(&self, name: &str, password: &str) {
        self.sasl_users
            .as_ref()
            .expect("a cluster built with SASL")
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), password.to_string());
    }

    /// How many SASL authentications have succeeded so far, counting each
    /// re-authentication of a connection (KIP-368) as one more.
    pub fn sasl_authentications(&self) -> u64 {
        self.sasl_authentications.load(Ordering::Relaxed)
    }

    /// How many connections the brokers have accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.chaos.accepted()
    }

    /// How many connections the brokers closed because their lifetime ended
    /// (including those counted by [`Self::connections_killed_after_produce`]).
    pub fn connections_killed(&self) -> u64 {
        self.shared.chaos.killed()
    }

    /// How many connections were closed right after handling a Produce
    /// request, its response never written.
    pub fn connections_killed_after_produce(&self) -> u64 {
        self.shared.chaos.killed_after_produce()
    }

    /// The data records a read_committed consumer reading the partition from
    /// its log start sees: below the last stable offset, without records of
    /// aborted transactions, in offset order (empty if the partition does not
    /// exist). Computed from the log and its markers.
    pub fn committed_records(&self, topic: &str, partition: i32) -> Vec<StoredRecord> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| p.log.committed_records())
            .unwrap_or_default()
    }

    /// The commit and abort markers in a partition, in offset order.
    pub fn control_markers(&self, topic: &str, partition: i32) -> Vec<ControlMarker> {
        self.shared
            .state()
            .partition(topic, partition)
            .map(|p| p.log.control_markers())
            .unwrap_or_default()
    }

    /// Last stable offset of a partition (the first offset of its earliest
    /// open transaction, else the high watermark), or -1 if it does not exist.
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> i64 {
        self.shared
            .state()
            .partition(topic, partition)
            .map_or(-1, |p| p.log.last_stable_offset())
    }

    /// The coordinator's view of transactional id `transactional_id`, if an
    /// InitProducerId has registered it.
    pub fn transaction_state(&self, transactional_id: &str) -> Option<TransactionState> {
        self.shared.state().transaction_snapshot(transactional_id)
    }

    /// The broker coordinating consumer group `group` (what FindCoordinator
    /// answers for it).
    pub fn group_coordinator(&self, group: &str) -> i32 {
        self.shared.state().group_coordinator(group).id
    }

    /// Moves the coordinator of consumer group `group` to broker
    /// `broker_id`, as a failover of its `__consumer_offsets` partition
    /// would: FindCoordinator names the new broker, the old one answers
    /// `NOT_COORDINATOR`, JoinGroup and SyncGroup requests waiting at the
    /// old one are answered `NOT_COORDINATOR`, and the new coordinator
    /// loads what the group last stored: its committed offsets and the
    /// members, generation and assignments of its last completed rebalance
    /// (a rebalance in progress is lost; members that do not heartbeat the
    /// new coordinator within their session timeout are expired).
    ///
    /// # Panics
    ///
    /// If the broker does not exist.
    pub fn move_group_coordinator(&self, group: &str, broker_id: i32) {
        let mut state = self.shared.state();
        assert!(state.broker(broker_id).is_some(), "no broker {broker_id}");
        state.group_coordinators.insert(group.to_owned(), broker_id);
        state.groups.fail_over(group, tokio::time::Instant::now());
    }

    /// Drops every member of consumer group `group` (its committed offsets
    /// stay), as a coordinator that lost the group's membership would: the
    /// group becomes empty, waiting JoinGroup and SyncGroup requests and
    /// later requests from the old members get `UNKNOWN_MEMBER_ID`, and the
    /// members must join again.
    pub fn forget_group_members(&self, group: &str) {
        self.shared.state().groups.forget_members(group);
    }

    /// The coordinator's view of consumer group `group`: state, generation,
    /// protocol, leader and members with their raw assignments. `None` if no
    /// member ever joined it.
    pub fn group_state(&self, group: &str) -> Option<GroupSnapshot> {
        self.shared.state().groups.snapshot(group)
    }

    /// The members of consumer group `group`, in join order (empty if none).
    pub fn group_members(&self, group: &str) -> Vec<GroupMemberSnapshot> {
        self.group_state(group)
            .map(|g| g.members)
            .unwrap_or_default()
    }

    /// The current generation of consumer group `group`, if a member ever
    /// joined it.
    pub fn group_generation(&self, group: &str) -> Option<i32> {
        self.group_state(group).map(|g| g.generation)
    }

    /// How many rebalances consumer group `group` has started (0 if no
    /// member ever joined it).
    pub fn rebalances(&self, group: &str) -> u64 {
        self.group_state(group).map_or(0, |g| g.rebalances)
    }

    /// The broker coordinating transactional id `transactional_id`.
    pub fn transaction_coordinator(&self, transactional_id: &str) -> i32 {
        self.shared.state().txn_coordinator(transactional_id).0
    }

    /// Moves the transaction coordinator of `transactional_id` to broker
    /// `broker_id`, keeping its state, as a coordinator partition moving to
    /// another broker would: from now on FindCoordinator names the new broker
    /// and the old one answers `NOT_COORDINATOR` for this id. Bumps the
    /// coordinator epoch written into later markers. Returns the new
    /// coordinator epoch.
    ///
    /// # Panics
    ///
    /// If the broker does not exist.
    pub fn move_transaction_coordinator(&self, transactional_id: &str, broker_id: i32) -> i32 {
        let mut state = self.shared.state();
        assert!(state.broker(broker_id).is_some(), "no broker {broker_id}");
        let (_, epoch) = state.txn_coordinator(transactional_id);
        state
            .txn_coordinators
            .insert(transactional_id.to_owned(), (broker_id, epoch + 1));
        epoch + 1
    }

    /// How long the coordinator takes to write the markers of a transaction
    /// after EndTxn (or a coordinator-initiated abort); zero (the default)
    /// writes them before answering. Meanwhile the transaction is
    /// `PrepareCommit`/`PrepareAbort`: AddPartitionsToTxn, AddOffsetsToTxn,
    /// InitProducerId and a repeated EndTxn get `CONCURRENT_TRANSACTIONS`,
    /// and the partitions' last stable offset stays put.
    pub fn set_transaction_marker_delay(&self, delay: Duration) {
        self.shared.state().marker_delay = delay;
    }

    /// Runs the coordinator's timeout check now: every transaction open
    /// longer than its timeout is aborted (epoch bumped, abort markers
    /// written). The cluster also does this before every request and every
    /// 10 ms.
    pub fn abort_expired_transactions(&self) {
        if self
            .shared
            .state()
            .tick_transactions(tokio::time::Instant::now())
        {
            self.shared.notify_data();
        }
    }
}
