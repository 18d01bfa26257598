//! Checks a producer's delivery guarantees against what the log holds.
//!
//! Feed a [`Checker`] what a producer sent, per partition in send order,
//! each record named by a `u64` id with the [`Outcome`] the producer
//! reported, and what the log holds, per partition in log order. Its
//! [`Report`] lists, per partition:
//!
//! - **lost**: reported delivered, absent from the log;
//! - **duplicated**: a sent record present more than once;
//! - **reordered**: sent records present in the log (delivered, possibly
//!   persisted or unknown) whose log order differs from their send order.
//!   The report names the fewest records whose removal leaves the rest in
//!   send order (the complement of a longest increasing subsequence), so one
//!   record moved far away is one problem, not many;
//! - **phantom**: present in the log but never sent to that partition,
//!   reported as failed and not persisted, or not parseable as an id;
//! - **offset mismatches**: reported delivered at an offset where the log
//!   does not hold the record.
//!
//! Records reported as failed but possibly persisted, or whose outcome is
//! unknown, may be absent or present once.
//!
//! ```
//! use protocol_tests::checker::{Checker, Outcome};
//!
//! let mut checker = Checker::new();
//! checker.sent("events", 0, 1, Outcome::Delivered { offset: Some(0) });
//! checker.sent("events", 0, 2, Outcome::FailedPossiblyPersisted);
//! checker.sent("events", 0, 3, Outcome::Delivered { offset: Some(1) });
//! checker.log_ids("events", 0, [1, 3]);
//! let report = checker.report();
//! assert!(report.is_clean(), "{report}");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::log::StoredRecord;

/// What a producer reported for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged, at this offset when the producer reported one.
    Delivered {
        /// The offset the producer reported, if any.
        offset: Option<i64>,
    },
    /// Failed, and the producer says it was not written.
    FailedNotPersisted,
    /// Failed, and the producer says it may have been written.
    FailedPossiblyPersisted,
    /// No report (never completed, or the status is not known).
    Unknown,
}

/// A partition, by topic name and index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[derive(Debug, Default)]
struct PartitionInput {
    /// `(id, outcome)` in send order.
    sent: Vec<(u64, Outcome)>,
    /// id -> index in `sent`.
    index: HashMap<u64, usize>,
    /// `(offset, id)` in log order; `None` for a record without an id.
    log: Vec<(i64, Option<u64>)>,
}

/// Collects what was sent and what was stored, then [reports](Self::report).
#[derive(Debug, Default)]
pub struct Checker {
    partitions: BTreeMap<Partition, PartitionInput>,
}

/// A record reported delivered but absent from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Where it was sent.
    pub partition: Partition,
    /// Its id.
    pub id: u64,
    /// The offset the producer reported, if any.
    pub reported_offset: Option<i64>,
}

/// A sent record present more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicated {
    /// Where it was sent.
    pub partition: Partition,
    /// Its id.
    pub id: u64,
    /// Every offset it is stored at.
    pub offsets: Vec<i64>,
}

/// A record out of send order in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reordered {
    /// The partition.
    pub partition: Partition,
    /// Its id.
    pub id: u64,
    /// Where the log holds it (its first occurrence).
    pub offset: i64,
    /// Its position in the partition's send order (from 0).
    pub send_index: usize,
}

/// Why a stored record is a phantom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhantomReason {
    /// The id was never sent to this partition.
    NeverSent,
    /// The producer reported the record failed and not persisted.
    ReportedNotPersisted,
    /// The stored record does not carry a parseable id.
    Unparseable,
}

/// A stored record that should not be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phantom {
    /// The partition holding it.
    pub partition: Partition,
    /// Its offset.
    pub offset: i64,
    /// Its id, if it has one.
    pub id: Option<u64>,
    /// Why it is a phantom.
    pub reason: PhantomReason,
}

/// A delivered record stored elsewhere than the producer was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetMismatch {
    /// The partition.
    pub partition: Partition,
    /// Its id.
    pub id: u64,
    /// The offset the producer reported.
    pub reported: i64,
    /// Where the log holds it (first occurrence).
    pub stored: i64,
}

