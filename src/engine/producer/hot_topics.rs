//! Where the engine keeps the topics records arrived with lately, found by
//! the caller's name without a search.
//!
//! A record names its topic with the caller's [`Topic`], usually a clone of
//! one shared name per topic. The engine keeps its queues and the metadata
//! cache its leaders in tables by name; finding a topic there by the
//! caller's name would be a search per record and table, and with many
//! topics a string comparison at every step of each search. This table
//! remembers the topic's slots in both tables (see
//! [`TopicTable`](crate::engine::topic_table::TopicTable)):
//!
//! - by the caller's pointer, for a shared or static name: a record for
//!   one of them finds them with one hash of an address. An entry holds a
//!   clone of the caller's name, so its address is never reused for
//!   another name while it is remembered.
//! - by the name's characters, for a name made for its record alone (as
//!   `Record::new("events")` makes one from a string): remembering each of
//!   those by address would keep thousands of them alive and add an entry
//!   per record, so they are found by an equal name, one hash of the
//!   characters (or one comparison with the last name seen).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hasher};

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

/// Names remembered by address at most; past it that table starts over (it
/// is only a shortcut: a name not found there is found by its characters).
const MOST: usize = 4096;

/// Recent topics' slots, by the caller's pointer and by name.
#[derive(Debug, Default)]
pub(super) struct HotTopics {
    /// The last one remembered: a producer of one topic never hashes. (It
    /// is not moved to each one found: that would change the reference
    /// counts of the caller's names, which the sending threads share, on
    /// every record.)
    last: Option<(Topic, TopicSlots)>,
    by_addr: HashMap<usize, (Topic, TopicSlots), BuildHasherDefault<AddrHasher>>,
    /// By the engine's own name (one per topic the metadata cache holds),
    /// found with any equal name. Hashed with fixed keys, as the engine
    /// takes no randomness but from its seeded generators.
    by_name: HashMap<Topic, TopicSlots, BuildHasherDefault<DefaultHasher>>,
}

impl HotTopics {
    /// Where `caller`'s topic is, if it was remembered: by this very name
    /// (shared or static), or by an equal one. A shared or static name
    /// found by an equal one is remembered by address from then on.
    #[inline]
    pub(super) fn get(&mut self, caller: &Topic) -> Option<TopicSlots> {
        self.as_last(caller).or_else(|| self.get_elsewhere(caller))
    }

    /// [`get`](Self::get) for a name other than the last one remembered.
    #[inline(never)]
    fn get_elsewhere(&mut self, caller: &Topic) -> Option<TopicSlots> {
        if let Some(slots) = self.by_address(caller) {
            return Some(slots);
        }
        let slots = self.by_name(caller)?;
        if !caller.is_unique() {
            self.remember_by_addr(caller, slots);
        }
        Some(slots)
    }

    /// Whether `caller`'s topic is remembered, by this very name or an
    /// equal one; remembers nothing. (It runs for every record, and tests
    /// the last name without copying its slots out: written as
    /// `as_last(caller).is_some()` it cost 6 % more CPU per record at 100
    /// bytes, 8 of 8 alternated pairs.)
    #[inline]
    pub(super) fn knows(&self, caller: &Topic) -> bool {
        matches!(&self.last, Some((seen, _)) if seen.same(caller))
            || self.by_address(caller).is_some()
            || self.by_name(caller).is_some()
    }

    /// The slots of `caller`, when it is this very name as the last one
    /// remembered: a producer of one topic looks no further.
    #[inline]
    fn as_last(&self, caller: &Topic) -> Option<TopicSlots> {
        match &self.last {
            Some((seen, slots)) if seen.same(caller) => Some(*slots),
            _ => None,
        }
    }

    /// The slots of `caller`, when this very name is remembered by address.
    fn by_address(&self, caller: &Topic) -> Option<TopicSlots> {
        match self.by_addr.get(&caller.addr()) {
            Some((seen, slots)) if seen.same(caller) => Some(*slots),
            _ => None,
        }
    }

    /// Where the topic named as `caller` is, found by its characters: a
    /// name made for its record alone, or one not seen lately.
    fn by_name(&self, caller: &Topic) -> Option<TopicSlots> {
        match &self.last {
            Some((seen, slots)) if seen.as_str() == caller.as_str() => Some(*slots),
            _ => self.by_name.get(caller.as_str()).copied(),
        }
    }

    /// Remembers `caller` by its address, and as the last one.
    fn remember_by_addr(&mut self, caller: &Topic, slots: TopicSlots) {
        if self.by_addr.len() >= MOST {
            self.by_addr.clear();
        }
        self.by_addr.insert(caller.addr(), (caller.clone(), slots));
        self.last = Some((caller.clone(), slots));
    }

