//! The producer's counters: totals, per partition and per broker, kept by
//! the engine as it works and handed out as [`ProducerStats`] snapshots.
//!
//! Totals are cheap and always current. The per-partition and per-broker
//! tables are copied into a snapshot by [`StatsBook::snapshot_into`] only
//! when asked for (`with_detail`), so a busy producer does not copy them for
//! every record; and they are copied into the entries of an earlier
//! snapshot, so a refresh of 10,000 partitions allocates nothing.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters of a producer, as a snapshot.
///
/// ```
/// use smartkafka::ProducerStats;
///
/// let stats = ProducerStats::default();
/// assert_eq!(stats.records_sent, 0);
/// assert_eq!(stats.avg_batch_bytes(), 0);
/// assert!(stats.request_latency_avg().is_zero());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Records acknowledged (or written, with acks = 0).
    pub records_sent: u64,
    /// Bytes of record batches acknowledged, as sent (compressed).
    pub bytes_sent: u64,
    /// Batches acknowledged.
    pub batches_sent: u64,
    /// The largest batch acknowledged, in bytes as sent.
    pub batch_bytes_max: u64,
    /// The most records in one acknowledged batch.
    pub batch_records_max: u64,
    /// Produce requests sent.
    pub requests_sent: u64,
    /// Produce requests answered (with or without errors).
    pub responses_received: u64,
    /// Produce requests that got no answer (connection lost, timeout).
    pub request_failures: u64,
    /// Time from handing a Produce request to the network to its answer,
    /// summed over `responses_received`.
    pub request_latency_total: Duration,
    /// The slowest answer to a Produce request.
    pub request_latency_max: Duration,
    /// Batch attempts retried.
    pub retries: u64,
    /// Records failed.
    pub errors: u64,
    /// Bytes of records held (queued or in flight).
    pub queued_bytes: u64,
    /// Records held (waiting, queued or in flight).
    pub queued_records: u64,
    /// Produce requests in flight.
    pub in_flight_requests: u64,
    /// Leader changes learnt from Produce responses (KIP-951) rather than
    /// from a metadata refresh.
    pub leader_hints: u64,
    /// Per partition, ordered by topic and partition. Refreshed at most
    /// every 20 ms, or 10 us per partition beyond 2,000 (100 ms over
    /// 10,000: their cost grows with the partitions written to), and
    /// exact once `flush` or `close` has returned; the totals above are
    /// always current.
    pub partitions: Vec<PartitionStats>,
    /// Per broker, ordered by node id; refreshed like `partitions`.
    pub brokers: Vec<BrokerStats>,
}

impl ProducerStats {
    /// Mean size of an acknowledged batch, in bytes as sent.
    pub fn avg_batch_bytes(&self) -> u64 {
        self.bytes_sent.checked_div(self.batches_sent).unwrap_or(0)
    }

    /// Mean number of records in an acknowledged batch.
    pub fn avg_batch_records(&self) -> u64 {
        self.records_sent
            .checked_div(self.batches_sent)
            .unwrap_or(0)
    }

    /// Mean Produce round trip.
    pub fn request_latency_avg(&self) -> Duration {
        mean(self.request_latency_total, self.responses_received)
    }

    /// The counters of one partition, if it has any.
    ///
    /// Found by a binary search, as the snapshot lists partitions ordered
    /// by topic and partition: a producer over 10,000 partitions answers
    /// in a few comparisons, not a walk of the list. A partition the search
    /// misses is looked for along the list too, so a list the caller has
    /// reordered still answers right.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionStats> {
        self.search_partition(topic, partition).or_else(|| {
            self.partitions
                .iter()
                .find(|p| p.topic == topic && p.partition == partition)
        })
    }

    /// The binary search of [`partition`](Self::partition) alone.
    fn search_partition(&self, topic: &str, partition: i32) -> Option<&PartitionStats> {
        let key = (topic, partition);
        let at = self
            .partitions
            .binary_search_by(|p| (p.topic.as_str(), p.partition).cmp(&key))
            .ok()?;
        self.partitions.get(at)
    }

    /// The counters of one broker, if it has any.
    pub fn broker(&self, node: i32) -> Option<&BrokerStats> {
        self.brokers.iter().find(|b| b.node == node)
    }
}

