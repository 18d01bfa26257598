//! Delivery tracking: a [`MessageId`] per record and the bounded
//! [`DeliveryTracker`] that knows each record's [`DeliveryStatus`].
//!
//! See [`DeliveryTracker`] for its bounds.
//!
//! Time is passed in, so the type can be tested without a clock; a
//! [`Sink`](super::Sink) holds one behind a mutex.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};

/// Identifies one record sent through a sink: given by the caller, or
/// generated (a random per-process prefix and a counter, unique within the
/// process and unlikely to repeat across processes). Cloning one is cheap.
///
/// ```
/// use smartkafka::sink::MessageId;
/// let a = MessageId::generate();
/// let b = MessageId::generate();
/// assert_ne!(a, b);
/// assert_eq!(MessageId::from("order-17").to_string(), "order-17");
/// assert_eq!(a.to_string().len(), 29); // 12 hex digits, '-', 16 hex digits
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Generated(u64),
    Given(Arc<str>),
}

fn process_prefix() -> u64 {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        // std's hasher keys are random per process: 48 random bits without
        // a random-number dependency.
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
            & 0xffff_ffff_ffff
    })
}

impl MessageId {
    /// A fresh id, unique within this process.
    pub fn generate() -> MessageId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        MessageId(Repr::Generated(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Generated(n) => write!(f, "{:012x}-{n:016x}", process_prefix()),
            Repr::Given(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl From<&str> for MessageId {
    fn from(id: &str) -> MessageId {
        MessageId(Repr::Given(Arc::from(id)))
    }
}

impl From<String> for MessageId {
    fn from(id: String) -> MessageId {
        MessageId(Repr::Given(Arc::from(id)))
    }
}

/// Where a tracked record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Sent, outcome not known yet (retries included).
    Pending,
    /// Written to the log.
    Delivered {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// Failed for good (after any retries).
    Failed {
        /// The last error, as text.
        reason: String,
        /// Its kind.
        kind: ErrorKind,
        /// Whether the record may be in the log nevertheless (see
        /// [`Error::possibly_persisted`]).
        possibly_persisted: bool,
        /// Whether it was written to the sink's dead-letter topic.
        dead_lettered: bool,
    },
}

impl DeliveryStatus {
    /// Whether the outcome is known.
    pub fn is_finished(&self) -> bool {
        !matches!(self, DeliveryStatus::Pending)
    }
}

#[derive(Debug)]
struct Entry {
    status: DeliveryStatus,
    /// Tells a live finished-queue item from a stale one (the id was
    /// reused after it finished).
    serial: u64,
}

/// The status of recent records by [`MessageId`].
///
/// The tracker keeps at most `capacity` entries. Finished entries (delivered
/// or failed) stay until they are older than `expiry`, or until room is
/// needed for a new record, when the oldest finished one is evicted (and
/// counted in [`DeliveryTracker::evicted`]). A pending entry is never
/// evicted: when every entry is pending, [`DeliveryTracker::insert`]
/// refuses the new record with [`ErrorKind::BufferExhausted`] and the sink
/// sends nothing (the caller may retry once deliveries come back).
///
///
/// ```
/// use std::time::{Duration, Instant};
/// use smartkafka::sink::{DeliveryStatus, DeliveryTracker, MessageId};
///
/// let mut tracker = DeliveryTracker::new(2, Duration::from_secs(60));
/// let now = Instant::now();
/// let (a, b, c) = (MessageId::from("a"), MessageId::from("b"), MessageId::from("c"));
/// tracker.insert(a.clone(), now)?;
/// tracker.insert(b.clone(), now)?;
/// // Full of pending records: the next one is refused, none is forgotten.
/// assert!(tracker.insert(c.clone(), now).is_err());
/// tracker.finish(&a, DeliveryStatus::Delivered { partition: 0, offset: 7 }, now);
/// tracker.insert(c.clone(), now)?; // evicts `a`, the oldest finished entry
/// assert_eq!(tracker.status(&a), None);
/// assert_eq!(tracker.status(&b), Some(DeliveryStatus::Pending));
/// assert_eq!(tracker.evicted(), 1);
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug)]
pub struct DeliveryTracker {
    capacity: usize,
    expiry: Duration,
    entries: HashMap<MessageId, Entry>,
    /// Finished entries in the order they finished (so by time).
    finished: VecDeque<(MessageId, u64, Instant)>,
    pending: usize,
    serial: u64,
    evicted: u64,
    expired: u64,
}

impl DeliveryTracker {
    /// A tracker of at most `capacity` entries (at least 1) that forgets
    /// finished entries `expiry` after they finished.
    pub fn new(capacity: usize, expiry: Duration) -> DeliveryTracker {
        DeliveryTracker {
            capacity: capacity.max(1),
            expiry,
            entries: HashMap::new(),
            finished: VecDeque::new(),
            pending: 0,
            serial: 0,
            evicted: 0,
            expired: 0,
        }
    }

    /// Starts tracking `id` as pending. Fails with
    /// [`ErrorKind::BufferExhausted`] when every entry is pending, and with
    /// a configuration error naming `message_id` when `id` is still
    /// pending; a finished entry with the same id is replaced.
    pub fn insert(&mut self, id: MessageId, now: Instant) -> Result<(), Error> {
        self.expire(now);
        match self.entries.get(&id) {
            Some(entry) if !entry.status.is_finished() => {
                return Err(Error::config(
                    "message_id",
                    format_args!("`{id}` is in use by a record still pending"),
                ));
            }
            Some(_) => {}
            None => {
                if self.entries.len() >= self.capacity && !self.evict_one() {
                    return Err(Error::new(
                        ErrorKind::BufferExhausted,
                        format!(
                            "the delivery tracker is full: all {} records it holds are pending",
                            self.pending
                        ),
                    ));
                }
            }
        }
        self.serial += 1;
        self.entries.insert(
            id,
            Entry {
                status: DeliveryStatus::Pending,
                serial: self.serial,
            },
        );
        self.pending += 1;
        Ok(())
    }

    /// Records the outcome of pending `id`; does nothing for an id that is
    /// not pending.
    pub fn finish(&mut self, id: &MessageId, status: DeliveryStatus, now: Instant) {
        if !status.is_finished() {
            return;
        }
        if let Some(entry) = self.entries.get_mut(id)
            && !entry.status.is_finished()
        {
            entry.status = status;
            self.pending -= 1;
            self.finished.push_back((id.clone(), entry.serial, now));
        }
        self.expire(now);
        // Items of reused ids are stale; keep the queue within bounds.
        if self.finished.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.finished.retain(|(id, serial, _)| {
                entries
                    .get(id)
                    .is_some_and(|e| e.serial == *serial && e.status.is_finished())
            });
        }
    }

    /// Stops tracking pending `id` (its send was refused after it was
    /// inserted, so the caller never got the id).
    pub fn forget(&mut self, id: &MessageId) {
        if let Some(entry) = self.entries.get(id)
            && !entry.status.is_finished()
        {
            self.entries.remove(id);
            self.pending -= 1;
        }
    }

    /// The status of `id`, if it is tracked.
    pub fn status(&self, id: &MessageId) -> Option<DeliveryStatus> {
        self.entries.get(id).map(|e| e.status.clone())
    }

    /// Entries held (pending and finished).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pending entries.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Finished entries dropped to make room before they expired.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Finished entries dropped because they expired.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Drops the oldest live finished entry; false when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((id, serial, _)) = self.finished.pop_front() {
            if self.remove_finished(&id, serial) {
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, _, at)) = self.finished.front() {
            if now.saturating_duration_since(*at) < self.expiry {
                break;
            }
            if let Some((id, serial, _)) = self.finished.pop_front()
                && self.remove_finished(&id, serial)
            {
                self.expired += 1;
            }
        }
    }

    /// Removes `id` if it is the finished entry of `serial`.
    fn remove_finished(&mut self, id: &MessageId, serial: u64) -> bool {
        match self.entries.get(id) {
            Some(e) if e.serial == serial && e.status.is_finished() => {
                self.entries.remove(id);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(offset: i64) -> DeliveryStatus {
        DeliveryStatus::Delivered {
            partition: 0,
            offset,
        }
    }

    #[test]
    fn generated_ids_are_unique_and_share_the_prefix() {
        let ids: Vec<String> = (0..1000)
            .map(|_| MessageId::generate().to_string())
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|i| i[..12] == ids[0][..12]));
    }

    #[test]
    fn full_of_pending_refuses_and_forgets_nothing() {
        let now = crate::clock::now();
        let mut t = DeliveryTracker::new(3, Duration::from_secs(60));
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::generate()).collect();
        for id in &ids {
            t.insert(id.clone(), now).unwrap();
        }
        let err = t.insert(MessageId::generate(), now).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::BufferExhausted);
        assert!(err.is_retriable());
        assert_eq!((t.len(), t.pending(), t.evicted()), (3, 3, 0));
        for id in &ids {
            assert_eq!(t.status(id), Some(DeliveryStatus::Pending));
        }
        t.finish(&ids[1], delivered(1), now);
        let extra = MessageId::generate();
        t.insert(extra.clone(), now).unwrap();
        assert_eq!(t.status(&ids[1]), None);
        assert_eq!(t.evicted(), 1);
        assert_eq!(t.pending(), 3);
    }

    #[test]
    fn finished_entries_expire_and_pending_ones_stay() {
        let now = crate::clock::now();
        let mut t = DeliveryTracker::new(10, Duration::from_secs(5));
        let (a, b) = (MessageId::from("a"), MessageId::from("b"));
        t.insert(a.clone(), now).unwrap();
        t.insert(b.clone(), now).unwrap();
        t.finish(&a, delivered(3), now);
        assert_eq!(t.status(&a), Some(delivered(3)));
        let later = now + Duration::from_secs(6);
        t.insert(MessageId::from("c"), later).unwrap();
        assert_eq!(t.status(&a), None);
        assert_eq!(t.status(&b), Some(DeliveryStatus::Pending));
        assert_eq!((t.expired(), t.evicted()), (1, 0));
    }

    #[test]
    fn reused_ids_follow_the_latest_record() {
        let now = crate::clock::now();
        let mut t = DeliveryTracker::new(2, Duration::from_secs(5));
        let a = MessageId::from("a");
        t.insert(a.clone(), now).unwrap();
        let err = t.insert(a.clone(), now).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "message_id"
            }
        );
        t.finish(&a, delivered(1), now);
        t.insert(a.clone(), now + Duration::from_secs(1)).unwrap();
        assert_eq!(t.status(&a), Some(DeliveryStatus::Pending));
        // The stale queue item of the first `a` expires without touching it.
        t.finish(
            &MessageId::from("none"),
            delivered(0),
            now + Duration::from_secs(5),
        );
        assert_eq!(t.status(&a), Some(DeliveryStatus::Pending));
        assert_eq!(t.expired(), 0);
        t.finish(&a, delivered(2), now + Duration::from_secs(6));
        assert_eq!(t.status(&a), Some(delivered(2)));
        // A second finish is ignored.
        t.finish(&a, delivered(9), now + Duration::from_secs(6));
        assert_eq!(t.status(&a), Some(delivered(2)));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn forget_drops_only_pending_entries() {
        let now = crate::clock::now();
        let mut t = DeliveryTracker::new(4, Duration::from_secs(5));
        let (a, b) = (MessageId::from("a"), MessageId::from("b"));
        t.insert(a.clone(), now).unwrap();
        t.insert(b.clone(), now).unwrap();
        t.finish(&b, delivered(0), now);
        t.forget(&a);
        t.forget(&b);
        assert_eq!(t.status(&a), None);
        assert_eq!(t.status(&b), Some(delivered(0)));
        assert_eq!(t.pending(), 0);
    }
}
