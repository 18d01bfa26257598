//! The batches a partition has in flight, as their creation `order`s with a
//! count each (the halves of a split batch share their order), oldest
//! first. The partition's queue asks it how many are in flight and which
//! is the oldest, to decide whether another batch may go.
//!
//! A handful at most (the in-flight limit), and over thousands of
//! partitions usually one: that one is kept inline, so sending and
//! settling a batch touch no list of their own (a heap block per
//! partition, read out of the cache at each). A partition that had several
//! in flight keeps the list's room, so sending and settling allocate
//! nothing after that either.

/// Orders of the batches in flight, sorted, with a count per order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InFlightOrders {
    /// A single order, with its count.
    One(u64, u32),
    /// Any number, sorted by order; empty without room is the empty set.
    Many(Vec<(u64, u32)>),
}

impl Default for InFlightOrders {
    fn default() -> Self {
        InFlightOrders::Many(Vec::new())
    }
}

/// Room of the list when a second order joins the first.
const FIRST_ROOM: usize = 4;

impl InFlightOrders {
    /// Whether no batch is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, InFlightOrders::Many(list) if list.is_empty())
    }

    /// Batches in flight (a split batch's halves count as two).
    pub(crate) fn count(&self) -> usize {
        match self {
            InFlightOrders::One(_, n) => *n as usize,
            InFlightOrders::Many(list) => list.iter().map(|(_, n)| *n as usize).sum(),
        }
    }

    /// The oldest order in flight.
    pub(crate) fn oldest(&self) -> Option<u64> {
        match self {
            InFlightOrders::One(order, _) => Some(*order),
            InFlightOrders::Many(list) => list.first().map(|(order, _)| *order),
        }
    }

    /// A batch sealed as `order` went out.
    pub(crate) fn sent(&mut self, order: u64) {
        match self {
            InFlightOrders::Many(list) if list.capacity() == 0 => {
                *self = InFlightOrders::One(order, 1);
            }
            InFlightOrders::One(only, n) if *only == order => *n += 1,
            InFlightOrders::One(only, n) => {
                let mut list = Vec::with_capacity(FIRST_ROOM);
                list.push((*only, *n));
                let at = usize::from(order > *only);
                list.insert(at, (order, 1));
                *self = InFlightOrders::Many(list);
            }
            InFlightOrders::Many(list) => match list.binary_search_by_key(&order, |(o, _)| *o) {
                Ok(at) => list[at].1 += 1,
                Err(at) => list.insert(at, (order, 1)),
            },
        }
    }

    /// A batch sealed as `order` is no longer in flight (nothing if no
    /// batch of that order is).
    pub(crate) fn settled(&mut self, order: u64) {
        match self {
            InFlightOrders::One(only, n) if *only == order => {
                *n -= 1;
                if *n == 0 {
                    *self = InFlightOrders::default();
                }
            }
            InFlightOrders::One(..) => {}
            InFlightOrders::Many(list) => {
                if let Ok(at) = list.binary_search_by_key(&order, |(o, _)| *o) {
                    list[at].1 -= 1;
                    if list[at].1 == 0 {
                        list.remove(at);
                    }
                }
            }
        }
    }

    /// The orders with their counts, oldest first (tests).
    #[cfg(test)]
    fn listed(&self) -> Vec<(u64, u32)> {
        match self {
            InFlightOrders::One(order, n) => vec![(*order, *n)],
            InFlightOrders::Many(list) => list.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::InFlightOrders;

    /// Orders stay sorted with a count each, whatever order batches go out
    /// and settle in: a retry goes out after newer batches, the halves of
    /// a split batch share their order, and settling an order not in
    /// flight changes nothing.
    #[test]
    fn orders_count_and_keep_the_oldest_first() {
        let mut orders = InFlightOrders::default();
        assert!(orders.is_empty());
        orders.sent(5);
        assert_eq!(orders, InFlightOrders::One(5, 1), "the first is inline");
        for order in [7, 5, 6, 3] {
            orders.sent(order);
        }
        assert_eq!(orders.count(), 5);
        assert_eq!(orders.listed(), [(3, 1), (5, 2), (6, 1), (7, 1)]);
        orders.settled(3);
        orders.settled(5);
        assert_eq!(orders.oldest(), Some(5));
        orders.settled(99);
        orders.settled(7);
        orders.settled(5);
        assert_eq!(orders.listed(), [(6, 1)]);
        assert_eq!(orders.count(), 1);
        orders.settled(6);
        assert!(orders.is_empty());
        assert!(
            matches!(&orders, InFlightOrders::Many(list) if list.capacity() >= 4),
            "a list grown once keeps its room"
        );
        // Inline, a split batch's halves and an order not in flight.
        let mut one = InFlightOrders::default();
        one.sent(9);
        one.sent(9);
        one.settled(8);
        assert_eq!((one.count(), one.oldest()), (2, Some(9)));
        one.settled(9);
        one.settled(9);
        assert!(one.is_empty() && one.oldest().is_none());
        // A second order older than the inline one goes first.
        one.sent(4);
        one.sent(2);
        assert_eq!(one.listed(), [(2, 1), (4, 1)]);
    }

    proptest! {
        /// Against a map of counts: the same orders, counts and oldest,
        /// after any mix of sends and settles.
        #[test]
        fn agrees_with_a_map_of_counts(
            ops in proptest::collection::vec((any::<bool>(), 0u64..8), 0..60)
        ) {
            let mut orders = InFlightOrders::default();
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            for (send, order) in ops {
                if send {
                    orders.sent(order);
                    *model.entry(order).or_default() += 1;
                } else {
                    orders.settled(order);
                    if let Some(n) = model.get_mut(&order) {
                        *n -= 1;
                        if *n == 0 {
                            model.remove(&order);
                        }
                    }
                }
                let listed: Vec<(u64, u32)> = model.iter().map(|(o, n)| (*o, *n)).collect();
                prop_assert_eq!(orders.listed(), listed);
                prop_assert_eq!(orders.count(), model.values().map(|n| *n as usize).sum::<usize>());
                prop_assert_eq!(orders.oldest(), model.keys().next().copied());
                prop_assert_eq!(orders.is_empty(), model.is_empty());
            }
        }
    }
}