/// Counters of one partition.
#[derive(Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records acknowledged.
    pub records_sent: u64,
    /// Bytes of batches acknowledged, as sent.
    pub bytes_sent: u64,
    /// Batches acknowledged.
    pub batches_sent: u64,
    /// Batch attempts retried.
    pub retries: u64,
    /// Records failed after they were accepted into a batch.
    pub errors: u64,
    /// Bytes of records held for this partition (queued or in flight).
    pub queued_bytes: u64,
}

impl Clone for PartitionStats {
    fn clone(&self) -> Self {
        PartitionStats {
            topic: self.topic.clone(),
            ..*self
        }
    }

    /// Reuses this entry's topic string: refreshing a snapshot in place
    /// allocates nothing for the partitions it already had.
    fn clone_from(&mut self, source: &Self) {
        let mut topic = std::mem::take(&mut self.topic);
        topic.clone_from(&source.topic);
        *self = PartitionStats { topic, ..*source };
    }
}

/// Counters of one broker connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// The broker's node id.
    pub node: i32,
    /// Produce requests sent to it.
    pub requests_sent: u64,
    /// Produce requests it answered.
    pub responses_received: u64,
    /// Produce requests that got no answer (connection lost, timeout).
    pub request_failures: u64,
    /// Bytes of batches sent to it (every attempt).
    pub bytes_sent: u64,
    /// Produce requests in flight to it.
    pub in_flight_requests: u64,
    /// Round trips summed over `responses_received`.
    pub request_latency_total: Duration,
    /// The slowest answer.
    pub request_latency_max: Duration,
}

impl BrokerStats {
    /// Mean Produce round trip to this broker.
    pub fn request_latency_avg(&self) -> Duration {
        mean(self.request_latency_total, self.responses_received)
    }
}

fn mean(total: Duration, n: u64) -> Duration {
    match u32::try_from(n) {
        Ok(0) => Duration::ZERO,
        Ok(n) => total / n,
        Err(_) => Duration::from_secs_f64(total.as_secs_f64() / n as f64),
    }
}

/// The counters kept per partition: 40 bytes, where a [`PartitionStats`]
/// takes 80 with its name. They live with the partition's queue (the
/// engine's), next to the sequences and in-flight orders an acknowledgement
/// reads anyway: over thousands of partitions a table of its own was read
/// out of the cache once more per delivered batch. The snapshot adds the
/// names and the bytes held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionCounts {
    records_sent: u64,
    bytes_sent: u64,
    batches_sent: u64,
    retries: u64,
    errors: u64,
}

impl PartitionCounts {
    /// `n` records of the partition failed after they were accepted (the
    /// totals count each failed record by [`StatsBook::record_failed`]).
    pub(crate) fn records_failed(&mut self, n: usize) {
        self.errors += n as u64;
    }
}

/// The engine's running counters: the totals and the per-broker table.
/// The per-partition counters ([`PartitionCounts`]) are kept by the
/// partitions and counted through the book.
#[derive(Debug, Default)]
pub(crate) struct StatsBook {
    totals: ProducerStats,
    brokers: BTreeMap<i32, BrokerStats>,
}

impl StatsBook {
    fn broker(&mut self, node: i32) -> &mut BrokerStats {
        self.brokers.entry(node).or_insert_with(|| BrokerStats {
            node,
            ..BrokerStats::default()
        })
    }

    /// A Produce request of `bytes` batch bytes went to `node`.
    pub(crate) fn request_sent(&mut self, node: i32, bytes: usize) {
        self.totals.requests_sent += 1;
        let b = self.broker(node);
        b.requests_sent += 1;
        b.bytes_sent += bytes as u64;
        b.in_flight_requests += 1;
    }

