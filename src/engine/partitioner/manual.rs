//! Manual partitioning: records that name their partition.
//!
//! Such a record bypasses the partitioner; the engine only checks that the
//! partition exists, with [`check_explicit`], and fails the record if not.
//! The same check applies to whatever a custom partitioner returns. A
//! partition that exists but has no leader right now is accepted: the record
//! waits for one, as with the Java client.

use super::{PartitionError, PartitionView};

/// Checks an explicitly chosen `partition` against the topic: `Ok` with the
/// partition when it is in `0..view.partition_count`, an error otherwise.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{PartitionError, PartitionView, check_explicit};
///
/// let view = PartitionView::new("t", 3, &[0, 1]);
/// assert_eq!(check_explicit(2, &view), Ok(2));
/// assert_eq!(
///     check_explicit(3, &view),
///     Err(PartitionError::OutOfRange { partition: 3, partition_count: 3 })
/// );
/// ```
pub fn check_explicit(partition: i32, view: &PartitionView<'_>) -> Result<i32, PartitionError> {
    let count = view.checked_count()?;
    if u32::try_from(partition).is_ok_and(|p| p < count) {
        Ok(partition)
    } else {
        Err(PartitionError::OutOfRange {
            partition,
            partition_count: view.partition_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_existing_partitions_with_or_without_a_leader() {
        let view = PartitionView::new("t", 4, &[1]);
        for p in 0..4 {
            assert_eq!(check_explicit(p, &view), Ok(p));
        }
    }

    #[test]
    fn rejects_out_of_range_and_negative_partitions() {
        let view = PartitionView::new("t", 4, &[0, 1, 2, 3]);
        for p in [4, 5, i32::MAX, -1, i32::MIN] {
            assert_eq!(
                check_explicit(p, &view),
                Err(PartitionError::OutOfRange {
                    partition: p,
                    partition_count: 4
                })
            );
        }
        let err = check_explicit(9, &view).unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition 9 does not exist: the topic has 4 partitions"
        );
    }

    #[test]
    fn a_topic_without_partitions_has_no_valid_partition() {
        let view = PartitionView::new("t", 0, &[]);
        assert_eq!(check_explicit(0, &view), Err(PartitionError::NoPartitions));
    }
}
