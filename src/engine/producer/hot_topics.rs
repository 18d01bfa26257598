//! Where the engine keeps the topics records arrived with lately, found by
//! the caller's shared name without comparing bytes.
//!
//! A record names its topic with the caller's [`Topic`], usually a clone of
//! one shared name per topic. The engine keeps its queues and the metadata
//! cache its leaders in tables by name; finding a topic there by the
//! caller's name would be a search per record and table, and with many
//! topics a string comparison at every step of each search. This table
//! remembers, by the caller's pointer, the topic's slots in both tables
//! (see [`TopicTable`](crate::engine::topic_table::TopicTable)): a record
//! for one of them finds them with one hash of an address. An entry holds
//! a clone of the caller's name, so its address is never reused for
//! another name while it is remembered.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::engine::topic_table::TopicSlot;
use crate::record::Topic;

/// Where a topic is in the engine's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TopicSlots {
    /// In the metadata cache.
    pub(super) metadata: TopicSlot,
    /// In the engine's queues, once the topic's first record made them.
    pub(super) queues: Option<TopicSlot>,
}

/// Names remembered at most; past it the table starts over (it is only a
/// shortcut: a name not found is looked up by string and remembered).
const MOST: usize = 4096;

/// Recent topics: the caller's name and the topic's slots, by the
/// caller's pointer.
#[derive(Debug, Default)]
pub(super) struct HotTopics {
    /// The last one remembered: a producer of one topic never hashes. (It
    /// is not moved to each one found: that would change the reference
    /// counts of the caller's names, which the sending threads share, on
    /// every record.)
    last: Option<(Topic, TopicSlots)>,
    by_addr: HashMap<usize, (Topic, TopicSlots), BuildHasherDefault<AddrHasher>>,
}

impl HotTopics {
    /// Where `caller`'s topic is, if `caller` (this very shared name) was
    /// seen lately.
    pub(super) fn get(&self, caller: &Topic) -> Option<TopicSlots> {
        if let Some((seen, slots)) = &self.last
            && seen.same(caller)
        {
            return Some(*slots);
        }
        match self.by_addr.get(&caller.addr()) {
            Some((seen, slots)) if seen.same(caller) => Some(*slots),
            _ => None,
        }
    }

    /// Remembers where `caller`'s topic is.
    pub(super) fn insert(&mut self, caller: &Topic, slots: TopicSlots) {
        if self.by_addr.len() >= MOST {
            self.by_addr.clear();
        }
        self.by_addr.insert(caller.addr(), (caller.clone(), slots));
        self.last = Some((caller.clone(), slots));
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

    /// The slots of the `n`th topic, its queues made.
    fn slots(n: u32) -> TopicSlots {
        TopicSlots {
            metadata: TopicSlot::nth(n),
            queues: Some(TopicSlot::nth(n + 1)),
        }
    }

    #[test]
    fn static_names_are_found_by_their_own_string() {
        const NAME: &str = "orders-eu";
        const ORDERS: Topic = Topic::from_static(NAME);
        let mut hot = HotTopics::default();
        hot.insert(&ORDERS, slots(7));
        assert_eq!(hot.get(&ORDERS), Some(slots(7)));
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
        assert!(hot.get(&orders).is_none());
        hot.insert(&orders, slots(3));
        assert_eq!(hot.get(&orders), Some(slots(3)));
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
        for (n, name) in (0..).zip(&names) {
            hot.insert(name, slots(n));
        }
        for (n, name) in (0..).zip(&names) {
            assert_eq!(hot.get(name), Some(slots(n)), "{name}");
        }
        // One more starts over, bounded.
        let extra = Topic::from("extra");
        hot.insert(&extra, slots(0));
        assert!(hot.get(&extra).is_some());
        assert!(hot.by_addr.len() <= MOST);
    }
}