/// What a [`Checker`] found. Its `Display` sums it up and lists the first
/// few problems of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Partitions looked at.
    pub partitions: usize,
    /// Records sent.
    pub sent: usize,
    /// Records reported delivered.
    pub delivered: usize,
    /// Records reported failed and not persisted.
    pub failed_not_persisted: usize,
    /// Records reported failed but possibly persisted.
    pub failed_possibly_persisted: usize,
    /// Records reported failed but possibly persisted that are in the log.
    pub possibly_persisted_present: usize,
    /// Records without a report.
    pub unknown: usize,
    /// Records without a report that are in the log.
    pub unknown_present: usize,
    /// Records in the log.
    pub stored: usize,
    /// Delivered but absent.
    pub lost: Vec<Lost>,
    /// Present more than once.
    pub duplicated: Vec<Duplicated>,
    /// Out of send order.
    pub reordered: Vec<Reordered>,
    /// Present but should not be.
    pub phantom: Vec<Phantom>,
    /// Delivered at another offset than reported.
    pub offset_mismatches: Vec<OffsetMismatch>,
}

impl Checker {
    /// An empty checker.
    pub fn new() -> Self {
        Self::default()
    }

    fn input(&mut self, topic: &str, partition: i32) -> &mut PartitionInput {
        self.partitions
            .entry(Partition {
                topic: topic.to_owned(),
                partition,
            })
            .or_default()
    }

    /// Records that `id` was sent to a partition (call in send order) and
    /// what the producer reported for it.
    ///
    /// # Panics
    ///
    /// If `id` was already sent to this partition: ids must be unique.
    pub fn sent(&mut self, topic: &str, partition: i32, id: u64, outcome: Outcome) {
        let input = self.input(topic, partition);
        let index = input.sent.len();
        assert!(
            input.index.insert(id, index).is_none(),
            "record id {id} sent twice to {topic}-{partition}"
        );
        input.sent.push((id, outcome));
    }

    /// Replaces the outcome of a record already [sent](Self::sent), e.g.
    /// when its delivery report arrives. Returns `false` if it was not sent
    /// to this partition.
    pub fn set_outcome(&mut self, topic: &str, partition: i32, id: u64, outcome: Outcome) -> bool {
        let input = self.input(topic, partition);
        match input.index.get(&id) {
            Some(&index) => {
                input.sent[index].1 = outcome;
                true
            }
            None => false,
        }
    }

    /// Records that the log holds record `id` at `offset` (call in log order).
    pub fn logged(&mut self, topic: &str, partition: i32, offset: i64, id: u64) {
        self.input(topic, partition).log.push((offset, Some(id)));
    }

    /// Records a stored record that carries no parseable id (a phantom).
    pub fn logged_unparseable(&mut self, topic: &str, partition: i32, offset: i64) {
        self.input(topic, partition).log.push((offset, None));
    }

    /// Records a partition's log as ids in log order, at offsets 0, 1, 2...
    /// (use [`Self::logged`] or [`Self::log_records`] for real offsets).
    pub fn log_ids(&mut self, topic: &str, partition: i32, ids: impl IntoIterator<Item = u64>) {
        let input = self.input(topic, partition);
        let start = input.log.len() as i64;
        input.log.extend(
            ids.into_iter()
                .enumerate()
                .map(|(i, id)| (start + i as i64, Some(id))),
        );
    }

    /// Records a partition's stored records (as returned by
    /// [`FakeCluster::records`](crate::FakeCluster::records)), with their
    /// offsets, taking each record's id from `id_of` (`None`: no parseable
    /// id).
    pub fn log_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[StoredRecord],
        id_of: impl Fn(&StoredRecord) -> Option<u64>,
    ) {
        let input = self.input(topic, partition);
        input
            .log
            .extend(records.iter().map(|r| (r.offset, id_of(r))));
    }

    /// Compares what was sent with what is stored.
    pub fn report(&self) -> Report {
        let mut report = Report {
            partitions: self.partitions.len(),
            ..Report::default()
        };
        for (partition, input) in &self.partitions {
            check_partition(partition, input, &mut report);
        }
        report
    }
}

