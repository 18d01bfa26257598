//! What the application hears about rebalances: the
//! [`RebalanceListener`] callbacks and the [`RebalanceContext`] through
//! which a callback commits or seeks.
//!
//! Callbacks run inside `poll` (never on another thread), in this order
//! for one rebalance: revoked (eager: every partition, before joining;
//! cooperative: only those moving away, after the assignment arrives),
//! then assigned (every new partition; cooperative: only the added ones,
//! possibly none). Partitions whose generation ended without a clean
//! rebalance (the member was removed, or fenced by its generation) are
//! reported as lost: they may already belong to another member, so they
//! must not be committed.

use std::collections::BTreeMap;

use crate::group::OffsetToCommit;

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// Callbacks for partitions that change hands, as Java's
/// `ConsumerRebalanceListener`.
///
/// ```
/// use smartkafka::consumer::{RebalanceContext, RebalanceListener};
/// struct CommitOnRevoke;
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_revoked(&mut self, partitions: &[(String, i32)], ctx: &mut RebalanceContext) {
///         // Commit what the application has processed before the
///         // partitions move to another member.
///         ctx.commit_positions();
///         println!("revoked {partitions:?}");
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// Partitions now assigned to this member (their positions are
    /// resolved when first fetched; a seek through `ctx` overrides them).
    fn on_assigned(&mut self, partitions: &[TopicPartition], ctx: &mut RebalanceContext) {
        let _ = (partitions, ctx);
    }

    /// Partitions leaving this member in an orderly rebalance: the last
    /// chance to commit them (`ctx.commit_positions()`).
    fn on_revoked(&mut self, partitions: &[TopicPartition], ctx: &mut RebalanceContext) {
        let _ = (partitions, ctx);
    }

    /// Partitions this member lost without a rebalance (removed from the
    /// group, fenced generation): another member may own them already, so
    /// nothing can be committed. By default, as in Java, this calls
    /// [`on_revoked`](Self::on_revoked) with a context whose commits are
    /// ignored.
    fn on_lost(&mut self, partitions: &[TopicPartition], ctx: &mut RebalanceContext) {
        self.on_revoked(partitions, ctx);
    }
}

/// What a [`RebalanceListener`] callback sees and asks for: the positions
/// of the partitions concerned, commits to make before the rebalance goes
/// on, and seeks for newly assigned partitions.
#[derive(Debug, Default)]
pub struct RebalanceContext {
    positions: BTreeMap<TopicPartition, i64>,
    pub(crate) commits: Vec<OffsetToCommit>,
    pub(crate) seeks: Vec<(TopicPartition, i64)>,
}

impl RebalanceContext {
    #[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
    pub(crate) fn new(positions: BTreeMap<TopicPartition, i64>) -> RebalanceContext {
        RebalanceContext {
            positions,
            commits: Vec::new(),
            seeks: Vec::new(),
        }
    }

    /// The next offset the application would have received, per partition
    /// concerned (those with a known position).
    pub fn positions(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.positions
    }

    /// Commits [`positions`](Self::positions) before the partitions leave
    /// (synchronously, before the rebalance continues).
    pub fn commit_positions(&mut self) {
        let offsets = self
            .positions
            .iter()
            .map(|((topic, partition), offset)| OffsetToCommit::new(topic, *partition, *offset));
        self.commits.extend(offsets);
    }

    /// Commits these offsets before the rebalance continues.
    pub fn commit(&mut self, offsets: impl IntoIterator<Item = OffsetToCommit>) {
        self.commits.extend(offsets);
    }

    /// Starts an assigned partition at `offset` instead of its committed
    /// offset.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        self.seeks.push(((topic.to_string(), partition), offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Vec<String>);
    impl RebalanceListener for Recorder {
        fn on_revoked(&mut self, partitions: &[TopicPartition], ctx: &mut RebalanceContext) {
            self.0.push(format!("revoked {}", partitions.len()));
            ctx.commit_positions();
        }
    }

    #[test]
    fn lost_defaults_to_revoked_and_commit_positions_takes_every_position() {
        let mut listener = Recorder(Vec::new());
        let positions = BTreeMap::from([(("t".to_string(), 0), 5), (("t".to_string(), 1), 9)]);
        let mut ctx = RebalanceContext::new(positions);
        listener.on_lost(&[("t".into(), 0), ("t".into(), 1)], &mut ctx);
        assert_eq!(listener.0, vec!["revoked 2"]);
        let offsets: Vec<(String, i32, i64)> = ctx
            .commits
            .iter()
            .map(|o| (o.topic.clone(), o.partition, o.offset))
            .collect();
        assert_eq!(offsets, vec![("t".into(), 0, 5), ("t".into(), 1, 9)]);
    }
}
