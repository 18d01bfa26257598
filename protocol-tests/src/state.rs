//! Cluster state shared by every fake broker.
//!
//! [`ClusterState`] holds the brokers (with their advertised API versions), the
//! topics and their partitions (leader, leader epoch, log), the producer id
//! allocator, the transaction coordinator's state (see [`crate::txn`]),
//! consumer group membership (see [`crate::group_coordinator`]) and
//! committed consumer group offsets. It lives behind one mutex in
//! [`Shared`], which also carries the fault registry, the request journal and
//! the "new data" signal long-polling fetches wait on. The mutexes are never
//! held across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use tokio::sync::watch;
use uuid::Uuid;

use crate::chaos::Chaos;
use crate::faults::FaultRegistry;
use crate::fetch_sessions::FetchSessionCache;
use crate::group_coordinator::{CommittedOffset, GroupCoordinator};
use crate::log::{PartitionLog, ProducerStateRules};
use crate::txn::Transaction;
use crate::versions::ApiVersionTable;

/// One broker's identity and configuration.
#[derive(Debug, Clone)]
pub(crate) struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub versions: ApiVersionTable,
}

/// One partition: its leader and its log.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub log: PartitionLog,
}

/// One topic.
#[derive(Debug)]
pub(crate) struct TopicState {
    pub id: Uuid,
    pub partitions: Vec<PartitionState>,
}

/// The producer a transactional id maps to, as the transaction coordinator
/// keeps it (KIP-360: the previous id and epoch let a retried epoch bump or
/// producer id rotation be answered without fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransactionalProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_producer_id: i64,
    pub last_epoch: i16,
}

/// Everything the brokers agree on.
#[derive(Debug)]
pub(crate) struct ClusterState {
    pub cluster_id: String,
    pub brokers: Vec<BrokerInfo>,
    pub topics: IndexMap<String, TopicState>,
    /// Partition count for topics created by Metadata requests; `None` disables auto-creation.
    pub auto_create_partitions: Option<i32>,
    /// Partition count used when CreateTopics asks for the broker default (-1).
    pub default_partitions: i32,
    next_leader: usize,
    next_producer_id: i64,
    pub transactional_ids: HashMap<String, TransactionalProducer>,
    /// Transaction coordinator state per transactional id.
    pub transactions: HashMap<String, Transaction>,
    /// Transaction coordinators moved away from their hashed broker:
    /// `(broker id, coordinator epoch)`.
    pub txn_coordinators: HashMap<String, (i32, i32)>,
    /// How long the coordinator takes to write transaction markers.
    pub marker_delay: Duration,
    /// `transaction.max.timeout.ms`: InitProducerId with a longer timeout
    /// gets `INVALID_TRANSACTION_TIMEOUT`.
    pub max_transaction_timeout_ms: i32,
    /// How partitions treat producers they hold no state for.
    pub producer_state_rules: ProducerStateRules,
    pub committed: HashMap<(String, String, i32), CommittedOffset>,
    /// The controller id Metadata reports; `None`: the first broker.
    pub controller_id: Option<i32>,
    /// Brokers that serve requests but are left out of Metadata's broker
    /// list.
    pub unlisted_brokers: Vec<i32>,
    /// Consumer group membership (see [`crate::group_coordinator`]).
    pub groups: GroupCoordinator,
    /// Group coordinators moved away from their hashed broker.
    pub group_coordinators: HashMap<String, i32>,
}

impl ClusterState {
    pub fn new(brokers: Vec<BrokerInfo>) -> Self {
        Self {
            cluster_id: "fake-kafka-cluster".to_owned(),
            brokers,
            topics: IndexMap::new(),
            auto_create_partitions: None,
            default_partitions: 1,
            next_leader: 0,
            next_producer_id: 1000,
            transactional_ids: HashMap::new(),
            transactions: HashMap::new(),
            txn_coordinators: HashMap::new(),
            marker_delay: Duration::ZERO,
            max_transaction_timeout_ms: 900_000,
            producer_state_rules: ProducerStateRules::default(),
            committed: HashMap::new(),
            controller_id: None,
            unlisted_brokers: Vec::new(),
            groups: GroupCoordinator::default(),
            group_coordinators: HashMap::new(),
        }
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }

