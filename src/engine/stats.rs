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

/// The counters the book keeps per partition: 40 bytes, where a
/// [`PartitionStats`] takes 80 with its name. A delivered batch adds to
/// its partition's, so over thousands of partitions the table is read out
/// of the cache about once per batch; the snapshot adds the names and the
/// bytes held.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    records_sent: u64,
    bytes_sent: u64,
    batches_sent: u64,
    retries: u64,
    errors: u64,
}

/// The engine's running counters.
#[derive(Debug, Default)]
pub(crate) struct StatsBook {
    totals: ProducerStats,
    /// Per topic, index = partition.
    partitions: BTreeMap<String, Vec<Counts>>,
    brokers: BTreeMap<i32, BrokerStats>,
}

impl StatsBook {
    fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut Counts> {
        let index = usize::try_from(partition).ok()?;
        if !self.partitions.contains_key(topic) {
            self.partitions.insert(topic.to_string(), Vec::new());
        }
        let slots = self.partitions.get_mut(topic)?;
        if slots.len() <= index {
            slots.resize(index + 1, Counts::default());
        }
        slots.get_mut(index)
    }

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

    /// A batch of `records` records and `bytes` bytes was acknowledged.
    pub(crate) fn batch_delivered(
        &mut self,
        topic: &str,
        partition: i32,
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
        if let Some(p) = self.partition(topic, partition) {
            p.records_sent += records;
            p.bytes_sent += bytes;
            p.batches_sent += 1;
        }
    }

    /// A batch of the partition goes back to be sent again.
    pub(crate) fn batch_retried(&mut self, topic: &str, partition: i32) {
        self.totals.retries += 1;
        if let Some(p) = self.partition(topic, partition) {
            p.retries += 1;
        }
    }

    /// `n` records of the partition failed after they were accepted.
    pub(crate) fn partition_errors(&mut self, topic: &str, partition: i32, n: usize) {
        if let Some(p) = self.partition(topic, partition) {
            p.errors += n as u64;
        }
    }

    /// A record failed (anywhere: waiting, queued or in flight).
    pub(crate) fn record_failed(&mut self) {
        self.totals.errors += 1;
    }

    /// A leader hint (KIP-951) was taken.
    pub(crate) fn leader_hint(&mut self) {
        self.totals.leader_hints += 1;
    }

    /// Fills `out` with a snapshot: totals always; the tables with `queued`
    /// (bytes held per topic, index = partition, as the engine counts
    /// them, in topic order), reusing `out`'s entries; without it, `out`'s
    /// tables are left as they were. The engine fills in the other gauges
    /// it owns (queued records, requests in flight).
    pub(crate) fn snapshot_into<'a>(
        &self,
        out: &mut ProducerStats,
        queued: Option<impl Iterator<Item = (&'a str, &'a [u64])>>,
    ) {
        let partitions = std::mem::take(&mut out.partitions);
        let brokers = std::mem::take(&mut out.brokers);
        *out = ProducerStats {
            partitions,
            brokers,
            ..self.totals.clone()
        };
        let Some(queued) = queued else {
            return;
        };
        // The book's topics and the engine's are both in name order: one
        // merged pass, each topic's slots the longer of the two.
        let mut filled = 0;
        let mut book = self.partitions.iter().peekable();
        let mut held = queued.peekable();
        loop {
            let order = match (book.peek(), held.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((b, _)), Some((h, _))) => b.as_str().cmp(h),
            };
            let (topic, slots, bytes): (&str, &[Counts], &[u64]) = match order {
                std::cmp::Ordering::Less => match book.next() {
                    Some((topic, slots)) => (topic, slots, &[]),
                    None => break,
                },
                std::cmp::Ordering::Greater => match held.next() {
                    Some((topic, bytes)) => (topic, &[], bytes),
                    None => break,
                },
                std::cmp::Ordering::Equal => match (book.next(), held.next()) {
                    (Some((topic, slots)), Some((_, bytes))) => (topic, slots, bytes),
                    _ => break,
                },
            };
            for index in 0..slots.len().max(bytes.len()) {
                let Ok(partition) = i32::try_from(index) else {
                    break;
                };
                let queued_bytes = bytes.get(index).copied().unwrap_or(0);
                let entry = place(
                    &mut out.partitions,
                    filled,
                    topic,
                    partition,
                    slots.get(index),
                );
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
    pub(crate) fn snapshot<'a>(
        &self,
        queued: Option<impl Iterator<Item = (&'a str, &'a [u64])>>,
    ) -> ProducerStats {
        let mut out = ProducerStats::default();
        self.snapshot_into(&mut out, queued);
        out
    }
}