    /// `node` answered a Produce request after `latency`.
    pub(crate) fn response(&mut self, node: i32, latency: Duration) {
        let t = &mut self.totals;
        t.responses_received += 1;
        t.request_latency_total += latency;
        t.request_latency_max = t.request_latency_max.max(latency);
        let b = self.broker(node);
        b.responses_received += 1;
        b.in_flight_requests = b.in_flight_requests.saturating_sub(1);
        b.request_latency_total += latency;
        b.request_latency_max = b.request_latency_max.max(latency);
    }

    /// A Produce request to `node` got no answer.
    pub(crate) fn request_failed(&mut self, node: i32) {
        self.totals.request_failures += 1;
        let b = self.broker(node);
        b.request_failures += 1;
        b.in_flight_requests = b.in_flight_requests.saturating_sub(1);
    }

    /// Requests abandoned without an outcome (the producer was aborted).
    pub(crate) fn forget_in_flight(&mut self) {
        for b in self.brokers.values_mut() {
            b.in_flight_requests = 0;
        }
    }

    /// A batch of `records` records and `bytes` bytes of the partition
    /// counted by `partition` was acknowledged.
    pub(crate) fn batch_delivered(
        &mut self,
        partition: &mut PartitionCounts,
        records: usize,
        bytes: usize,
    ) {
        let (records, bytes) = (records as u64, bytes as u64);
        let t = &mut self.totals;
        t.records_sent += records;
        t.bytes_sent += bytes;
        t.batches_sent += 1;
        t.batch_bytes_max = t.batch_bytes_max.max(bytes);
        t.batch_records_max = t.batch_records_max.max(records);
        partition.records_sent += records;
        partition.bytes_sent += bytes;
        partition.batches_sent += 1;
    }

    /// A batch of the partition counted by `partition` goes back to be
    /// sent again.
    pub(crate) fn batch_retried(&mut self, partition: &mut PartitionCounts) {
        self.totals.retries += 1;
        partition.retries += 1;
    }

    /// A record failed (anywhere: waiting, queued or in flight).
    pub(crate) fn record_failed(&mut self) {
        self.totals.errors += 1;
    }

    /// A leader hint (KIP-951) was taken.
    pub(crate) fn leader_hint(&mut self) {
        self.totals.leader_hints += 1;
    }