    pub fn broker_mut(&mut self, id: i32) -> Option<&mut BrokerInfo> {
        self.brokers.iter_mut().find(|b| b.id == id)
    }

    /// Creates `name` with `partitions` partitions, leaders spread round-robin.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Uuid, ResponseError> {
        if !is_legal_topic_name(name) {
            return Err(ResponseError::InvalidTopicException);
        }
        if self.topics.contains_key(name) {
            return Err(ResponseError::TopicAlreadyExists);
        }
        if partitions <= 0 {
            return Err(ResponseError::InvalidPartitions);
        }
        let id = Uuid::from_u128(
            0x0fa4_e000_0000_0000_0000_0000_0000_0000 | (self.topics.len() as u128 + 1),
        );
        let parts = (0..partitions)
            .map(|_| {
                let leader = self.brokers[self.next_leader % self.brokers.len()].id;
                self.next_leader += 1;
                PartitionState {
                    leader,
                    leader_epoch: 0,
                    log: PartitionLog::default(),
                }
            })
            .collect();
        self.topics.insert(
            name.to_owned(),
            TopicState {
                id,
                partitions: parts,
            },
        );
        Ok(id)
    }

    pub fn topic_name_by_id(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    pub fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get_mut(topic)?.partitions.get_mut(index)
    }

    /// Allocates a fresh producer id.
    pub fn allocate_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        id
    }

    /// The coordinator of consumer group `group`: the hashed broker unless
    /// the group was moved.
    pub fn group_coordinator(&self, group: &str) -> &BrokerInfo {
        self.group_coordinators
            .get(group)
            .and_then(|id| self.broker(*id))
            .unwrap_or_else(|| self.coordinator_for(group))
    }

    /// The coordinator broker a group or transactional id hashes to.
    pub fn coordinator_for(&self, key: &str) -> &BrokerInfo {
        let hash = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        &self.brokers[hash as usize % self.brokers.len()]
    }
}

/// Kafka's rule for topic names (`Topic.validate`): 1 to 249 characters
/// from `[a-zA-Z0-9._-]`, and not `.` or `..`. Brokers answer any other
/// name with `INVALID_TOPIC_EXCEPTION` in Metadata and CreateTopics.
pub(crate) fn is_legal_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != ".."
}

/// One request as received, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The broker that received it.
    pub broker_id: i32,
    /// Its API key.
    pub api_key: ApiKey,
    /// Its API version.
    pub api_version: i16,
    /// The client id from the request header.
    pub client_id: Option<String>,
}

/// State shared between the cluster handle and every broker task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<ClusterState>,
    pub faults: Mutex<FaultRegistry>,
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Bumped on every append; long-polling fetches wait for it to change.
    pub data_changed: watch::Sender<u64>,
    /// Connection lifetime chaos: the setting and its counters.
    pub chaos: Chaos,
    /// Every broker's fetch sessions.
    pub fetch_sessions: Mutex<FetchSessionCache>,
}

impl Shared {
    pub fn new(state: ClusterState) -> Self {
        Self {
            state: Mutex::new(state),
            faults: Mutex::new(FaultRegistry::default()),
            requests: Mutex::new(Vec::new()),
            data_changed: watch::Sender::new(0),
            chaos: Chaos::default(),
            fetch_sessions: Mutex::new(FetchSessionCache::default()),
        }
    }

    /// Locks the cluster state, recovering from a poisoned lock (a panicking
    /// test thread must not wedge every broker).
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultRegistry> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fetch_sessions(&self) -> MutexGuard<'_, FetchSessionCache> {
        self.fetch_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes fetches waiting for data.
    pub fn notify_data(&self) {
        self.data_changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}