fn check_partition(partition: &Partition, input: &PartitionInput, report: &mut Report) {
    // Offsets of each sent id in the log, in log order.
    let mut stored_at: HashMap<u64, Vec<i64>> = HashMap::new();
    // Send indices of allowed records in log order (first occurrences).
    let mut order: Vec<(usize, i64)> = Vec::new();
    report.stored += input.log.len();
    for &(offset, id) in &input.log {
        let Some(id) = id else {
            report.phantom.push(Phantom {
                partition: partition.clone(),
                offset,
                id: None,
                reason: PhantomReason::Unparseable,
            });
            continue;
        };
        let Some(&index) = input.index.get(&id) else {
            report.phantom.push(Phantom {
                partition: partition.clone(),
                offset,
                id: Some(id),
                reason: PhantomReason::NeverSent,
            });
            continue;
        };
        if input.sent[index].1 == Outcome::FailedNotPersisted {
            report.phantom.push(Phantom {
                partition: partition.clone(),
                offset,
                id: Some(id),
                reason: PhantomReason::ReportedNotPersisted,
            });
            continue;
        }
        let offsets = stored_at.entry(id).or_default();
        if offsets.is_empty() {
            order.push((index, offset));
        }
        offsets.push(offset);
    }

    for &(id, outcome) in &input.sent {
        report.sent += 1;
        let offsets = stored_at.get(&id);
        match outcome {
            Outcome::Delivered { offset } => {
                report.delivered += 1;
                match (offsets, offset) {
                    (None, _) => report.lost.push(Lost {
                        partition: partition.clone(),
                        id,
                        reported_offset: offset,
                    }),
                    (Some(at), Some(reported)) if !at.contains(&reported) => {
                        report.offset_mismatches.push(OffsetMismatch {
                            partition: partition.clone(),
                            id,
                            reported,
                            stored: at[0],
                        });
                    }
                    _ => {}
                }
            }
            Outcome::FailedNotPersisted => report.failed_not_persisted += 1,
            Outcome::FailedPossiblyPersisted => {
                report.failed_possibly_persisted += 1;
                report.possibly_persisted_present += usize::from(offsets.is_some());
            }
            Outcome::Unknown => {
                report.unknown += 1;
                report.unknown_present += usize::from(offsets.is_some());
            }
        }
        if let Some(at) = offsets.filter(|at| at.len() > 1) {
            report.duplicated.push(Duplicated {
                partition: partition.clone(),
                id,
                offsets: at.clone(),
            });
        }
    }

    let keep = longest_increasing(&order);
    for (i, &(send_index, offset)) in order.iter().enumerate() {
        if !keep[i] {
            report.reordered.push(Reordered {
                partition: partition.clone(),
                id: input.sent[send_index].0,
                offset,
                send_index,
            });
        }
    }
}

