//! A table of topics, in name order, whose entries can also be found by a
//! fixed place: a caller that remembered where a topic is skips the search
//! by name.
//!
//! The engine's queues and the metadata cache each keep one entry per
//! topic. A record finds both for its topic; by name that is a search that
//! compares strings at each step, which over a hundred topics costs more
//! than the rest of taking the record. Each entry keeps the
//! [`TopicSlot`] it was given when it was added: slots are never reused
//! (topics are not removed), so a slot found once stays good. Iteration is
//! in name order, as a map keyed by name gives.

use std::borrow::Borrow;
use std::num::NonZeroU32;

use crate::record::Topic;

/// Where an entry of a [`TopicTable`] is, for as long as the table lives.
///
/// Kept as the index plus one, never zero: an `Option` of it, and of a pair
/// of them, then fits in a register (returned by value rather than through
/// memory, which on the per-record path cost a stalled load each time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TopicSlot(NonZeroU32);

impl TopicSlot {
    /// The slot of index `i`.
    fn at_index(i: usize) -> TopicSlot {
        let n = u32::try_from(i + 1).expect("fewer than 2^32 topics");
        TopicSlot(NonZeroU32::new(n).expect("an index plus one is never zero"))
    }

    /// The slot's index.
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }

    /// Slot `n`, for tests of what keeps slots.
    #[cfg(test)]
    pub(crate) fn nth(n: u32) -> TopicSlot {
        TopicSlot::at_index(n as usize)
    }
}

#[derive(Debug)]
struct Entry<V> {
    name: Topic,
    slot: TopicSlot,
    value: V,
}

/// Topics and a value for each, in name order, found by name or by slot.
#[derive(Debug)]
pub(crate) struct TopicTable<V> {
    /// Sorted by name.
    entries: Vec<Entry<V>>,
    /// For each slot, its entry's index in `entries`.
    index: Vec<u32>,
}

impl<V> Default for TopicTable<V> {
    fn default() -> Self {
        TopicTable {
            entries: Vec::new(),
            index: Vec::new(),
        }
    }
}

