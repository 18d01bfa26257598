//! Sticky stints of the smart partitioner: how many keyless records in a
//! row go to one partition, and how that is weighed when drawing the next.
//!
//! A stint ends when the engine completes the partition's batch. When the
//! partition's consumer reported its processing time
//! ([`RoutingReason::Reported`]), it also ends once its records would take
//! that consumer [`STINT_WORK_SECS`]: a batch's worth of records handed to a
//! slow consumer at once waits behind itself however small the partition's
//! share. Stints then differ in length from partition to partition, so
//! draws are divided by each partition's mean stint, and records, not
//! stints, follow the routing weights.

use super::{HealthSnapshot, RoutingReason};

/// The longest work a stint may hand a partition whose consumer reported
/// its processing time, in seconds of that consumer's time.
const STINT_WORK_SECS: f64 = 0.02;

/// Partitions per topic whose stint lengths are tracked (partition ids come
/// from the cluster's metadata; the bound keeps a hostile id from sizing
/// the table).
const MAX_TRACKED_PARTITIONS: usize = 1 << 16;

/// Records a stint on `partition` may hold: [`STINT_WORK_SECS`] of its
/// consumer's reported capacity (at least 1), or no limit when it did not
/// report.
fn limit(snapshot: &HealthSnapshot, partition: i32) -> Option<u32> {
    let routing = snapshot.get(partition)?.trend?.routing?;
    if routing.reason != RoutingReason::Reported {
        return None;
    }
    let records = (routing.capacity? * STINT_WORK_SECS).floor();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    records
        .is_finite()
        .then(|| records.clamp(1.0, f64::from(u32::MAX)) as u32)
}

/// One topic's stints: the current one and each partition's mean.
#[derive(Debug, Default)]
pub(super) struct Stints {
    /// The partition of the current (or last) stint.
    partition: Option<i32>,
    /// Records placed in it.
    records: u32,
    /// Records after which it ends.
    limit: Option<u32>,
    /// Per partition, the records its stints held, a moving average (0
    /// before its first stint ended).
    means: Vec<f64>,
}

impl Stints {
    /// Counts one record placed on `partition`, starting a stint there
    /// unless `continuing` (it is the sticky partition). Returns whether
    /// the stint is over (the next record draws again).
    pub(super) fn place(
        &mut self,
        partition: i32,
        continuing: bool,
        snapshot: &HealthSnapshot,
    ) -> bool {
        if !continuing {
            self.end();
            self.partition = Some(partition);
            self.limit = limit(snapshot, partition);
        }
        self.records = self.records.saturating_add(1);
        self.limit.is_some_and(|limit| self.records >= limit)
    }

    /// Counts the records of the stint that ends into its partition's
    /// moving average.
    fn end(&mut self) {
        let (Some(p), records) = (self.partition.take(), std::mem::take(&mut self.records)) else {
            return;
        };
        let Ok(i) = usize::try_from(p) else { return };
        if records == 0 || i >= MAX_TRACKED_PARTITIONS {
            return;
        }
        if self.means.len() <= i {
            self.means.resize(i + 1, 0.0);
        }
        let mean = &mut self.means[i];
        let records = f64::from(records);
        *mean = if *mean > 0.0 {
            0.9 * *mean + 0.1 * records
        } else {
            records
        };
    }
}

/// When some stint may be cut short, divides each candidate's weight by the
/// records its stints hold (their moving average in `stints`; before one
/// ended, its limit, or the longest limit).
pub(super) fn weigh(
    candidates: &mut [(i32, f64)],
    snapshot: &HealthSnapshot,
    stints: Option<&Stints>,
) {
    let limits: Vec<Option<u32>> = candidates
        .iter()
        .map(|(p, _)| limit(snapshot, *p))
        .collect();
    let Some(longest) = limits.iter().flatten().max().map(|l| f64::from(*l)) else {
        return;
    };
    let means = stints.map_or(&[][..], |s| &s.means);
    for ((p, weight), limit) in candidates.iter_mut().zip(&limits) {
        let mean = usize::try_from(*p)
            .ok()
            .and_then(|i| means.get(i))
            .copied()
            .filter(|m| *m > 0.0);
        let stint = mean.unwrap_or_else(|| limit.map_or(longest, f64::from));
        *weight = (*weight / stint.max(1.0)).max(f64::MIN_POSITIVE);
    }
}