    /// Remembers where `caller`'s topic is; `key` is the engine's name for
    /// it. A name made for its record alone (nobody else holds it) is
    /// remembered by its characters only.
    pub(super) fn insert(&mut self, caller: &Topic, key: &Topic, slots: TopicSlots) {
        self.by_name.insert(key.clone(), slots);
        if caller.is_unique() {
            self.last = Some((caller.clone(), slots));
        } else {
            self.remember_by_addr(caller, slots);
        }
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
        hot.insert(&ORDERS, &Topic::from(NAME), slots(7));
        assert_eq!(hot.get(&ORDERS), Some(slots(7)));
        assert_eq!(hot.by_addr.len(), 1, "a static name is kept by address");
        // The start of the same static string is another name, though it
        // begins at the same address.
        let start = Topic::from_static(&NAME[..6]);
        assert_eq!(start.addr(), ORDERS.addr());
        assert!(hot.get(&start).is_none());
    }

    #[test]
    fn a_shared_name_is_kept_by_address() {
        let mut hot = HotTopics::default();
        let orders = Topic::from("orders");
        // The caller keeps its name and sends clones of it.
        let sent = orders.clone();
        assert!(hot.get(&sent).is_none());
        hot.insert(&sent, &Topic::from("orders"), slots(3));
        assert!(hot.by_addr.contains_key(&orders.addr()));
        assert_eq!(hot.get(&orders.clone()), Some(slots(3)));
        // Its slots change once the topic's queues are made.
        let made = TopicSlots {
            queues: Some(TopicSlot::nth(9)),
            ..slots(3)
        };
        hot.insert(&sent, &Topic::from("orders"), made);
        assert_eq!(hot.get(&orders), Some(made));
        assert_eq!(hot.get(&Topic::from("orders")), Some(made), "by name too");
    }

    #[test]
    fn a_name_made_for_one_record_is_found_by_an_equal_name_and_not_kept() {
        let mut hot = HotTopics::default();
        hot.insert(&Topic::from("orders"), &Topic::from("orders"), slots(3));
        assert!(
            hot.by_addr.is_empty(),
            "a name nobody else holds is not kept by address"
        );
        // Each record's own name: found as the last name seen, and by the
        // table of names once another topic came between.
        assert_eq!(hot.get(&Topic::from("orders")), Some(slots(3)));
        hot.insert(&Topic::from("payments"), &Topic::from("payments"), slots(5));
        assert_eq!(hot.get(&Topic::from("orders")), Some(slots(3)));
        assert_eq!(hot.get(&Topic::from("payments")), Some(slots(5)));
        assert!(hot.get(&Topic::from("refunds")).is_none());
        assert!(hot.by_addr.is_empty());
    }

    #[test]
    fn a_lookup_fits_in_a_register() {
        // Returned by value on every record: through memory it cost a
        // stalled load (two stores read back as one).
        assert_eq!(std::mem::size_of::<Option<TopicSlots>>(), 8);
    }

    #[test]
    fn a_shared_name_found_by_an_equal_one_is_kept_by_address_from_then_on() {
        let mut hot = HotTopics::default();
        // The topic's first record named it with a name of its own.
        hot.insert(&Topic::from("orders"), &Topic::from("orders"), slots(3));
        let orders = Topic::from_static("orders");
        assert!(hot.knows(&orders));
        assert!(hot.by_addr.is_empty(), "knowing remembers nothing");
        assert_eq!(hot.get(&orders), Some(slots(3)));
        assert!(hot.by_addr.contains_key(&orders.addr()));
        assert!(
            hot.last
                .as_ref()
                .is_some_and(|(seen, _)| seen.same(&orders))
        );
    }

    #[test]
    fn many_topics_in_turn_are_all_kept_up_to_the_bound() {
        let mut hot = HotTopics::default();
        let names: Vec<Topic> = (0..MOST)
            .map(|i| Topic::from(format!("t{i}").as_str()))
            .collect();
        // The callers keep their names.
        let sent = names.clone();
        for (n, name) in (0..).zip(&sent) {
            hot.insert(name, &Topic::from(name.as_str()), slots(n));
        }
        assert_eq!(hot.by_addr.len(), MOST);
        for (n, name) in (0..).zip(&names) {
            assert_eq!(hot.get(name), Some(slots(n)), "{name}");
        }
        // One more starts over, bounded; the names are still found.
        let extra = Topic::from("extra");
        let kept = extra.clone();
        hot.insert(&extra, &kept, slots(0));
        assert!(hot.get(&extra).is_some());
        assert!(hot.by_addr.len() <= MOST);
        assert_eq!(hot.get(&names[7]), Some(slots(7)));
    }
}