    /// Fills `out` with a snapshot: totals always; the tables with
    /// `partitions` (per topic, in name order, each partition's counters
    /// and the bytes it holds as the engine counts them, index =
    /// partition), reusing `out`'s entries; without it, `out`'s tables are
    /// left as they were. The engine fills in the other gauges it owns
    /// (queued records, requests in flight).
    pub(crate) fn snapshot_into<'a, P>(
        &self,
        out: &mut ProducerStats,
        partitions: Option<impl Iterator<Item = (&'a str, P)>>,
    ) where
        P: Iterator<Item = (&'a PartitionCounts, u64)>,
    {
        let table = std::mem::take(&mut out.partitions);
        let brokers = std::mem::take(&mut out.brokers);
        *out = ProducerStats {
            partitions: table,
            brokers,
            ..self.totals.clone()
        };
        let Some(partitions) = partitions else {
            return;
        };
        let mut filled = 0;
        for (topic, counted) in partitions {
            for (index, (counts, queued_bytes)) in counted.enumerate() {
                let Ok(partition) = i32::try_from(index) else {
                    break;
                };
                let entry = place(&mut out.partitions, filled, topic, partition, counts);
                entry.queued_bytes = queued_bytes;
                filled += 1;
            }
        }
        out.partitions.truncate(filled);
        out.brokers.clear();
        out.brokers.extend(self.brokers.values().cloned());
    }
}

#[cfg(test)]
impl StatsBook {
    /// A fresh snapshot (see [`snapshot_into`](Self::snapshot_into)).
    pub(crate) fn snapshot<'a, P>(
        &self,
        partitions: Option<impl Iterator<Item = (&'a str, P)>>,
    ) -> ProducerStats
    where
        P: Iterator<Item = (&'a PartitionCounts, u64)>,
    {
        let mut out = ProducerStats::default();
        self.snapshot_into(&mut out, partitions);
        out
    }
}

/// Puts partition `partition` of `topic` at `at` in `table` (which holds at
/// least `at` entries) and returns it, with its `counted` counters. An entry already there is
/// overwritten in place, keeping its topic string's allocation.
fn place<'t>(
    table: &'t mut Vec<PartitionStats>,
    at: usize,
    topic: &str,
    partition: i32,
    c: &PartitionCounts,
) -> &'t mut PartitionStats {
    let name = match table.get_mut(at) {
        Some(entry) => {
            let mut name = std::mem::take(&mut entry.topic);
            if name != topic {
                name.clear();
                name.push_str(topic);
            }
            name
        }
        None => topic.to_string(),
    };
    let entry = PartitionStats {
        topic: name,
        partition,
        records_sent: c.records_sent,
        bytes_sent: c.bytes_sent,
        batches_sent: c.batches_sent,
        retries: c.retries,
        errors: c.errors,
        queued_bytes: 0,
    };
    if at >= table.len() {
        table.push(entry);
        // Just pushed, so the table is not empty.
        let last = table.len() - 1;
        return &mut table[last];
    }
    table[at] = entry;
    &mut table[at]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's partitions: per topic, in name order, each partition's
    /// counters and the bytes it holds.
    type Table = Vec<(&'static str, Vec<(PartitionCounts, u64)>)>;

    /// `table` as the engine hands its partitions to a snapshot.
    fn rows(
        table: &Table,
    ) -> Option<impl Iterator<Item = (&str, impl Iterator<Item = (&PartitionCounts, u64)>)>> {
        Some(
            table
                .iter()
                .map(|(topic, ps)| (*topic, ps.iter().map(|(c, held)| (c, *held)))),
        )
    }

    /// No tables asked for.
    fn no_rows<'a>()
    -> Option<impl Iterator<Item = (&'a str, impl Iterator<Item = (&'a PartitionCounts, u64)>)>>
    {
        None::<std::iter::Empty<(&str, std::iter::Empty<(&PartitionCounts, u64)>)>>
    }

    /// `n` partitions with nothing counted or held.
    fn fresh(n: usize) -> Vec<(PartitionCounts, u64)> {
        vec![(PartitionCounts::default(), 0); n]
    }

    #[test]
    fn totals_and_tables_add_up() {
        let mut book = StatsBook::default();
        book.request_sent(2, 300);
        book.request_sent(2, 100);
        book.response(2, Duration::from_millis(4));
        book.request_failed(2);
        let mut t = fresh(4);
        book.batch_delivered(&mut t[1].0, 10, 300);
        book.batch_retried(&mut t[3].0);
        t[3].0.records_failed(2);
        let table: Table = vec![("t", t), ("u", vec![(PartitionCounts::default(), 77)])];
        let s = book.snapshot(rows(&table));
        assert_eq!(
            (s.requests_sent, s.responses_received, s.request_failures),
            (2, 1, 1)
        );
        assert_eq!(s.request_latency_avg(), Duration::from_millis(4));
        assert_eq!(
            (
                s.records_sent,
                s.batches_sent,
                s.avg_batch_bytes(),
                s.retries
            ),
            (10, 1, 300, 1)
        );
        let b = s.broker(2).unwrap();
        assert_eq!((b.bytes_sent, b.in_flight_requests), (400, 0));
        assert_eq!(s.partition("t", 1).unwrap().records_sent, 10);
        assert_eq!(s.partition("t", 3).unwrap().errors, 2);
        assert_eq!(s.partition("t", 3).unwrap().retries, 1);
        assert_eq!(s.partition("u", 0).unwrap().queued_bytes, 77);
        // Partitions are listed in order, the ones never written included.
        let order: Vec<(&str, i32)> = s
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        assert_eq!(order, [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("u", 0)]);
        assert!(book.snapshot(no_rows()).partitions.is_empty());
    }

