//! Cluster metadata as the client sees it: brokers, topics, partitions,
//! leaders and leader epochs, built from a Metadata response.
//!
//! These are plain values; the engine's metadata cache (which refuses to go
//! back to an older leader epoch) is built on top of them.

use std::collections::BTreeMap;

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use crate::error::Error;
use crate::protocol::KafkaCode;

/// The Metadata request every client sends: `topics` by name (`None`: every
/// topic; an empty list: brokers only). `allow_auto_topic_creation` asks the
/// broker to create a missing topic (it still needs the broker's
/// `auto.create.topics.enable`); the producer asks for it as the Java
/// producer does by default, the admin client and the consumer never do.
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
pub(crate) fn metadata_request<S: AsRef<str>>(
    topics: Option<&[S]>,
    allow_auto_topic_creation: bool,
) -> MetadataRequest {
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::protocol::StrBytes;

    MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default().with_name(Some(TopicName(
                        StrBytes::from_string(n.as_ref().to_owned()),
                    )))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(allow_auto_topic_creation)
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerMetadata {
    /// The broker's node id.
    pub id: i32,
    /// The advertised host name.
    pub host: String,
    /// The advertised port.
    pub port: u16,
    /// The broker's rack, if configured.
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port`, ready to connect to.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetadata {
    /// The partition number.
    pub id: i32,
    /// The leader's node id, `None` while there is no leader.
    pub leader: Option<i32>,
    /// The leader epoch, when the broker reports one (Metadata v7+).
    pub leader_epoch: Option<i32>,
    /// The replica node ids.
    pub replicas: Vec<i32>,
    /// The in-sync replica node ids.
    pub isr: Vec<i32>,
    /// A per-partition error, such as `LEADER_NOT_AVAILABLE`.
    pub error: Option<KafkaCode>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// A topic-level error, such as `UNKNOWN_TOPIC_OR_PARTITION`.
    pub error: Option<KafkaCode>,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    pub is_internal: bool,
    /// The partitions, sorted by id.
    pub partitions: Vec<PartitionMetadata>,
}

/// A snapshot of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterMetadata {
    /// The cluster id, when the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller's node id, when known.
    pub controller_id: Option<i32>,
    /// The brokers, sorted by id.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    /// A snapshot from a Metadata answer, or the error of an answer whose
    /// top-level error code is set (per-topic errors stay in the topics).
    #[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
    pub(crate) fn from_answer(response: &MetadataResponse) -> Result<ClusterMetadata, Error> {
        if let Some(code) = KafkaCode::from_i16(response.error_code) {
            return Err(Error::broker(code, "metadata"));
        }
        Ok(ClusterMetadata::from_response(response))
    }

    /// Builds a snapshot from a decoded Metadata response.
    pub fn from_response(response: &MetadataResponse) -> ClusterMetadata {
        let mut brokers: Vec<BrokerMetadata> = response
            .brokers
            .iter()
            .filter_map(|b| {
                Some(BrokerMetadata {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: u16::try_from(b.port).ok()?,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let topics = response
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.to_string();
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMetadata {
                        id: p.partition_index,
                        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                        leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                        replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                        isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                        error: KafkaCode::from_i16(p.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                Some((
                    name.clone(),
                    TopicMetadata {
                        name,
                        error: KafkaCode::from_i16(t.error_code),
                        is_internal: t.is_internal,
                        partitions,
                    },
                ))
            })
            .collect();
        ClusterMetadata {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers,
            topics,
        }
    }

    /// The broker with node id `id`.
    pub fn broker(&self, id: i32) -> Option<&BrokerMetadata> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }
}
