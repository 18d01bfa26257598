//! [`KafkaLagCollector`]: lag read from the cluster itself.
//!
//! Per collection and topic: ListOffsets (latest) gives each partition's end
//! offset, FindCoordinator (key type GROUP) finds the group's coordinator,
//! and OffsetFetch asks it for the group's committed offsets, with the
//! [`ProcessingReport`]s consumers committed as their metadata. Both responses
//! pass the bounded-decoding guard like every other response. Lag is
//! `end - committed`; partitions without a commit follow the
//! [`MissingCommit`] rule.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{LagCollector, LagFuture, MissingCommit, PartitionLag, ProcessingReport};
use crate::admin::{AdminClient, OffsetSpec};
use crate::client_config::ClientConfig;
use crate::error::{Error, ErrorKind};

/// Collects lag with admin requests to the cluster.
///
/// The admin connection is opened on the first collection (so an
/// unreachable cluster never fails the producer's start) and reused.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use smartkafka::ClientConfig;
/// use smartkafka::health::{KafkaLagCollector, LagCollector, MissingCommit};
///
/// let collector = KafkaLagCollector::new(ClientConfig::new("localhost:9092"))
///     .missing_commit(MissingCommit::Healthy);
/// for p in collector.collect("order-processors", "orders").await? {
///     println!("partition {}: committed {:?}, end {}, lag {}", p.partition, p.committed, p.end, p.lag);
/// }
/// # Ok(()) }
/// ```
pub struct KafkaLagCollector {
    client: ClientConfig,
    admin: Mutex<Option<Arc<AdminClient>>>,
    missing_commit: MissingCommit,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaLagCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLagCollector")
            .field("bootstrap_servers", &self.client.bootstrap_servers)
            .field("missing_commit", &self.missing_commit)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaLagCollector {
    /// A collector for the cluster `client` connects to, counting partitions
    /// without a commit as fully lagging, with a 10 s timeout per collection.
    pub fn new(client: ClientConfig) -> Self {
        KafkaLagCollector {
            client,
            admin: Mutex::new(None),
            missing_commit: MissingCommit::FullyLagging,
            timeout: Duration::from_secs(10),
        }
    }

    /// A collector using an admin client you already have.
    pub fn from_admin(admin: Arc<AdminClient>) -> Self {
        KafkaLagCollector {
            client: ClientConfig::new(""),
            admin: Mutex::new(Some(admin)),
            missing_commit: MissingCommit::FullyLagging,
            timeout: Duration::from_secs(10),
        }
    }

    /// How partitions without a committed offset count (default: fully
    /// lagging, `lag = end`).
    #[must_use]
    pub fn missing_commit(mut self, rule: MissingCommit) -> Self {
        self.missing_commit = rule;
        self
    }

    /// The longest one collection may take (default 10 s); past it the
    /// collection fails with [`ErrorKind::Timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn admin(&self) -> Result<Arc<AdminClient>, Error> {
        let mut admin = self.admin.lock().await;
        if let Some(admin) = admin.as_ref() {
            return Ok(Arc::clone(admin));
        }
        let connected = Arc::new(AdminClient::connect(self.client.clone()).await?);
        *admin = Some(Arc::clone(&connected));
        Ok(connected)
    }

    async fn collect_now(&self, group: &str, topic: &str) -> Result<Vec<PartitionLag>, Error> {
        let admin = self.admin().await?;
        let ends = admin.list_offsets(topic, OffsetSpec::Latest).await?;
        let partitions: Vec<i32> = ends.keys().copied().collect();
        let committed = admin
            .committed_with_metadata(group, topic, &partitions)
            .await?;
        Ok(ends
            .iter()
            .map(|(p, end)| {
                let committed = committed.get(p).cloned().flatten();
                let report = committed
                    .as_ref()
                    .and_then(|c| c.metadata.as_deref())
                    .and_then(ProcessingReport::from_metadata);
                PartitionLag::new(*p, committed.map(|c| c.offset), *end, self.missing_commit)
                    .with_processing(report)
            })
            .collect())
    }
}

impl LagCollector for KafkaLagCollector {
    fn collect<'a>(&'a self, group: &'a str, topic: &'a str) -> LagFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.collect_now(group, topic)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "collecting the lag of group `{group}` on `{topic}` took over {:?}",
                        self.timeout
                    ),
                )),
            }
        })
    }
}
