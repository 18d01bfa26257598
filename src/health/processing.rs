//! Consumers reporting their own processing time: a [`ProcessingReport`]
//! per partition, committed as the metadata of the group's offset, and the
//! [`ProcessingMeter`] a consumer keeps to make them.
//!
//! Lag and commits show how much a consumer processed, not how fast it
//! could: a consumer given little work commits little whether it is fast or
//! slow, so lag alone can only find out that a slow consumer recovered by
//! sending it more and watching (probing). A consumer that says how long
//! each record took needs no probing: routing knows its capacity at any
//! load, and sees a recovery with the first commit after it.
//!
//! The report travels with the offsets, so nothing beyond Kafka is needed:
//! any client that commits offsets with metadata (the Java client's
//! `OffsetAndMetadata`, librdkafka's topic partition list, smartkafka's
//! [`OffsetToCommit`](crate::consumer::OffsetToCommit)) can report, and
//! the lag collector reads the reports with the committed offsets
//! (OffsetFetch). The metadata reads `smartkafka/processing-v1 ns=<time per
//! record in nanoseconds> n=<records measured>`; anything before the marker
//! is left alone, so an application can keep its own metadata in front.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The marker that starts a report in commit metadata.
const MARKER: &str = "smartkafka/processing-v1";

/// The longest time per record a report may carry (an hour): anything
/// longer is taken for a malformed report.
const MAX_PER_RECORD: Duration = Duration::from_secs(3_600);

/// What a consumer measured of its own processing of one partition: the
/// time it spent per record, over `records` records.
///
/// ```
/// use std::time::Duration;
/// use smartkafka::health::ProcessingReport;
///
/// let report = ProcessingReport::new(Duration::from_millis(2), 500);
/// let metadata = report.to_metadata();
/// assert_eq!(metadata, "smartkafka/processing-v1 ns=2000000 n=500");
/// assert_eq!(ProcessingReport::from_metadata(&metadata), Some(report));
/// assert_eq!(report.capacity(), 500.0);
/// // Other metadata, or none, is no report.
/// assert_eq!(ProcessingReport::from_metadata("checkpoint-17"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessingReport {
    per_record: Duration,
    records: u64,
}

impl ProcessingReport {
    /// A report of `per_record` spent on each of `records` records. A time
    /// per record over an hour is taken as an hour.
    pub fn new(per_record: Duration, records: u64) -> Self {
        ProcessingReport {
            per_record: per_record.min(MAX_PER_RECORD),
            records,
        }
    }

    /// The time spent per record.
    pub fn per_record(&self) -> Duration {
        self.per_record
    }

    /// How many records the time was measured over.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records per second the consumer processes at this pace when it is
    /// busy (infinite for a time of zero).
    pub fn capacity(&self) -> f64 {
        let secs = self.per_record.as_secs_f64();
        if secs > 0.0 {
            1.0 / secs
        } else {
            f64::INFINITY
        }
    }

    /// The report as commit metadata.
    pub fn to_metadata(&self) -> String {
        format!(
            "{MARKER} ns={} n={}",
            self.per_record.as_nanos(),
            self.records
        )
    }

    /// The report in commit metadata, if it holds one: the marker, then
    /// `ns=` and `n=` (other fields after the marker are skipped, for
    /// later versions). `None` for anything malformed.
    pub fn from_metadata(metadata: &str) -> Option<Self> {
        let at = metadata.find(MARKER)?;
        let rest = metadata[at + MARKER.len()..].strip_prefix(' ')?;
        let (mut ns, mut n) = (None, None);
        for field in rest.split(' ') {
            match field.split_once('=') {
                Some(("ns", v)) => ns = Some(v.parse::<u64>().ok()?),
                Some(("n", v)) => n = Some(v.parse::<u64>().ok()?),
                Some(_) => {}
                None => break,
            }
        }
        let (per_record, records) = (Duration::from_nanos(ns?), n?);
        (per_record <= MAX_PER_RECORD).then(|| ProcessingReport::new(per_record, records))
    }
}

/// What a meter gathered for one partition since its last report.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    busy: Duration,
    records: u64,
    last: Option<ProcessingReport>,
}

impl Tally {
    fn add(&mut self, records: u64, busy: Duration) {
        self.busy = self.busy.saturating_add(busy);
        self.records = self.records.saturating_add(records);
    }

    /// The time per record of what was added since the last take (which
    /// this starts again from), or the last one when nothing was.
    fn take(&mut self) -> Option<ProcessingReport> {
        if self.records > 0 {
            #[allow(clippy::cast_precision_loss)]
            let per_record = self.busy.as_secs_f64() / self.records as f64;
            let per_record = Duration::try_from_secs_f64(per_record).unwrap_or(MAX_PER_RECORD);
            self.last = Some(ProcessingReport::new(per_record, self.records));
            self.busy = Duration::ZERO;
            self.records = 0;
        }
        self.last
    }
}

