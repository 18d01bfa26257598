//! [`RecordQueue`]: records waiting to be returned, kept in the chunks they
//! were decoded in (one per partition of a Fetch answer).
//!
//! A record is written once when its batch is decoded and moved once more
//! when a `poll` returns it; a chunk that fits a `poll` whole is handed over
//! as it is. Merging every answer into one flat buffer instead moved each
//! record (about 140 bytes) three more times, which cost more CPU than the
//! CRC check of a 1 KiB record.

use std::collections::VecDeque;

use super::consumed::ConsumedRecord;

/// Records in order, in chunks; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct RecordQueue {
    chunks: VecDeque<std::vec::IntoIter<ConsumedRecord>>,
    len: usize,
}

impl RecordQueue {
    /// Adds a chunk at the back.
    pub(crate) fn push(&mut self, chunk: Vec<ConsumedRecord>) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk.into_iter());
        }
    }

    /// Adds every chunk of `other` at the back.
    pub(crate) fn append(&mut self, other: RecordQueue) {
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    /// How many records are queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ConsumedRecord> {
        self.chunks.iter().flat_map(|c| c.as_slice())
    }

    /// Keeps only the records `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&ConsumedRecord) -> bool) {
        let chunks = std::mem::take(&mut self.chunks);
        self.len = 0;
        for chunk in chunks {
            self.push(chunk.filter(|r| keep(r)).collect());
        }
    }

    /// Forgets every record.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Takes up to `max` records from the front, in order.
    pub(crate) fn take(&mut self, max: usize) -> Vec<ConsumedRecord> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(chunk) = self.chunks.front_mut() else {
                break;
            };
            let room = max - out.len();
            if chunk.len() <= room {
                let chunk = self.chunks.pop_front().expect("front checked");
                if out.is_empty() {
                    // Reuses the chunk's memory (no record moves unless
                    // some were taken from its front before).
                    out = chunk.collect();
                } else {
                    out.extend(chunk);
                }
            } else {
                out.reserve_exact(room);
                out.extend(chunk.by_ref().take(room));
            }
        }
        self.len -= out.len();
        out
    }

    /// Takes up to `max` records for which `ready` says yes, in order; the
    /// others stay queued, in order.
    pub(crate) fn take_where(
        &mut self,
        max: usize,
        mut ready: impl FnMut(&ConsumedRecord) -> bool,
    ) -> Vec<ConsumedRecord> {
        let mut out = Vec::new();
        let mut kept = RecordQueue::default();
        for chunk in std::mem::take(&mut self.chunks) {
            let mut stays = Vec::new();
            for record in chunk {
                if out.len() < max && ready(&record) {
                    out.push(record);
                } else {
                    stays.push(record);
                }
            }
            kept.push(stays);
        }
        *self = kept;
        out
    }

    /// Takes every record, as one vector.
    pub(crate) fn take_all(&mut self) -> Vec<ConsumedRecord> {
        self.take(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(partition: i32, offsets: std::ops::Range<i64>) -> Vec<ConsumedRecord> {
        offsets
            .map(|offset| ConsumedRecord::bare("t", partition, offset))
            .collect()
    }

    fn offsets(records: &[ConsumedRecord]) -> Vec<(i32, i64)> {
        records.iter().map(|r| (r.partition, r.offset)).collect()
    }

    #[test]
    fn takes_in_order_across_chunks_and_within_one() {
        let mut q = RecordQueue::default();
        q.push(chunk(0, 0..3));
        q.push(Vec::new());
        q.push(chunk(1, 0..5));
        assert_eq!(q.len(), 8);
        assert_eq!(offsets(&q.take(2)), [(0, 0), (0, 1)]);
        assert_eq!(offsets(&q.take(3)), [(0, 2), (1, 0), (1, 1)]);
        assert_eq!(q.len(), 3);
        assert_eq!(
            offsets(&q.iter().cloned().collect::<Vec<_>>()),
            [(1, 2), (1, 3), (1, 4)]
        );
        assert_eq!(offsets(&q.take(10)), [(1, 2), (1, 3), (1, 4)]);
        assert!(q.is_empty());
        assert!(q.take(10).is_empty());
    }

    #[test]
    fn a_chunk_that_fits_is_handed_over_without_moving_its_records() {
        let mut q = RecordQueue::default();
        let first = chunk(0, 0..4);
        let address = first.as_ptr();
        q.push(first);
        q.push(chunk(1, 0..4));
        let out = q.take(4);
        assert_eq!(out.as_ptr(), address);
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn retain_and_take_where_keep_the_order_of_what_stays() {
        let mut q = RecordQueue::default();
        q.push(chunk(0, 0..3));
        q.push(chunk(1, 0..3));
        q.push(chunk(0, 3..5));
        q.retain(|r| r.offset != 1);
        assert_eq!(q.len(), 6);
        let taken = q.take_where(3, |r| r.partition == 0);
        assert_eq!(offsets(&taken), [(0, 0), (0, 2), (0, 3)]);
        assert_eq!(offsets(&q.take_all()), [(1, 0), (1, 2), (0, 4)]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn append_keeps_both_queues_in_order() {
        let mut a = RecordQueue::default();
        a.push(chunk(0, 0..2));
        let mut b = RecordQueue::default();
        b.push(chunk(1, 0..2));
        a.append(b);
        assert_eq!(offsets(&a.take_all()), [(0, 0), (0, 1), (1, 0), (1, 1)]);
        a.push(chunk(2, 0..1));
        a.clear();
        assert!(a.is_empty());
    }
}
