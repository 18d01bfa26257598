//! [`KeyedQueue`]: the records of one partition waiting to be processed,
//! in one lane per key, so that records of different keys run in
//! parallel while each key's records run one at a time in offset order.
//!
//! Keyless records share one lane of their own: they are processed one at
//! a time in offset order among themselves, in parallel with keyed ones.
//!
//! A lane is *busy* while its head record is being processed; the next
//! record of the lane becomes ready only when that one is
//! [`done`](KeyedQueue::done). Ready records are handed out lowest offset
//! first.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

/// The lane of a record: its key, or `None` for keyless records.
pub(crate) type Lane = Option<Bytes>;

/// Per-key lanes of one partition.
#[derive(Debug)]
pub(crate) struct KeyedQueue<T> {
    lanes: HashMap<Lane, VecDeque<(i64, T)>>,
    busy: HashSet<Lane>,
    /// Offsets of the heads of lanes that are not busy.
    ready: BTreeMap<i64, Lane>,
    len: usize,
}

impl<T> Default for KeyedQueue<T> {
    fn default() -> Self {
        KeyedQueue {
            lanes: HashMap::new(),
            busy: HashSet::new(),
            ready: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> KeyedQueue<T> {
    /// Queues `item` (the record at `offset`) behind the earlier records of
    /// `lane`. Offsets must grow within a partition.
    pub(crate) fn push(&mut self, lane: Lane, offset: i64, item: T) {
        let queue = self.lanes.entry(lane.clone()).or_default();
        if queue.is_empty() && !self.busy.contains(&lane) {
            self.ready.insert(offset, lane);
        }
        queue.push_back((offset, item));
        self.len += 1;
    }

    /// The ready record with the lowest offset, marking its lane busy.
    pub(crate) fn pop_ready(&mut self) -> Option<(Lane, i64, T)> {
        let (_, lane) = self.ready.pop_first()?;
        let queue = self.lanes.get_mut(&lane)?;
        let (offset, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.lanes.remove(&lane);
        }
        self.busy.insert(lane.clone());
        self.len -= 1;
        Some((lane, offset, item))
    }

    /// The record handed out for `lane` is finished: the lane's next
    /// record becomes ready.
    pub(crate) fn done(&mut self, lane: &Lane) {
        if !self.busy.remove(lane) {
            return;
        }
        if let Some((offset, _)) = self.lanes.get(lane).and_then(VecDeque::front) {
            self.ready.insert(*offset, lane.clone());
        }
    }

    /// Whether a record is ready now.
    #[cfg(test)]
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Records queued and not handed out.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Lane {
        Some(Bytes::copy_from_slice(k.as_bytes()))
    }

    #[test]
    fn different_keys_are_ready_together_same_key_waits() {
        let mut q = KeyedQueue::default();
        q.push(key("a"), 0, "a0");
        q.push(key("b"), 1, "b1");
        q.push(key("a"), 2, "a2");
        assert_eq!(q.len(), 3);
        let (lane_a, _, first) = q.pop_ready().unwrap();
        assert_eq!(first, "a0");
        let (lane_b, _, second) = q.pop_ready().unwrap();
        assert_eq!(second, "b1");
        assert!(q.pop_ready().is_none(), "a2 waits for a0");
        q.done(&lane_b);
        assert!(q.pop_ready().is_none(), "b finishing does not free a");
        q.done(&lane_a);
        assert_eq!(q.pop_ready().unwrap().2, "a2");
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn keyless_records_form_one_ordered_lane() {
        let mut q = KeyedQueue::default();
        q.push(None, 0, 0);
        q.push(None, 1, 1);
        q.push(key("k"), 2, 2);
        let (lane, _, v) = q.pop_ready().unwrap();
        assert_eq!((lane.clone(), v), (None, 0));
        assert_eq!(q.pop_ready().unwrap().2, 2, "keyed record runs alongside");
        assert!(q.pop_ready().is_none());
        q.done(&lane);
        assert_eq!(q.pop_ready().unwrap().2, 1);
    }

    #[test]
    fn ready_records_come_lowest_offset_first() {
        let mut q = KeyedQueue::default();
        q.push(key("x"), 5, 5);
        q.push(key("y"), 3, 3);
        q.push(key("z"), 4, 4);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop_ready().map(|r| r.2)).collect();
        assert_eq!(order, vec![3, 4, 5]);
    }

    #[test]
    fn a_lane_pushed_while_busy_waits_for_done() {
        let mut q = KeyedQueue::default();
        q.push(key("a"), 0, 0);
        let (lane, _, _) = q.pop_ready().unwrap();
        q.push(key("a"), 1, 1);
        assert!(!q.has_ready());
        q.done(&lane);
        assert!(q.has_ready());
        assert_eq!(q.pop_ready().unwrap().2, 1);
        // done for a lane that is not busy is ignored.
        q.done(&key("nobody"));
        assert!(!q.has_ready());
    }
}