/// Measures a consumer's processing time per partition and makes the
/// [`ProcessingReport`]s it commits with its offsets.
///
/// Call [`record`](Self::record) with the time each record (or batch of
/// records) took to process, and [`metadata`](Self::metadata) when
/// committing: the report covers what was processed since the previous
/// one. A partition that received nothing since is reported at its own
/// last pace or the consumer's latest pace over all its partitions,
/// whichever is faster, so a partition that routing starved while its
/// consumer was slow shows the consumer's recovery; before the consumer
/// has processed anything, there is no report.
///
/// ```
/// use std::time::Duration;
/// use smartkafka::health::{ProcessingMeter, ProcessingReport};
///
/// let mut meter = ProcessingMeter::new();
/// for _ in 0..4 {
///     meter.record("orders", 0, 1, Duration::from_millis(2));
/// }
/// let metadata = meter.metadata("orders", 0).expect("records were processed");
/// let report = ProcessingReport::from_metadata(&metadata).unwrap();
/// assert_eq!((report.per_record(), report.records()), (Duration::from_millis(2), 4));
/// // Nothing processed since: the same report again.
/// assert_eq!(meter.report("orders", 0), Some(report));
/// // A partition without records of its own: the consumer's pace.
/// assert_eq!(meter.report("orders", 1).map(|r| r.per_record()), Some(Duration::from_millis(2)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessingMeter {
    topics: HashMap<String, BTreeMap<i32, Tally>>,
    /// Every partition's records together: the consumer's pace.
    all: Tally,
}

impl ProcessingMeter {
    /// A meter with nothing measured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `records` records of `topic`/`partition` processed in `busy`
    /// (the processing alone, not the wait for records).
    pub fn record(&mut self, topic: &str, partition: i32, records: u64, busy: Duration) {
        let partitions = match self.topics.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        partitions.entry(partition).or_default().add(records, busy);
        self.all.add(records, busy);
    }

    /// The report for the partition's next commit: its time per record
    /// since its previous report (which this starts again from); when it
    /// processed nothing since, the faster of its last report and the
    /// consumer's time per record over all its partitions since that was
    /// last taken; `None` before the consumer processed anything.
    pub fn report(&mut self, topic: &str, partition: i32) -> Option<ProcessingReport> {
        let overall = self.all.take();
        let Some(tally) = self
            .topics
            .get_mut(topic)
            .and_then(|partitions| partitions.get_mut(&partition))
        else {
            return overall;
        };
        let fresh = tally.records > 0;
        match (tally.take(), overall) {
            (Some(own), _) if fresh => Some(own),
            (Some(own), Some(all)) if own.per_record() <= all.per_record() => Some(own),
            (own, all) => all.or(own),
        }
    }