/// Puts partition `partition` of `topic` at `at` in `table` (which holds at
/// least `at` entries) and returns it, with the book's `counted` counters
/// (zero when it has none for it yet). An entry already there is
/// overwritten in place, keeping its topic string's allocation.
fn place<'t>(
    table: &'t mut Vec<PartitionStats>,
    at: usize,
    topic: &str,
    partition: i32,
    counted: Option<&Counts>,
) -> &'t mut PartitionStats {
    let c = counted.copied().unwrap_or_default();
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

    #[test]
    fn totals_and_tables_add_up() {
        let mut book = StatsBook::default();
        book.request_sent(2, 300);
        book.request_sent(2, 100);
        book.response(2, Duration::from_millis(4));
        book.request_failed(2);
        book.batch_delivered("t", 1, 10, 300);
        book.batch_retried("t", 3);
        book.partition_errors("t", 3, 2);
        let held = [77u64];
        let s = book.snapshot(Some([("u", &held[..])].into_iter()));
        assert_eq!(
            (s.requests_sent, s.responses_received, s.request_failures),
            (2, 1, 1)
        );
        assert_eq!(s.request_latency_avg(), Duration::from_millis(4));
        assert_eq!(
            (s.records_sent, s.batches_sent, s.avg_batch_bytes()),
            (10, 1, 300)
        );
        let b = s.broker(2).unwrap();
        assert_eq!((b.bytes_sent, b.in_flight_requests), (400, 0));
        assert_eq!(s.partition("t", 1).unwrap().records_sent, 10);
        assert_eq!(s.partition("t", 3).unwrap().errors, 2);
        assert_eq!(s.partition("t", 3).unwrap().retries, 1);
        assert_eq!(s.partition("u", 0).unwrap().queued_bytes, 77);
        // Partitions are listed in order, gaps included.
        let order: Vec<(&str, i32)> = s
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        assert_eq!(order, [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("u", 0)]);
        let none: Option<std::iter::Empty<(&str, &[u64])>> = None;
        assert!(book.snapshot(none).partitions.is_empty());
    }

    /// Over thousands of partitions and several topics, every partition
    /// is found by the search, a partition never counted is not, and a
    /// list the caller reversed still answers the same.
    #[test]
    fn partitions_are_found_in_order_and_out_of_it() {
        let mut book = StatsBook::default();
        for topic in ["audit", "events", "events-dlq"] {
            for p in (0..3_000).step_by(3) {
                book.batch_delivered(topic, p, (p as usize % 7) + 1, 100);
            }
        }
        let empty: [u64; 0] = [];
        let s = book.snapshot(Some(
            [
                ("audit", &empty[..]),
                ("events", &empty[..]),
                ("events-dlq", &empty[..]),
            ]
            .into_iter(),
        ));
        // In the snapshot's order the search alone finds every partition
        // listed (each topic's up to the last written, 2,997).
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
                for p in (0..3_000).step_by(3) {
                    let found = stats.partition(topic, p).unwrap();
                    assert_eq!((found.topic.as_str(), found.partition), (topic, p));
                    assert_eq!(found.records_sent, (p as u64 % 7) + 1);
                }
                // Listed (the gaps between written partitions are), but
                // never written to.
                assert_eq!(stats.partition(topic, 1).unwrap().records_sent, 0);
                assert!(stats.partition(topic, 3_000).is_none());
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
        book.batch_delivered("b", 2, 5, 50);
        let held_a = [1u64, 2];
        let held_c = [9u64];
        let queued = || Some([("a", &held_a[..]), ("c", &held_c[..])].into_iter());
        let mut reused = ProducerStats::default();
        book.snapshot_into(&mut reused, queued());
        assert_eq!(reused, book.snapshot(queued()));
        // More partitions than before, and the counters moved on.
        book.batch_delivered("b", 6, 1, 10);
        book.batch_delivered("a", 0, 3, 30);
        book.snapshot_into(&mut reused, queued());
        assert_eq!(reused, book.snapshot(queued()));
        assert_eq!(reused.partitions.len(), 2 + 7 + 1);
        // Fewer: a topic's bytes no longer reported.
        let only_a = Some([("a", &held_a[..])].into_iter());
        book.snapshot_into(&mut reused, only_a.clone());
        assert_eq!(reused, book.snapshot(only_a));
        assert!(reused.partition("c", 0).is_none());
        assert_eq!(reused.partition("a", 1).unwrap().queued_bytes, 2);
        // Without the tables asked for, the old tables stay as they were.
        let before = reused.partitions.clone();
        book.batch_delivered("b", 2, 1, 10);
        let none: Option<std::iter::Empty<(&str, &[u64])>> = None;
        book.snapshot_into(&mut reused, none);
        assert_eq!(reused.partitions, before);
        assert_eq!(reused.records_sent, 5 + 1 + 3 + 1);
    }
}