    /// Over thousands of partitions and several topics, every partition
    /// is found by the search, a partition not listed is not, and a list
    /// the caller reversed still answers the same.
    #[test]
    fn partitions_are_found_in_order_and_out_of_it() {
        let mut book = StatsBook::default();
        let mut table: Table = Vec::new();
        for topic in ["audit", "events", "events-dlq"] {
            let mut partitions = fresh(2_998);
            for p in (0..2_998).step_by(3) {
                book.batch_delivered(&mut partitions[p].0, (p % 7) + 1, 100);
            }
            table.push((topic, partitions));
        }
        let s = book.snapshot(rows(&table));
        // In the snapshot's order the search alone finds every partition.
        for topic in ["audit", "events", "events-dlq"] {
            for p in 0..2_998 {
                let found = s.search_partition(topic, p).unwrap();
                assert_eq!((found.topic.as_str(), found.partition), (topic, p));
            }
        }
        let mut reversed = s.clone();
        reversed.partitions.reverse();
        for stats in [&s, &reversed] {
            for topic in ["audit", "events", "events-dlq"] {
                for p in (0..2_998).step_by(3) {
                    let found = stats.partition(topic, p).unwrap();
                    assert_eq!((found.topic.as_str(), found.partition), (topic, p));
                    assert_eq!(found.records_sent, (p as u64 % 7) + 1);
                }
                // Listed, but never written to.
                assert_eq!(stats.partition(topic, 1).unwrap().records_sent, 0);
                assert!(stats.partition(topic, 2_998).is_none());
            }
            assert!(stats.partition("event", 0).is_none());
            assert!(stats.partition("zebra", 0).is_none());
        }
    }

    /// A snapshot refreshed in place matches a fresh one, whether the old
    /// one had more entries, fewer, or other topics at the same places.
    #[test]
    fn a_snapshot_refreshed_in_place_equals_a_fresh_one() {
        let mut book = StatsBook::default();
        let mut table: Table = vec![
            (
                "a",
                vec![
                    (PartitionCounts::default(), 1),
                    (PartitionCounts::default(), 2),
                ],
            ),
            ("b", fresh(3)),
            ("c", vec![(PartitionCounts::default(), 9)]),
        ];
        book.batch_delivered(&mut table[1].1[2].0, 5, 50);
        let mut reused = ProducerStats::default();
        book.snapshot_into(&mut reused, rows(&table));
        assert_eq!(reused, book.snapshot(rows(&table)));
        // More partitions than before, and the counters moved on.
        table[1].1.resize(7, (PartitionCounts::default(), 0));
        book.batch_delivered(&mut table[1].1[6].0, 1, 10);
        book.batch_delivered(&mut table[0].1[0].0, 3, 30);
        book.snapshot_into(&mut reused, rows(&table));
        assert_eq!(reused, book.snapshot(rows(&table)));
        assert_eq!(reused.partitions.len(), 2 + 7 + 1);
        // Fewer: one topic listed where three were.
        table.truncate(1);
        book.snapshot_into(&mut reused, rows(&table));
        assert_eq!(reused, book.snapshot(rows(&table)));
        assert!(reused.partition("c", 0).is_none());
        assert_eq!(reused.partition("a", 1).unwrap().queued_bytes, 2);
        assert_eq!(reused.partition("a", 0).unwrap().records_sent, 3);
        // Without the tables asked for, the old tables stay as they were.
        let before = reused.partitions.clone();
        book.batch_delivered(&mut table[0].1[1].0, 1, 10);
        book.snapshot_into(&mut reused, no_rows());
        assert_eq!(reused.partitions, before);
        assert_eq!(reused.records_sent, 5 + 1 + 3 + 1);
    }
}
