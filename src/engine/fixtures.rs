//! What the engine's tests share: one base configuration (each suite
//! changes only what it is about) and one way to write a cluster's
//! metadata.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::compression::Compression;
use crate::engine::partitioner::PartitionerRecipe;
use crate::engine::{Acks, BufferOwner, CompressAt, EngineConfig};
use crate::metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};

/// The topic the fixtures describe.
pub(crate) const TOPIC: &str = "t";

/// Plain settings: acks=all, 5 ms linger, 16 KiB batches, 1 MiB of buffer
/// held back by the engine itself, compression when sealed, no
/// idempotence, seed 7.
pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        acks: Acks::All,
        linger: Duration::from_millis(5),
        batch_size: 16 * 1024,
        buffer_memory: 1024 * 1024,
        buffer_owner: BufferOwner::Engine,
        max_request_size: 1024 * 1024,
        max_block: Duration::from_secs(60),
        delivery_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        retry_backoff: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        max_in_flight: 5,
        compression: Compression::None,
        compression_level: None,
        compress_at: CompressAt::Seal,
        metadata_max_age: Duration::from_secs(300),
        partitioner: PartitionerRecipe::default(),
        seed: 7,
        idempotence: false,
        transactional_id: None,
        transaction_timeout: Duration::from_secs(60),
    }
}

/// Metadata listing `brokers` (at `host:9000+id`) and, unless `partitions`
/// is `None`, the topic [`TOPIC`] with one `(id, leader, leader epoch)`
/// per partition.
pub(crate) fn metadata(
    host: &str,
    brokers: &[i32],
    partitions: Option<&[(i32, Option<i32>, i32)]>,
) -> ClusterMetadata {
    let mut topics = BTreeMap::new();
    if let Some(partitions) = partitions {
        let partitions = partitions
            .iter()
            .map(|(id, leader, epoch)| PartitionMetadata {
                id: *id,
                leader: *leader,
                leader_epoch: Some(*epoch),
                replicas: vec![],
                isr: vec![],
                error: None,
            })
            .collect();
        topics.insert(
            TOPIC.to_string(),
            TopicMetadata {
                name: TOPIC.into(),
                error: None,
                is_internal: false,
                partitions,
            },
        );
    }
    ClusterMetadata {
        cluster_id: None,
        controller_id: None,
        brokers: brokers
            .iter()
            .map(|id| BrokerMetadata {
                id: *id,
                host: host.into(),
                port: 9000 + u16::try_from(*id).unwrap_or(0),
                rack: None,
            })
            .collect(),
        topics,
    }
}