    /// Whether the partition's pace since its last report differs from that
    /// report by more than `factor` (either way, over at least
    /// `min_records` records): a consumer that slows down or recovers can
    /// commit at once instead of at its next interval, so routing learns
    /// of it a commit interval sooner. `false` before the first report.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smartkafka::health::ProcessingMeter;
    ///
    /// let mut meter = ProcessingMeter::new();
    /// meter.record("orders", 0, 10, Duration::from_millis(2));
    /// meter.report("orders", 0);
    /// meter.record("orders", 0, 10, Duration::from_millis(3));
    /// assert!(!meter.drifted("orders", 0, 2.0, 10));
    /// meter.record("orders", 0, 10, Duration::from_millis(40));
    /// assert!(meter.drifted("orders", 0, 2.0, 10));
    /// ```
    pub fn drifted(&self, topic: &str, partition: i32, factor: f64, min_records: u64) -> bool {
        let Some(tally) = self.topics.get(topic).and_then(|p| p.get(&partition)) else {
            return false;
        };
        let Some(last) = tally.last else {
            return false;
        };
        if tally.records == 0 || tally.records < min_records {
            return false;
        }
        #[allow(clippy::cast_precision_loss)]
        let now = tally.busy.as_secs_f64() / tally.records as f64;
        let before = last.per_record().as_secs_f64();
        let factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            return false;
        };
        now > before * factor || now * factor < before
    }

    /// [`report`](Self::report) as commit metadata.
    pub fn metadata(&mut self, topic: &str, partition: i32) -> Option<String> {
        self.report(topic, partition)
            .map(|r| ProcessingReport::to_metadata(&r))
    }

    /// Forgets a partition (once it is revoked): its next owner reports
    /// its own figures.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.topics.get_mut(topic) {
            partitions.remove(&partition);
            if partitions.is_empty() {
                self.topics.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_survives_the_metadata_round_trip() {
        for (ns, n) in [
            (0, 0),
            (1, 1),
            (200_000, 12_345),
            (3_600_000_000_000, u64::MAX),
        ] {
            let report = ProcessingReport::new(Duration::from_nanos(ns), n);
            assert_eq!(
                ProcessingReport::from_metadata(&report.to_metadata()),
                Some(report)
            );
        }
    }

    #[test]
    fn other_metadata_in_front_is_left_and_later_fields_are_skipped() {
        let report = ProcessingReport::from_metadata(
            "app-state=7 smartkafka/processing-v1 ns=1000 load=0.3 n=9",
        )
        .expect("a report");
        assert_eq!(
            (report.per_record(), report.records()),
            (Duration::from_micros(1), 9)
        );
    }

    #[test]
    fn malformed_reports_are_none() {
        for bad in [
            "",
            "smartkafka/processing-v1",
            "smartkafka/processing-v1 ",
            "smartkafka/processing-v1 ns=10",
            "smartkafka/processing-v1 n=10",
            "smartkafka/processing-v1 ns=-1 n=1",
            "smartkafka/processing-v1 ns=1.5 n=1",
            "smartkafka/processing-v1 ns=99999999999999999999999 n=1",
            "smartkafka/processing-v1 ns=3600000000001 n=1",
            "smartkafka/processing-v1ns=1 n=1",
            "smartkafka/processing-v2 ns=1 n=1",
        ] {
            assert_eq!(ProcessingReport::from_metadata(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn capacity_is_records_per_second() {
        assert_eq!(
            ProcessingReport::new(Duration::from_micros(200), 1).capacity(),
            5_000.0
        );
        assert!(
            ProcessingReport::new(Duration::ZERO, 1)
                .capacity()
                .is_infinite()
        );
        assert_eq!(
            ProcessingReport::new(Duration::from_secs(7_200), 1).per_record(),
            MAX_PER_RECORD
        );
    }

    #[test]
    fn a_meter_reports_what_came_since_its_last_report() {
        let mut meter = ProcessingMeter::new();
        meter.record("t", 0, 10, Duration::from_millis(20));
        meter.record("t", 1, 1, Duration::from_micros(100));
        let first = meter.report("t", 0).expect("processed");
        assert_eq!(
            (first.per_record(), first.records()),
            (Duration::from_millis(2), 10)
        );
        // Faster since: the next report says so, alone.
        meter.record("t", 0, 5, Duration::from_millis(1));
        let second = meter.report("t", 0).expect("processed");
        assert_eq!(
            (second.per_record(), second.records()),
            (Duration::from_micros(200), 5)
        );
        assert_eq!(meter.report("t", 0), Some(second));
        assert_eq!(meter.report("t", 1).map(|r| r.records()), Some(1));
    }

    #[test]
    fn a_partition_without_records_is_reported_at_the_consumers_pace() {
        let mut meter = ProcessingMeter::new();
        assert_eq!(meter.report("t", 0), None);
        // Slow on both partitions.
        meter.record("t", 0, 10, Duration::from_millis(20));
        meter.record("t", 1, 10, Duration::from_millis(20));
        assert_eq!(
            meter.report("t", 0).map(|r| r.per_record()),
            Some(Duration::from_millis(2))
        );
        assert_eq!(
            meter.report("t", 1).map(|r| r.per_record()),
            Some(Duration::from_millis(2))
        );
        // Then fast, with records on partition 0 only: partition 1 (starved)
        // is reported at the consumer's new pace, not its old one.
        meter.record("t", 0, 10, Duration::from_millis(2));
        let fast = Some(Duration::from_micros(200));
        assert_eq!(meter.report("t", 0).map(|r| r.per_record()), fast);
        assert_eq!(meter.report("t", 1).map(|r| r.per_record()), fast);
        assert_eq!(meter.report("u", 0).map(|r| r.per_record()), fast);
        // A partition forgotten and nothing since: the consumer's pace.
        meter.forget("t", 0);
        assert_eq!(meter.report("t", 0).map(|r| r.per_record()), fast);
    }

    #[test]
    fn a_fast_partition_without_records_keeps_its_own_pace() {
        let mut meter = ProcessingMeter::new();
        meter.record("t", 0, 10, Duration::from_millis(2));
        meter.record("t", 1, 10, Duration::from_millis(20));
        let fast = Some(Duration::from_micros(200));
        assert_eq!(meter.report("t", 0).map(|r| r.per_record()), fast);
        // Only the slow partition's records since: partition 0 stays fast,
        // not the consumer's mixed pace.
        meter.record("t", 1, 10, Duration::from_millis(20));
        assert_eq!(
            meter.report("t", 1).map(|r| r.per_record()),
            Some(Duration::from_millis(2))
        );
        assert_eq!(meter.report("t", 0).map(|r| r.per_record()), fast);
    }
}
