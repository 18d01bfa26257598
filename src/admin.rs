//! A small admin client: cluster metadata, topic creation, offset lookups,
//! group coordinators and committed offsets, and the API versions negotiated
//! with each broker.
//!
//! It discovers the cluster from the bootstrap servers and reaches brokers
//! through a `BrokerPool` (one connection per broker, opened on first use
//! and replaced when it closes), its own or the one of the client it
//! serves.
//!
//! A broker id the client is told about but cannot find among the
//! metadata's brokers is never a dead end: a request any broker can answer
//! (CreateTopics, which a broker that is not the controller forwards since
//! KIP-590) goes to any broker, as the Java admin client sends it; a group
//! coordinator is reached at the address FindCoordinator gave; a partition
//! leader that is not listed is looked up again and reported as
//! `LEADER_NOT_AVAILABLE` (retriable) if still missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, GroupId, ListOffsetsRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use crate::client_config::ClientConfig;
use crate::error::{Error, ErrorKind};
use crate::metadata::ClusterMetadata;
use crate::net::connection::BrokerConnection;
use crate::net::pool::BrokerPool;
use crate::protocol::{KafkaCode, NegotiatedVersions};

/// How far apart two failed bootstrap rounds count as an unreachable
/// cluster; the admin client fails its first call at once either way.
const STARTUP_GRACE: Duration = Duration::from_millis(100);

/// An offset a consumer group committed, with the metadata string committed
/// with it (empty metadata reads as `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommittedOffset {
    /// The committed offset: the next record the group will read.
    pub offset: i64,
    /// The metadata committed with it, if any.
    pub metadata: Option<String>,
}

/// The offsets of committed offsets, their metadata dropped.
fn offsets_only(committed: BTreeMap<i32, Option<CommittedOffset>>) -> BTreeMap<i32, Option<i64>> {
    committed
        .into_iter()
        .map(|(p, c)| (p, c.map(|c| c.offset)))
        .collect()
}

/// A topic to create.
///
/// ```no_run
/// # async fn demo(admin: smartkafka::AdminClient) -> Result<(), smartkafka::Error> {
/// use smartkafka::NewTopic;
/// admin.create_topics(&[NewTopic::new("events", 6).replication_factor(3)]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// The number of partitions.
    pub partitions: i32,
    /// The replication factor; `-1` lets the broker use its default.
    pub replication_factor: i16,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default
    /// replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
        }
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, factor: i16) -> NewTopic {
        self.replication_factor = factor;
        self
    }
}

/// Which offset [`AdminClient::list_offsets`] looks up.
///
/// ```no_run
/// # async fn demo(admin: smartkafka::AdminClient) -> Result<(), smartkafka::Error> {
/// use smartkafka::OffsetSpec;
/// // The next offset to be written, per partition: the log end.
/// let end = admin.list_offsets("events", OffsetSpec::Latest).await?;
/// let start = admin.list_offsets("events", OffsetSpec::Earliest).await?;
/// # let _ = (end, start);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the high watermark for read_uncommitted).
    Latest,
    /// The first offset whose timestamp is at or after this many
    /// milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// An admin client for one cluster.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use smartkafka::{AdminClient, ClientConfig, NewTopic, OffsetSpec};
