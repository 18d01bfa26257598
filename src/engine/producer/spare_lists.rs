//! Emptied lists kept for reuse: the per-pass and per-request lists of the
//! drain (ready partitions, the batches of a request) are filled again
//! instead of grown from empty. Over thousands of partitions a pass lists
//! hundreds of them and a request carries hundreds of batches, and growing
//! such a list reallocates and copies it about ten times.

/// Up to [`SpareLists::MOST`] emptied lists, each keeping its room.
#[derive(Debug)]
pub(super) struct SpareLists<T> {
    lists: Vec<Vec<T>>,
}

impl<T> Default for SpareLists<T> {
    fn default() -> Self {
        SpareLists { lists: Vec::new() }
    }
}

impl<T> SpareLists<T> {
    /// Lists kept at most: about one per request in flight to three
    /// brokers (beyond them, an emptied list is freed). They hold no more
    /// than the lists in use held at their peak.
    const MOST: usize = 16;

    /// An empty list, with the room of one used before if any is kept.
    pub(super) fn take(&mut self) -> Vec<T> {
        self.lists.pop().unwrap_or_default()
    }

    /// Empties `list` and keeps it for a later [`take`](Self::take).
    pub(super) fn keep(&mut self, mut list: Vec<T>) {
        if self.lists.len() < Self::MOST && list.capacity() > 0 {
            list.clear();
            self.lists.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SpareLists;

    #[test]
    fn a_kept_list_comes_back_empty_with_its_room_and_the_count_is_bounded() {
        let mut spare: SpareLists<u32> = SpareLists::default();
        assert_eq!(spare.take().capacity(), 0, "none kept yet");
        let mut list = spare.take();
        list.extend(0..100);
        spare.keep(list);
        let again = spare.take();
        assert!(again.is_empty());
        assert!(again.capacity() >= 100);
        for _ in 0..SpareLists::<u32>::MOST + 5 {
            spare.keep(Vec::with_capacity(4));
        }
        spare.keep(Vec::new());
        assert_eq!(spare.lists.len(), SpareLists::<u32>::MOST);
    }
}
