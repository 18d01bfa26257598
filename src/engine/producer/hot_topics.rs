//! The engine's names of the topics records arrived with lately, found by
//! the caller's shared name without comparing bytes.
//!
//! A record names its topic with the caller's [`Topic`], usually a clone of
//! one shared name per topic. The engine keys its queues and metadata by
//! its own copy of each name; finding that copy by the caller's name means
//! a lookup by string per record, and with many topics a string comparison
//! at every step of each lookup. This table remembers, by the caller's
//! pointer, the engine's name for the topics seen: a record for one of
//! them finds it with one hash of an address. An entry holds a clone of
//! the caller's name, so its address is never reused for another name
//! while it is remembered.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::record::Topic;

/// Names remembered at most; past it the table starts over (it is only a
/// shortcut: a name not found is looked up by string and remembered).
const MOST: usize = 4096;

/// Recent topics: the caller's name and the engine's, by the caller's
/// pointer.
#[derive(Debug, Default)]
pub(super) struct HotTopics {
    /// The last one remembered: a producer of one topic never hashes. (It
    /// is not moved to each one found: that would change the reference
    /// counts of the caller's names, which the sending threads share, on
    /// every record.)
    last: Option<(Topic, Topic)>,
    by_addr: HashMap<usize, (Topic, Topic), BuildHasherDefault<AddrHasher>>,
}

impl HotTopics {
    /// The engine's name for `caller`, if `caller` (this very shared name)
    /// was seen lately.
    pub(super) fn get(&self, caller: &Topic) -> Option<&Topic> {
        if let Some((seen, key)) = &self.last
            && seen.same(caller)
        {
            return Some(key);
        }
        match self.by_addr.get(&caller.addr()) {
            Some((seen, key)) if seen.same(caller) => Some(key),
            _ => None,
        }
    }

    /// Remembers that the engine's name for `caller` is `key`.
    pub(super) fn insert(&mut self, caller: &Topic, key: &Topic) {
        if self.by_addr.len() >= MOST {
            self.by_addr.clear();
        }
        self.by_addr
            .insert(caller.addr(), (caller.clone(), key.clone()));
        self.last = Some((caller.clone(), key.clone()));
    }
}

/// Hashes an address: a multiply and a fold, so the alignment zeros of its
/// low bits do not all land in the same buckets.
#[derive(Debug, Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = mixed ^ (mixed >> 32);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_are_found_by_their_own_string() {
        const NAME: &str = "orders-eu";
        const ORDERS: Topic = Topic::from_static(NAME);
        let mut hot = HotTopics::default();
        let key = Topic::from("orders-eu");
        hot.insert(&ORDERS, &key);
        assert!(hot.get(&ORDERS).is_some_and(|k| k.same(&key)));
        // The start of the same static string is another name, though it
        // begins at the same address.
        let start = Topic::from_static(&NAME[..6]);
        assert_eq!(start.addr(), ORDERS.addr());
        assert!(hot.get(&start).is_none());
        // An equal shared name is not this one either.
        assert!(hot.get(&Topic::from("orders-eu")).is_none());
    }

    #[test]
    fn finds_by_the_shared_name_only() {
        let mut hot = HotTopics::default();
        let orders = Topic::from("orders");
        let key = Topic::from("orders");
        assert!(hot.get(&orders).is_none());
        hot.insert(&orders, &key);
        assert!(hot.get(&orders).is_some_and(|k| k.same(&key)));
        assert!(
            hot.get(&orders.clone()).is_some(),
            "a clone shares the name"
        );
        // An equal name from another allocation is not this one.
        assert!(hot.get(&Topic::from("orders")).is_none());
    }

    #[test]
    fn many_topics_in_turn_are_all_kept_up_to_the_bound() {
        let mut hot = HotTopics::default();
        let names: Vec<Topic> = (0..MOST)
            .map(|i| Topic::from(format!("t{i}").as_str()))
            .collect();
        let keys: Vec<Topic> = names.iter().map(|n| Topic::from(n.as_str())).collect();
        for (name, key) in names.iter().zip(&keys) {
            hot.insert(name, key);
        }
        for (name, key) in names.iter().zip(&keys) {
            assert!(hot.get(name).is_some_and(|k| k.same(key)), "{name}");
        }
        // One more starts over, bounded.
        let extra = Topic::from("extra");
        hot.insert(&extra, &extra);
        assert!(hot.get(&extra).is_some());
        assert!(hot.by_addr.len() <= MOST);
    }
}