/// let admin = AdminClient::connect(ClientConfig::new("localhost:9092")).await?;
/// admin.create_topics(&[NewTopic::new("events", 6)]).await?;
/// let metadata = admin.metadata(Some(&["events"])).await?;
/// println!("{} partitions", metadata.topic("events").unwrap().partitions.len());
/// let ends = admin.list_offsets("events", OffsetSpec::Latest).await?;
/// # Ok(()) }
/// ```
pub struct AdminClient {
    pool: Arc<BrokerPool>,
    cluster: Mutex<ClusterMetadata>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = self.pool.config();
        f.debug_struct("AdminClient")
            .field("bootstrap_servers", &config.bootstrap_servers)
            .field("client_id", &config.client_id)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Validates `config`, connects to the first reachable bootstrap server
    /// and reads the cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<AdminClient, Error> {
        config.validate()?;
        let admin = AdminClient::on_pool(BrokerPool::new(config, STARTUP_GRACE)?);
        admin.metadata(Some(&[])).await?;
        Ok(admin)
    }

    /// An admin client on the connections of another client (a producer's
    /// lag collector); it connects on first use.
    pub(crate) fn on_pool(pool: Arc<BrokerPool>) -> AdminClient {
        AdminClient {
            pool,
            cluster: Mutex::new(ClusterMetadata::default()),
        }
    }

    /// The connections this client uses.
    pub(crate) fn pool(&self) -> &Arc<BrokerPool> {
        &self.pool
    }

    async fn any_connection(&self) -> Result<Arc<BrokerConnection>, Error> {
        // Each server's own failure (refused, not resolved, timed out) is
        // in the error.
        self.pool.any().await
    }

    /// The connection to broker `id`, opened if needed.
    async fn connection(&self, id: i32) -> Result<Arc<BrokerConnection>, Error> {
        self.pool.connection(id).await
    }

    /// Whether broker `id` can be reached by id: listed in the metadata
    /// (read again once if it is not) or learnt from an answer.
    async fn knows_broker(&self, id: i32) -> Result<bool, Error> {
        if self.pool.address(id).is_some() {
            return Ok(true);
        }
        self.metadata(Some(&[])).await?;
        Ok(self.pool.address(id).is_some())
    }

    /// Reads metadata for `topics` (`None`: every topic; `Some(&[])`: brokers
    /// only). Topics are never auto-created by this call.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<ClusterMetadata, Error> {
        let conn = self.any_connection().await?;
        let request = crate::metadata::metadata_request(topics, false);
        let response = conn.send(&request).await?;
        let metadata = ClusterMetadata::from_answer(&response)?;
        {
            let mut cluster = self.cluster.lock().await;
            cluster.brokers = metadata.brokers.clone();
            self.pool
                .set_brokers(metadata.brokers.iter().map(|b| (b.id, b.address())));
            cluster.controller_id = metadata.controller_id;
            cluster.cluster_id = metadata.cluster_id.clone();
            for (name, topic) in &metadata.topics {
                cluster.topics.insert(name.clone(), topic.clone());
            }
        }
        Ok(metadata)
    }

    /// The API versions negotiated with broker `id`.
    pub async fn api_versions(&self, id: i32) -> Result<NegotiatedVersions, Error> {
        Ok(self.connection(id).await?.versions().clone())
    }

    /// Creates topics through the controller and waits (up to the request
    /// timeout) until the cluster reports them. A topic that already exists
    /// fails with `TOPIC_ALREADY_EXISTS`.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<(), Error> {
        for topic in topics {
            crate::topic_name::validate(&topic.name)?;
        }
        // The controller creates topics; a broker that is not the controller
        // forwards the request (KIP-590), so any broker will do when the
        // controller is not named or not among the brokers listed (the
        // librdkafka mock cluster names controller 0 and lists brokers 1-3).
        let metadata = self.metadata(Some(&[])).await?;
        let controller = metadata
            .controller_id
            .filter(|id| metadata.broker(*id).is_some());
        let conn = match controller {
            Some(id) => self.connection(id).await?,
            None => {
                tracing::debug!(
                    controller = ?metadata.controller_id,
                    "the controller is not among the brokers; creating topics through any broker"
                );
                self.any_connection().await?
            }
        };
        let timeout_ms =
            i32::try_from(self.pool.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                    })
                    .collect(),
            );
        let response = conn.send(&request).await?;
        for result in &response.topics {
            if let Some(code) = KafkaCode::from_i16(result.error_code) {
                let detail = result.error_message.as_ref().map_or("", |m| m.as_str());
                return Err(Error::broker(
                    code,
                    format_args!("creating topic `{}` {detail}", result.name.0),
                ));
            }
        }
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        self.wait_for_topics(&names).await
    }

    async fn wait_for_topics(&self, names: &[&str]) -> Result<(), Error> {
        let started = crate::clock::now();
        let mut delay = Duration::from_millis(10);
        loop {
            let metadata = self.metadata(Some(names)).await?;
            let ready = names.iter().all(|n| {
                metadata.topic(n).is_some_and(|t| {
                    t.error.is_none()
                        && !t.partitions.is_empty()
                        && t.partitions.iter().all(|p| p.leader.is_some())
                })
            });
            if ready {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= self.pool.config().request_timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "topics {names:?} created but not visible in metadata after {waited:?}"
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Looks up an offset for every partition of `topic`, asking each
    /// partition's leader. Returns partition id to offset.
    pub async fn list_offsets(
        &self,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, i64>, Error> {
        crate::topic_name::validate(topic)?;
        let metadata = self.metadata(Some(&[topic])).await?;
        let topic_meta = metadata.topic(topic).ok_or_else(|| {
            Error::broker(
                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                format_args!("topic `{topic}`"),
            )
        })?;
        if let Some(code) = topic_meta.error {
            return Err(Error::broker(code, format_args!("topic `{topic}`")));
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
        for p in &topic_meta.partitions {
            let leader = p.leader.ok_or_else(|| {
                Error::broker(
                    KafkaCode::LEADER_NOT_AVAILABLE,
                    format_args!("{topic}-{}", p.id),
                )
            })?;
            by_leader
                .entry(leader)
                .or_default()
                .push((p.id, p.leader_epoch.unwrap_or(-1)));
        }
        let mut offsets = BTreeMap::new();
        for (leader, partitions) in by_leader {
            if !self.knows_broker(leader).await? {
                return Err(Error::broker(
                    KafkaCode::LEADER_NOT_AVAILABLE,
                    format_args!(
                        "the leader of {topic}-{}, broker {leader}, is not among the cluster's brokers",
                        partitions.first().map_or(-1, |p| p.0)
                    ),
                ));
            }
            let conn = self.connection(leader).await?;
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(id, epoch)| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*id)
                                        .with_current_leader_epoch(*epoch)
                                        .with_timestamp(spec.timestamp())
                                })
                                .collect(),
                        ),
                ]);
            let response = conn.send(&request).await?;
            for t in &response.topics {
                for p in &t.partitions {
                    if let Some(code) = KafkaCode::from_i16(p.error_code) {
                        return Err(Error::broker(
                            code,
                            format_args!("list offsets {topic}-{}", p.partition_index),
                        ));
                    }
                    offsets.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(offsets)
    }

    /// The broker that coordinates consumer group `group` (FindCoordinator
    /// with key type GROUP). Returns the broker id; the broker is added to
    /// the known brokers so later calls can reach it.
    pub async fn find_coordinator(&self, group: &str) -> Result<i32, Error> {
        let conn = self.any_connection().await?;
        let crate::net::txn_wire::FoundCoordinator {
            code,
            node,
            host,
            port,
        } = crate::net::txn_wire::lookup_coordinator(
            &conn,
            crate::engine::CoordinatorKind::Group,
            group,
        )
        .await?;
        if let Some(code) = KafkaCode::from_i16(code) {
            return Err(Error::broker(
                code,
                format_args!("finding the coordinator of group `{group}`"),
            ));
        }
        if !self.knows_broker(node).await? {
            // Not listed in the metadata: reach it where FindCoordinator
            // says it is, as the Java client does.
            let addr = crate::metadata::BrokerMetadata {
                id: node,
                host,
                port: u16::try_from(port).map_err(|_| {
                    Error::protocol(format!(
                        "FindCoordinator named port {port} for group `{group}`"
                    ))
                })?,
                rack: None,
            }
            .address();
            tracing::debug!(
                node, %addr, %group,
                "the group coordinator is not among the listed brokers; using the address FindCoordinator gave"
            );
            self.pool.learn(node, addr);
        }
        Ok(node)
    }

    /// The offsets consumer group `group` has committed for `partitions` of
    /// `topic` (OffsetFetch, asked of the group's coordinator). A partition
    /// without a commit maps to `None`.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, Error> {
        let committed = self
            .fetch_committed(group, topic, partitions, false)
            .await?;
        Ok(offsets_only(committed))
    }

    /// The offsets `group` has committed for `partitions` of `topic`, each
    /// with the metadata string committed with it (OffsetFetch, as
    /// [`committed_offsets`](Self::committed_offsets)). A partition without
    /// a commit maps to `None`.
    ///
    /// ```no_run
    /// # async fn demo(admin: smartkafka::AdminClient) -> Result<(), smartkafka::Error> {
    /// for (partition, committed) in admin.committed_with_metadata("billing", "orders", &[0, 1]).await? {
    ///     if let Some(c) = committed {
    ///         println!("{partition}: {} ({:?})", c.offset, c.metadata);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn committed_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<CommittedOffset>>, Error> {
        self.fetch_committed(group, topic, partitions, false).await
    }

    /// The committed offsets as a read_committed consumer must start from
    /// them (KIP-447, OffsetFetch v7+ with `require_stable`): while a
    /// transaction that commits offsets for these partitions is open the
    /// coordinator answers `UNSTABLE_OFFSET_COMMIT`, and the request is
    /// repeated after a growing backoff (100 ms to 1 s) for up to `wait`,
    /// as the Java consumer does; then that retriable error is returned.
    pub(crate) async fn stable_committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        wait: Duration,
    ) -> Result<BTreeMap<i32, Option<i64>>, Error> {
        let deadline = crate::clock::now() + wait;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self
                .fetch_committed(group, topic, partitions, true)
                .await
                .map(offsets_only)
            {
                Err(e)
                    if e.kafka_code() == Some(KafkaCode::UNSTABLE_OFFSET_COMMIT)
                        && crate::clock::now() + backoff < deadline =>
                {
                    tracing::debug!(%group, %topic, "offsets of an open transaction; asking again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                result => return result,
            }
        }
    }

    async fn fetch_committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        require_stable: bool,
    ) -> Result<BTreeMap<i32, Option<CommittedOffset>>, Error> {
        let coordinator = self.find_coordinator(group).await?;
        let conn = self.connection(coordinator).await?;
        let version = conn.versions().require(ApiKey::OffsetFetch)?;
        let topic_name = TopicName(StrBytes::from_string(topic.to_string()));
        let group_id = GroupId(StrBytes::from_string(group.to_string()));
        let mut request = OffsetFetchRequest::default();
        if version >= 7 {
            request.require_stable = require_stable;
        }
        if version >= 8 {
            request.groups = vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(group_id)
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name)
                            .with_partition_indexes(partitions.to_vec()),
                    ])),
            ];
        } else {
            request.group_id = group_id;
            request.topics = Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name)
                    .with_partition_indexes(partitions.to_vec()),
            ]);
        }
        let response = conn.send(&request).await?;
        let context = |p: Option<i32>| match p {
            Some(p) => format!("committed offset of group `{group}` for {topic}-{p}"),
            None => format!("committed offsets of group `{group}`"),
        };
        let mut offsets: BTreeMap<i32, Option<CommittedOffset>> =
            partitions.iter().map(|p| (*p, None)).collect();
        let mut record = |partition: i32,
                          code: i16,
                          offset: i64,
                          metadata: Option<&StrBytes>|
         -> Result<(), Error> {
            if let Some(code) = KafkaCode::from_i16(code) {
                return Err(Error::broker(code, context(Some(partition))));
            }
            if let Some(slot) = offsets.get_mut(&partition) {
                *slot = (offset >= 0).then(|| CommittedOffset {
                    offset,
                    metadata: metadata
                        .map(|m| m.as_str())
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned),
                });
            }
            Ok(())
        };
        if version >= 8 {
            for g in &response.groups {
                if let Some(code) = KafkaCode::from_i16(g.error_code) {
                    return Err(Error::broker(code, context(None)));
                }
                for t in g.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                    for p in &t.partitions {
                        record(
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                            p.metadata.as_ref(),
                        )?;
                    }
                }
            }
        } else {
            if let Some(code) = KafkaCode::from_i16(response.error_code) {
                return Err(Error::broker(code, context(None)));
            }
            for t in response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
            {
                for p in &t.partitions {
                    record(
                        p.partition_index,
                        p.error_code,
                        p.committed_offset,
                        p.metadata.as_ref(),
                    )?;
                }
            }
        }
        Ok(offsets)
    }
}
