//! The topics whose metadata the producer's engine has, as a waiting
//! `send` asks about them: a record for one of them is handed over at once,
//! one for any other waits for its topic's metadata.
//!
//! The names live in a shared set that the driver replaces after each
//! metadata answer (the engine's metadata cache owns the knowledge; this is
//! its copy for the sending side). A `send` asks for every record, so each
//! thread also remembers the last topic it found in the set, with the set's
//! generation then: while the generation holds, a run of sends to that
//! topic reads one counter and takes no lock. A read lock costs two atomic
//! read-modify-writes, and on the sending thread each one waits for the
//! record handed over before it to leave the processor's store buffer: at
//! 100-byte records that was a tenth of a waiting send's CPU.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::record::Topic;

/// Numbers producers apart in what a thread remembers (a dropped
/// producer's address may be reused; its number is not).
static NEXT_PRODUCER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The last topic this thread found known, and where and when.
    static LAST_FOUND: RefCell<Option<Found>> = const { RefCell::new(None) };
}

/// A topic found in one producer's set at one generation of it.
struct Found {
    producer: u64,
    generation: u64,
    topic: Topic,
}

/// The known topics of one producer (see the module doc).
#[derive(Debug)]
pub(crate) struct KnownTopics {
    names: RwLock<BTreeSet<String>>,
    /// Raised after every change of `names`: what a thread remembers from
    /// an earlier generation is asked again.
    generation: AtomicU64,
    /// This producer's number (see [`NEXT_PRODUCER`]).
    producer: u64,
}

impl KnownTopics {
    /// An empty set: no topic is known until the first metadata answer.
    pub(crate) fn new() -> KnownTopics {
        KnownTopics {
            names: RwLock::new(BTreeSet::new()),
            generation: AtomicU64::new(0),
            producer: NEXT_PRODUCER.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether the engine had `topic`'s metadata as of its last answer.
    pub(crate) fn contains(&self, topic: &Topic) -> bool {
        // Read before the set: a topic found is remembered with a
        // generation no later than the set it was found in.
        let generation = self.generation.load(Ordering::Acquire);
        // A thread whose locals are gone (a send from another local's
        // destructor) asks the set every time.
        let remembered = LAST_FOUND.try_with(|found| {
            found.borrow().as_ref().is_some_and(|found| {
                found.producer == self.producer
                    && found.generation == generation
                    && found.topic == *topic
            })
        });
        if matches!(remembered, Ok(true)) {
            return true;
        }
        let known = self
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(topic.as_str());
        if known {
            let _ = LAST_FOUND.try_with(|found| {
                *found.borrow_mut() = Some(Found {
                    producer: self.producer,
                    generation,
                    topic: topic.clone(),
                });
            });
        }
        known
    }

    /// Makes `names` the known topics (the engine's, after a metadata
    /// answer). Nothing changes, and nothing is asked again, when they are
    /// the same.
    pub(crate) fn replace(&self, names: BTreeSet<String>) {
        let mut known = self.names.write().unwrap_or_else(PoisonError::into_inner);
        if *known != names {
            *known = names;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KnownTopics;
    use crate::record::Topic;
    use std::collections::BTreeSet;

    fn names(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_topic_is_known_from_the_answer_that_names_it_until_one_that_does_not() {
        let known = KnownTopics::new();
        let orders = Topic::from("orders");
        assert!(!known.contains(&orders));
        known.replace(names(&["orders", "payments"]));
        assert!(known.contains(&orders));
        // Found again from what this thread remembers, and by name for
        // another handle on the same name.
        assert!(known.contains(&orders));
        assert!(known.contains(&Topic::from("orders")));
        assert!(!known.contains(&Topic::from("refunds")));
        known.replace(names(&["payments"]));
        assert!(!known.contains(&orders));
        assert!(known.contains(&Topic::from_static("payments")));
    }

    #[test]
    fn what_a_thread_remembers_of_one_producer_says_nothing_of_another() {
        let first = KnownTopics::new();
        let second = KnownTopics::new();
        let orders = Topic::from("orders");
        first.replace(names(&["orders"]));
        assert!(first.contains(&orders));
        assert!(!second.contains(&orders));
        second.replace(names(&["orders"]));
        assert!(second.contains(&orders));
        first.replace(names(&[]));
        assert!(!first.contains(&orders));
        assert!(second.contains(&orders));
    }

    #[test]
    fn an_unchanged_answer_keeps_the_generation() {
        let known = KnownTopics::new();
        known.replace(names(&["orders"]));
        let generation = known.generation.load(std::sync::atomic::Ordering::Relaxed);
        known.replace(names(&["orders"]));
        assert_eq!(
            known.generation.load(std::sync::atomic::Ordering::Relaxed),
            generation
        );
    }

    #[test]
    fn each_thread_asks_for_itself() {
        let known = std::sync::Arc::new(KnownTopics::new());
        known.replace(names(&["orders"]));
        assert!(known.contains(&Topic::from("orders")));
        let other = std::sync::Arc::clone(&known);
        let seen = std::thread::spawn(move || {
            let before = other.contains(&Topic::from("orders"));
            other.replace(names(&["payments"]));
            before
        })
        .join()
        .unwrap();
        assert!(seen);
        // This thread remembered "orders" at the old generation.
        assert!(!known.contains(&Topic::from("orders")));
    }
}