impl<V> TopicTable<V> {
    fn search<Q>(&self, name: &Q) -> Result<usize, usize>
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|e| e.name.borrow().cmp(name))
    }

    /// The value for `name`.
    pub(crate) fn get<Q>(&self, name: &Q) -> Option<&V>
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.search(name).ok()?;
        Some(&self.entries[i].value)
    }

    /// The value for `name`, to change.
    pub(crate) fn get_mut<Q>(&mut self, name: &Q) -> Option<&mut V>
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.search(name).ok()?;
        Some(&mut self.entries[i].value)
    }

    /// The table's own name for `name`, its slot and its value.
    pub(crate) fn find<Q>(&self, name: &Q) -> Option<(&Topic, TopicSlot, &V)>
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.search(name).ok()?;
        let e = &self.entries[i];
        Some((&e.name, e.slot, &e.value))
    }

    /// The entry in `slot`: its name and value.
    pub(crate) fn at(&self, slot: TopicSlot) -> Option<(&Topic, &V)> {
        let i = *self.index.get(slot.index())? as usize;
        self.entries.get(i).map(|e| (&e.name, &e.value))
    }

    /// The value in `slot`, to change.
    pub(crate) fn at_mut(&mut self, slot: TopicSlot) -> Option<&mut V> {
        let i = *self.index.get(slot.index())? as usize;
        self.entries.get_mut(i).map(|e| &mut e.value)
    }

    /// The slot of `name`, added with the value `make` gives when the table
    /// does not hold it yet (a name held keeps its value).
    pub(crate) fn slot_or_insert_with(
        &mut self,
        name: &Topic,
        make: impl FnOnce() -> V,
    ) -> TopicSlot {
        match self.search(name.as_str()) {
            Ok(i) => self.entries[i].slot,
            Err(i) => {
                // The entries after it move up one; so do their slots.
                for at in &mut self.index {
                    if *at as usize >= i {
                        *at += 1;
                    }
                }
                let slot = TopicSlot::at_index(self.index.len());
                let entry = Entry {
                    name: name.clone(),
                    slot,
                    value: make(),
                };
                self.entries.insert(i, entry);
                self.index.push(i as u32);
                slot
            }
        }
    }

    /// Adds each of `names` the table does not hold yet, with the value
    /// `make` gives, in one pass: a sort of what is added, not a shift of
    /// the entries per name (an answer may name many topics at once). New
    /// names take the next slots in name order; a name given twice is
    /// added once.
    pub(crate) fn add_missing<'n>(
        &mut self,
        names: impl IntoIterator<Item = &'n str>,
        mut make: impl FnMut() -> V,
    ) {
        let held = self.entries.len();
        for name in names {
            if self.entries[..held]
                .binary_search_by(|e| e.name.as_str().cmp(name))
                .is_err()
            {
                self.entries.push(Entry {
                    name: Topic::from(name),
                    slot: TopicSlot::at_index(0),
                    value: make(),
                });
            }
        }
        if self.entries.len() == held {
            return;
        }
        let mut added = self.entries.split_off(held);
        added.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        added.dedup_by(|a, b| a.name.as_str() == b.name.as_str());
        for (k, entry) in added.iter_mut().enumerate() {
            entry.slot = TopicSlot::at_index(self.index.len() + k);
        }
        self.entries.append(&mut added);
        self.entries
            .sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        self.index.resize(self.entries.len(), 0);
        for (i, entry) in self.entries.iter().enumerate() {
            self.index[entry.slot.index()] = i as u32;
        }
    }

    /// Names, slots and values, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Topic, TopicSlot, &V)> {
        self.entries.iter().map(|e| (&e.name, e.slot, &e.value))
    }

    /// Names, slots and values to change, in name order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Topic, TopicSlot, &mut V)> {
        self.entries
            .iter_mut()
            .map(|e| (&e.name, e.slot, &mut e.value))
    }

    /// Values, in name order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|e| &e.value)
    }

    /// Values to change, in name order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|e| &mut e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn slots_stay_good_as_names_are_added_before_them() {
        let mut table = TopicTable::default();
        let zebra = table.slot_or_insert_with(&Topic::from("zebra"), || 1);
        let apple = table.slot_or_insert_with(&Topic::from("apple"), || 2);
        let mango = table.slot_or_insert_with(&Topic::from("mango"), || 3);
        assert_eq!(
            table.at(zebra).map(|(n, v)| (n.as_str(), *v)),
            Some(("zebra", 1))
        );
        assert_eq!(
            table.at(apple).map(|(n, v)| (n.as_str(), *v)),
            Some(("apple", 2))
        );
        *table.at_mut(mango).unwrap() = 30;
        assert_eq!(table.get("mango"), Some(&30));
        let names: Vec<&str> = table.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["apple", "mango", "zebra"]);
        // Added again: the same slot, and the value it had.
        assert_eq!(
            table.slot_or_insert_with(&Topic::from("zebra"), || 10),
            zebra
        );
        assert_eq!(table.at(zebra).map(|(_, v)| *v), Some(1));
        let (name, slot, value) = table.find("apple").unwrap();
        assert_eq!((name.as_str(), slot, *value), ("apple", apple, 2));
        assert!(table.find("pear").is_none());
        assert!(table.at(TopicSlot::nth(3)).is_none());
    }

    #[test]
    fn an_answer_naming_many_topics_is_added_whole() {
        let mut table = TopicTable::default();
        let early = table.slot_or_insert_with(&Topic::from("t-25000"), || 0);
        let names: Vec<String> = (0..50_000).rev().map(|i| format!("t-{i}")).collect();
        table.add_missing(names.iter().map(String::as_str), || 1);
        let listed: Vec<&str> = table.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        assert_eq!(listed, sorted);
        // The name held keeps its slot and its value; every slot finds its
        // own name.
        assert_eq!(
            table.find("t-25000").map(|(_, s, v)| (s, *v)),
            Some((early, 0))
        );
        for (name, slot, _) in table.iter() {
            assert_eq!(table.at(slot).map(|(n, _)| n.as_str()), Some(name.as_str()));
        }
    }

    proptest! {
        /// Against a map by name: the same entries in the same order, and
        /// every slot handed out still finds its own name.
        #[test]
        fn behaves_as_a_map_by_name(ops in proptest::collection::vec((0u8..40, any::<u16>()), 1..200)) {
            let mut table = TopicTable::default();
            let mut model = BTreeMap::new();
            let mut slots = BTreeMap::new();
            for (n, value) in ops {
                let name = format!("topic-{n}");
                if value % 5 == 0 {
                    // Several at once, one of them twice, some held already.
                    let more = [format!("topic-{}", n / 2), name.clone(), name.clone()];
                    table.add_missing(more.iter().map(String::as_str), || value);
                    for added in &more {
                        model.entry(added.clone()).or_insert(value);
                        let found = table.find(added.as_str()).map(|(_, slot, _)| slot).unwrap();
                        if let Some(&before) = slots.get(added) {
                            prop_assert_eq!(before, found);
                        }
                        slots.insert(added.clone(), found);
                    }
                    continue;
                }
                let slot = table.slot_or_insert_with(&Topic::from(name.as_str()), || value);
                if let Some(&before) = slots.get(&name) {
                    prop_assert_eq!(before, slot);
                }
                slots.insert(name.clone(), slot);
                model.entry(name.clone()).or_insert(value);
                // A value changed through its slot is the one found by name.
                if value % 3 == 0 {
                    *table.at_mut(slot).unwrap() = value / 3;
                    model.insert(name, value / 3);
                }
            }
            let listed: Vec<(String, u16)> =
                table.iter().map(|(n, _, v)| (n.to_string(), *v)).collect();
            let expected: Vec<(String, u16)> = model.clone().into_iter().collect();
            prop_assert_eq!(listed, expected);
            for (name, slot, _) in table.iter() {
                prop_assert_eq!(slots[name.as_str()], slot);
            }
            for (name, slot) in &slots {
                let (found, value) = table.at(*slot).unwrap();
                prop_assert_eq!(found.as_str(), name.as_str());
                prop_assert_eq!(value, &model[name]);
                prop_assert_eq!(table.get(name.as_str()), Some(&model[name]));
                prop_assert_eq!(table.find(name.as_str()).map(|(_, s, _)| s), Some(*slot));
            }
        }
    }
}
