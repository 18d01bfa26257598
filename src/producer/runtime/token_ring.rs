//! Entries keyed by consecutive tokens (1, 2, 3, ...), inserted in token
//! order and removed in any order: the driver's table of unsettled
//! records.
//!
//! A ring of slots starting at the oldest live token: insert is a push,
//! removal indexes directly, and settled slots at the front are
//! dropped as they come, so the front is always the oldest unsettled
//! record (what `flush` waits for). Records of one partition settle in
//! order and partitions move together, so the gaps stay short.

use std::collections::VecDeque;

pub(crate) struct TokenRing<T> {
    /// The token of `slots[0]`.
    first: u64,
    slots: VecDeque<Option<T>>,
    live: usize,
}

impl<T> TokenRing<T> {
    /// An empty ring whose next token is `first`.
    pub(crate) fn new(first: u64) -> Self {
        TokenRing {
            first,
            slots: VecDeque::new(),
            live: 0,
        }
    }

    /// The token the next `push` gets.
    pub(crate) fn next_token(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    /// Adds an entry under the next token, which it returns.
    pub(crate) fn push(&mut self, value: T) -> u64 {
        let token = self.next_token();
        self.slots.push_back(Some(value));
        self.live += 1;
        token
    }

    fn index(&self, token: u64) -> Option<usize> {
        let i = usize::try_from(token.checked_sub(self.first)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    pub(crate) fn remove(&mut self, token: u64) -> Option<T> {
        let i = self.index(token)?;
        let value = self.slots[i].take()?;
        self.live -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(value)
    }

    /// The oldest token still present.
    pub(crate) fn oldest(&self) -> Option<u64> {
        // The front slot is never empty (see `remove`).
        (!self.slots.is_empty()).then_some(self.first)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::TokenRing;

    #[test]
    fn removes_in_any_order_and_tracks_the_oldest() {
        let mut ring = TokenRing::new(1);
        let tokens: Vec<u64> = (0..6).map(|i| ring.push(i * 10)).collect();
        assert_eq!(tokens, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(ring.remove(3), Some(20));
        assert_eq!(ring.remove(3), None);
        assert_eq!(ring.oldest(), Some(1));
        assert_eq!(ring.remove(1), Some(0));
        assert_eq!(ring.oldest(), Some(2));
        assert_eq!(ring.remove(2), Some(10));
        // 3 was already gone: the oldest skips it.
        assert_eq!(ring.oldest(), Some(4));
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.remove(5), Some(40));
        assert_eq!(ring.remove(0), None);
        assert_eq!(ring.remove(99), None);
        assert_eq!(ring.remove(4), Some(30));
        assert_eq!(ring.remove(6), Some(50));
        assert!(ring.is_empty());
        assert_eq!(ring.oldest(), None);
        assert_eq!(ring.push(7), 7);
        assert_eq!(ring.oldest(), Some(7));
    }
}