/// Marks the members of one longest strictly increasing subsequence of the
/// send indices in `order` (patience sorting, O(n log n)).
fn longest_increasing(order: &[(usize, i64)]) -> Vec<bool> {
    // tails[k]: position in `order` of the smallest tail of an increasing
    // run of length k + 1; previous[i]: predecessor of i in its run.
    let mut tails: Vec<usize> = Vec::new();
    let mut previous: Vec<Option<usize>> = vec![None; order.len()];
    for (i, &(value, _)) in order.iter().enumerate() {
        let k = tails.partition_point(|&t| order[t].0 < value);
        previous[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut keep = vec![false; order.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = previous[i];
    }
    keep
}

impl Report {
    /// Whether nothing was lost, duplicated, reordered or phantom, and every
    /// reported offset matches the log.
    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }

    /// The number of problems of all kinds.
    pub fn problems(&self) -> usize {
        self.lost.len()
            + self.duplicated.len()
            + self.reordered.len()
            + self.phantom.len()
            + self.offset_mismatches.len()
    }
}

/// How many problems of each kind `Display` lists.
const SHOWN: usize = 5;

fn list<T>(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    items: &[T],
    show: impl Fn(&T) -> String,
) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = items.iter().take(SHOWN).map(show).collect();
    let more = items.len().saturating_sub(SHOWN);
    write!(f, "\n  {kind} ({}): {}", items.len(), shown.join("; "))?;
    if more > 0 {
        write!(f, "; and {more} more")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent over {} partitions ({} delivered, {} failed not persisted, \
             {} failed possibly persisted of which {} stored, {} unknown of which {} stored), \
             {} stored: ",
            self.sent,
            self.partitions,
            self.delivered,
            self.failed_not_persisted,
            self.failed_possibly_persisted,
            self.possibly_persisted_present,
            self.unknown,
            self.unknown_present,
            self.stored,
        )?;
        if self.is_clean() {
            return write!(f, "clean");
        }
        write!(f, "{} problems", self.problems())?;
        list(f, "lost", &self.lost, |p| match p.reported_offset {
            Some(o) => format!("{} id {} (reported at offset {o})", p.partition, p.id),
            None => format!("{} id {}", p.partition, p.id),
        })?;
        list(f, "duplicated", &self.duplicated, |p| {
            format!("{} id {} at offsets {:?}", p.partition, p.id, p.offsets)
        })?;
        list(f, "reordered", &self.reordered, |p| {
            format!(
                "{} id {} (sent #{}) at offset {}",
                p.partition, p.id, p.send_index, p.offset
            )
        })?;
        list(f, "phantom", &self.phantom, |p| {
            let why = match p.reason {
                PhantomReason::NeverSent => "never sent here",
                PhantomReason::ReportedNotPersisted => "reported not persisted",
                PhantomReason::Unparseable => "no parseable id",
            };
            match p.id {
                Some(id) => format!("{} id {id} at offset {} ({why})", p.partition, p.offset),
                None => format!("{} offset {} ({why})", p.partition, p.offset),
            }
        })?;
        list(f, "offset mismatches", &self.offset_mismatches, |p| {
            format!(
                "{} id {} reported at {}, stored at {}",
                p.partition, p.id, p.reported, p.stored
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "t";

    fn delivered(offset: i64) -> Outcome {
        Outcome::Delivered {
            offset: Some(offset),
        }
    }

    /// Ids 0..n sent to partition 0, delivered at offsets 0..n.
    fn sent_in_order(n: u64) -> Checker {
        let mut c = Checker::new();
        for id in 0..n {
            c.sent(T, 0, id, delivered(id as i64));
        }
        c
    }

    #[test]
    fn clean_run_is_clean() {
        let mut c = sent_in_order(5);
        c.sent(T, 1, 100, Outcome::Delivered { offset: None });
        c.sent(T, 1, 101, Outcome::FailedPossiblyPersisted);
        c.sent(T, 1, 102, Outcome::FailedPossiblyPersisted);
        c.sent(T, 1, 103, Outcome::Unknown);
        c.sent(T, 1, 104, Outcome::FailedNotPersisted);
        c.log_ids(T, 0, 0..5);
        c.log_ids(T, 1, [100, 102, 103]);
        let r = c.report();
        assert!(r.is_clean(), "{r}");
        assert_eq!((r.partitions, r.sent, r.delivered, r.stored), (2, 10, 6, 8));
        assert_eq!(
            (r.failed_possibly_persisted, r.possibly_persisted_present),
            (2, 1)
        );
        assert_eq!(
            (r.unknown, r.unknown_present, r.failed_not_persisted),
            (1, 1, 1)
        );
        assert!(r.to_string().ends_with("clean"), "{r}");
    }

    #[test]
    fn lost_record_is_detected() {
        let mut c = sent_in_order(4);
        c.logged(T, 0, 0, 0);
        c.logged(T, 0, 1, 1);
        c.logged(T, 0, 3, 3);
        let r = c.report();
        assert_eq!(r.problems(), 1, "{r}");
        assert_eq!(r.lost[0].id, 2);
        assert_eq!(r.lost[0].reported_offset, Some(2));
        assert!(r.to_string().contains("lost (1): t-0 id 2"), "{r}");
    }

    #[test]
    fn duplicate_is_detected() {
        let mut c = sent_in_order(3);
        c.log_ids(T, 0, [0, 1, 1, 2]);
        let r = c.report();
        assert_eq!(r.duplicated.len(), 1, "{r}");
        assert_eq!(r.duplicated[0].id, 1);
        assert_eq!(r.duplicated[0].offsets, vec![1, 2]);
        // Id 2 is now stored at 3, not where it was reported.
        assert_eq!(r.offset_mismatches.len(), 1, "{r}");
        assert!(r.lost.is_empty() && r.reordered.is_empty() && r.phantom.is_empty());
    }

    #[test]
    fn possibly_persisted_record_stored_twice_is_a_duplicate() {
        let mut c = Checker::new();
        c.sent(T, 0, 7, Outcome::FailedPossiblyPersisted);
        c.log_ids(T, 0, [7, 7]);
        let r = c.report();
        assert_eq!(r.duplicated.len(), 1, "{r}");
        assert_eq!(r.problems(), 1, "{r}");
    }

    #[test]
    fn reordering_is_detected_minimally() {
        // Record 9 moved to the front: one record out of place, not nine.
        let mut c = Checker::new();
        for id in 0..10 {
            c.sent(T, 0, id, Outcome::Delivered { offset: None });
        }
        c.log_ids(T, 0, [9, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let r = c.report();
        assert_eq!(r.problems(), 1, "{r}");
        assert_eq!(r.reordered[0].id, 9);
        assert_eq!(r.reordered[0].offset, 0);
        assert_eq!(r.reordered[0].send_index, 9);

        // A swapped pair is one problem too.
        let mut c = Checker::new();
        for id in 0..4 {
            c.sent(T, 0, id, Outcome::Unknown);
        }
        c.log_ids(T, 0, [0, 2, 1, 3]);
        let r = c.report();
        assert_eq!(r.reordered.len(), 1, "{r}");
        assert!(r.to_string().contains("reordered (1)"), "{r}");
    }

    #[test]
    fn possibly_persisted_records_count_for_order() {
        let mut c = Checker::new();
        c.sent(T, 0, 1, Outcome::FailedPossiblyPersisted);
        c.sent(T, 0, 2, Outcome::Delivered { offset: None });
        c.log_ids(T, 0, [2, 1]);
        assert_eq!(c.report().reordered.len(), 1);
    }

    #[test]
    fn phantoms_are_detected() {
        let mut c = Checker::new();
        c.sent(T, 0, 1, Outcome::FailedNotPersisted);
        c.sent(T, 1, 2, Outcome::Delivered { offset: None });
        c.logged(T, 0, 0, 1); // reported not persisted
        c.logged(T, 0, 1, 2); // sent to partition 1, not 0
        c.logged(T, 0, 2, 99); // never sent
        c.logged_unparseable(T, 0, 3);
        c.logged(T, 1, 0, 2);
        let r = c.report();
        let reasons: Vec<(i64, PhantomReason)> =
            r.phantom.iter().map(|p| (p.offset, p.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (0, PhantomReason::ReportedNotPersisted),
                (1, PhantomReason::NeverSent),
                (2, PhantomReason::NeverSent),
                (3, PhantomReason::Unparseable),
            ]
        );
        assert_eq!(r.problems(), 4, "{r}");
    }

    #[test]
    fn offset_mismatch_is_detected() {
        let mut c = Checker::new();
        c.sent(T, 0, 1, delivered(0));
        c.sent(T, 0, 2, delivered(5));
        c.log_ids(T, 0, [1, 2]);
        let r = c.report();
        assert_eq!(
            r.offset_mismatches,
            vec![OffsetMismatch {
                partition: Partition {
                    topic: T.to_owned(),
                    partition: 0
                },
                id: 2,
                reported: 5,
                stored: 1,
            }]
        );
        assert_eq!(r.problems(), 1);
    }

    #[test]
    fn set_outcome_updates_a_sent_record() {
        let mut c = Checker::new();
        c.sent(T, 0, 1, Outcome::Unknown);
        assert!(c.set_outcome(T, 0, 1, delivered(0)));
        assert!(!c.set_outcome(T, 0, 2, delivered(0)));
        assert!(!c.report().is_clean(), "delivered but not stored");
        c.log_ids(T, 0, [1]);
        assert!(c.report().is_clean());
    }

    #[test]
    #[should_panic(expected = "sent twice")]
    fn repeated_id_panics() {
        let mut c = Checker::new();
        c.sent(T, 0, 1, Outcome::Unknown);
        c.sent(T, 0, 1, Outcome::Unknown);
    }

    #[test]
    fn display_lists_only_the_first_few() {
        let mut c = Checker::new();
        for id in 0..8 {
            c.sent(T, 0, id, Outcome::Delivered { offset: None });
        }
        let r = c.report();
        assert_eq!(r.lost.len(), 8);
        let text = r.to_string();
        assert!(text.contains("lost (8)"), "{text}");
        assert!(text.contains("and 3 more"), "{text}");
        assert!(!text.contains("id 5"), "{text}");
    }

    #[test]
    fn log_records_parses_ids_with_offsets() {
        let record = |offset: i64, value: &str| StoredRecord {
            offset,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
            producer_id: -1,
            producer_epoch: -1,
            sequence: -1,
            transactional: false,
            compression: kafka_protocol::records::Compression::None,
        };
        let mut c = Checker::new();
        c.sent(T, 0, 1, delivered(10));
        c.sent(T, 0, 2, delivered(11));
        let records = [record(10, "1"), record(11, "2"), record(12, "junk")];
        c.log_records(T, 0, &records, |r| {
            std::str::from_utf8(r.value.as_deref()?).ok()?.parse().ok()
        });
        let r = c.report();
        assert_eq!(r.problems(), 1, "{r}");
        assert_eq!(r.phantom[0].reason, PhantomReason::Unparseable);
        assert_eq!(r.phantom[0].offset, 12);
    }
}
