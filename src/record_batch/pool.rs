//! [`BufferPool`]: batch buffers handed back once their batch is
//! acknowledged, for the next batches to be encoded into.
//!
//! An uncompressed batch leaves its builder as the very buffer it was
//! encoded into, so without a pool every batch starts in freshly allocated
//! memory, which the allocator often has to fault in from the kernel page
//! by page. Worse, a producer's task may run on any thread of a
//! multi-thread runtime, and the system allocator keeps memory per thread:
//! buffers freed while the task ran on one thread are not where the next
//! batches are allocated once it runs on another, so a full buffer of
//! batches could cost its size more than once in resident memory. The pool
//! keeps acknowledged buffers and gives them to builders instead: full-size
//! ones up to a count, and small ones of 512 bytes to 4 KiB (a producer
//! over thousands of partitions seals batches of a record or two) in
//! power-of-two size classes up to a total of bytes. New memory is asked for only while the
//! pool has no buffer of the size wanted, so the pool and the batches in
//! use together hold little more than the most batches ever held at once.
//!
//! What a burst left behind is given back with time: every [`TRIM_EVERY`],
//! the buffers that stayed unused since the last trim (the fewest each
//! class held meanwhile) are dropped, so an idle producer lets go of its
//! spare buffers within two intervals.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// How often buffers that were not needed are given back to the allocator.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// The smallest buffer kept: the least room a builder asks for.
pub const SMALLEST: usize = 512;

/// Buffers below the batch size are kept only up to this size: what is
/// smaller comes and goes by the hundred when batches hold a record or
/// two; the few larger ones of moderately filled batches would only add
/// to the resident memory.
const LARGEST_SMALL: usize = 4 * 1024;

/// Buffers of one size class: each has room for at least the class's
/// size.
#[derive(Debug, Default)]
struct Class {
    free: Vec<BytesMut>,
    /// The fewest buffers held since the last trim: that many were not
    /// needed in the interval.
    low_water: usize,
}

impl Class {
    fn take(&mut self) -> Option<BytesMut> {
        let buf = self.free.pop()?;
        self.low_water = self.low_water.min(self.free.len());
        Some(buf)
    }

    /// Drops the buffers unused since the last trim (the oldest first);
    /// returns their capacity in bytes.
    fn trim(&mut self) -> usize {
        let unused = self.low_water.min(self.free.len());
        let dropped = self.free.drain(..unused).map(|b| b.capacity()).sum();
        self.low_water = self.free.len();
        dropped
    }
}

/// A bounded store of empty buffers: full-size ones (at least the batch
/// size) up to a count, and small ones (512 bytes to 4 KiB) in size
/// classes up to a total.
///
/// Without the small classes, over thousands of partitions each small
/// buffer was freed when its batch was acknowledged and a new one
/// allocated for the next batch, hundreds at a time after each answer,
/// which the system allocator serves from its slow paths.
#[derive(Debug, Default)]
pub struct BufferPool {
    full: Class,
    max_buffers: usize,
    min_capacity: usize,
    /// `small[k]` holds buffers with room for `SMALLEST << k` bytes or
    /// more, and less than twice that.
    small: Vec<Class>,
    small_bytes: usize,
    small_count: usize,
    max_small_bytes: usize,
    /// When the pool was last trimmed (first: when it was first asked to).
    trimmed_at: Option<Instant>,
}

impl BufferPool {
    /// A pool keeping up to `max_buffers` buffers with room for at least
    /// `min_capacity` bytes each, and as many small ones ([`SMALLEST`] to
    /// 4 KiB) up to `max_small_bytes` of capacity in all.
    pub fn new(max_buffers: usize, min_capacity: usize, max_small_bytes: usize) -> Self {
        BufferPool {
            max_buffers,
            min_capacity,
            max_small_bytes,
            ..BufferPool::default()
        }
    }

    /// The class of a buffer with room for `capacity` bytes (at least
    /// [`SMALLEST`]).
    fn class_of(capacity: usize) -> usize {
        (capacity / SMALLEST).ilog2() as usize
    }

    /// Takes back the bytes of a finished batch: kept when nothing else
    /// refers to them, they are large enough and the pool has room;
    /// dropped otherwise.
    pub fn give(&mut self, bytes: Bytes) {
        let Ok(mut buf) = bytes.try_into_mut() else {
            return;
        };
        let capacity = buf.capacity();
        buf.clear();
        if capacity >= self.min_capacity {
            if self.full.free.len() < self.max_buffers {
                self.full.free.push(buf);
            }
        } else if (SMALLEST..=LARGEST_SMALL).contains(&capacity)
            && self.small_bytes + capacity <= self.max_small_bytes
            && self.small_count < self.max_buffers
        {
            let k = Self::class_of(capacity);
            if self.small.len() <= k {
                self.small.resize_with(k + 1, Class::default);
            }
            self.small[k].free.push(buf);
            self.small_bytes += capacity;
            self.small_count += 1;
        }
    }

    /// An empty buffer with room for at least `capacity` bytes, if the pool
    /// holds one: from the class that fits, else a full-size one.
    pub fn take(&mut self, capacity: usize) -> Option<BytesMut> {
        if capacity <= LARGEST_SMALL && capacity < self.min_capacity {
            // The top of the request's own class if it has room enough,
            // else the top of the class above, which always has.
            let k = Self::class_of(capacity.max(SMALLEST));
            let fits = |class: &Class| class.free.last().is_some_and(|b| b.capacity() >= capacity);
            let class = match self.small.get(k) {
                Some(own) if fits(own) => Some(k),
                _ => self.small.get(k + 1).filter(|c| fits(c)).map(|_| k + 1),
            };
            if let Some(buf) = class.and_then(|k| self.small[k].take()) {
                self.small_bytes -= buf.capacity();
                self.small_count -= 1;
                return Some(buf);
            }
        }
        let at = self
            .full
            .free
            .iter()
            .rposition(|b| b.capacity() >= capacity)?;
        let buf = self.full.free.swap_remove(at);
        self.full.low_water = self.full.low_water.min(self.full.free.len());
        Some(buf)
    }

    /// Drops the buffers that stayed unused since the last trim, once
    /// [`TRIM_EVERY`] has passed since it (the first call only starts the
    /// clock). The oldest buffers go first.
    pub fn trim(&mut self, now: Instant) {
        let Some(at) = self.trimmed_at else {
            self.trimmed_at = Some(now);
            for class in std::iter::once(&mut self.full).chain(&mut self.small) {
                class.low_water = class.free.len();
            }
            return;
        };
        if now.saturating_duration_since(at) < TRIM_EVERY {
            return;
        }
        self.trimmed_at = Some(now);
        self.full.trim();
        for class in &mut self.small {
            self.small_bytes -= class.trim();
        }
        self.small_count = self.small.iter().map(|c| c.free.len()).sum();
    }

    /// When [`trim`](Self::trim) would next drop something, if the pool
    /// holds buffers: time alone then has work to do.
    pub fn next_trim(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        Some(self.trimmed_at? + TRIM_EVERY)
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.full.free.len() + self.small_count
    }

    /// Whether the pool holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of capacity held.
    pub fn capacity_bytes(&self) -> usize {
        self.full.free.iter().map(BytesMut::capacity).sum::<usize>() + self.small_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn batch(capacity: usize) -> Bytes {
        let mut b = BytesMut::with_capacity(capacity);
        b.put_bytes(7, 100);
        b.freeze()
    }

    #[test]
    fn keeps_unique_large_buffers_up_to_the_count() {
        let mut pool = BufferPool::new(2, 1000, 0);
        pool.give(batch(4096));
        pool.give(batch(4096));
        pool.give(batch(4096));
        assert_eq!(pool.len(), 2);
        assert!(pool.capacity_bytes() >= 8192);
        let b = pool.take(4096).unwrap();
        assert!(b.is_empty());
        assert!(b.capacity() >= 4096);
    }

    #[test]
    fn drops_shared_and_small_buffers() {
        let mut pool = BufferPool::new(4, 1000, 0);
        let shared = batch(4096);
        let _clone = shared.clone();
        pool.give(shared);
        pool.give(batch(200));
        pool.give(Bytes::from_static(b"static"));
        assert!(pool.is_empty());
        assert!(pool.take(1).is_none());
    }

    #[test]
    fn take_wants_enough_room() {
        let mut pool = BufferPool::new(4, 1000, 0);
        pool.give(batch(2000));
        assert!(pool.take(1_000_000).is_none());
        assert!(pool.take(1500).is_some());
    }

    #[test]
    fn trim_drops_what_a_whole_interval_left_unused() {
        let start = crate::clock::now();
        let mut pool = BufferPool::new(8, 1000, 0);
        pool.trim(start);
        for _ in 0..4 {
            pool.give(batch(4096));
        }
        assert_eq!(pool.next_trim(), Some(start + TRIM_EVERY));
        // Buffers given after the clock started were not yet unused for a
        // whole interval: the low-water mark starts at the count held then.
        pool.trim(start + TRIM_EVERY);
        assert_eq!(pool.len(), 4);
        // In the next interval one buffer is taken and given back: three
        // were never needed.
        let taken = pool.take(4096).unwrap();
        pool.give(taken.freeze());
        pool.trim(start + TRIM_EVERY + TRIM_EVERY / 2);
        assert_eq!(pool.len(), 4, "not before a whole interval");
        pool.trim(start + 2 * TRIM_EVERY);
        assert_eq!(pool.len(), 1);
        // An idle interval gives back the rest; an empty pool asks for no
        // more trims.
        pool.trim(start + 3 * TRIM_EVERY);
        assert!(pool.is_empty());
        assert_eq!(pool.next_trim(), None);
    }

    #[test]
    fn a_given_buffer_comes_back_empty_once() {
        let mut pool = BufferPool::new(4, 1024, 0);
        let mut buf = BytesMut::with_capacity(2048);
        buf.put_slice(b"an acknowledged batch");
        pool.give(buf.freeze());
        let again = pool.take(1024).unwrap();
        assert!(again.is_empty() && again.capacity() >= 1024);
        assert!(pool.take(1024).is_none());
    }

    #[test]
    fn small_buffers_come_back_by_size_class_up_to_the_total() {
        let mut pool = BufferPool::new(4, 65_536, 4_096);
        // Too small to keep, then two of 512 and one of 2,048: 3,072 bytes.
        pool.give(batch(100));
        pool.give(batch(512));
        pool.give(batch(512));
        pool.give(batch(2_048));
        assert_eq!((pool.len(), pool.capacity_bytes()), (3, 3_072));
        // 2,048 more would pass the total: dropped.
        pool.give(batch(2_048));
        assert_eq!(pool.len(), 3);
        // Neither small nor full-size: dropped.
        let mut roomy = BufferPool::new(4, 65_536, 1 << 20);
        roomy.give(batch(8_192));
        assert!(roomy.is_empty());
        // A request takes from its own class, or the one above.
        assert_eq!(pool.take(1_024).map(|b| b.capacity()), Some(2_048));
        assert!(pool.take(1_024).is_none(), "512s have too little room");
        assert_eq!(pool.take(300).map(|b| b.capacity()), Some(512));
        assert_eq!(pool.capacity_bytes(), 512);
        // Within a class, only a buffer with room enough.
        pool.give(batch(1_500));
        assert!(pool.take(1_600).is_none());
        assert_eq!(pool.take(1_400).map(|b| b.capacity()), Some(1_500));
        // A full-size buffer serves a small request when no class can.
        pool.give(batch(65_536));
        assert_eq!(pool.take(2_000).map(|b| b.capacity()), Some(65_536));
    }

    #[test]
    fn trim_drops_unused_small_buffers_too() {
        let start = crate::clock::now();
        let mut pool = BufferPool::new(4, 65_536, 1 << 20);
        pool.trim(start);
        for _ in 0..3 {
            pool.give(batch(1_024));
        }
        pool.trim(start + TRIM_EVERY);
        assert_eq!(pool.len(), 3, "given during the first interval");
        let taken = pool.take(1_000).unwrap();
        pool.give(taken.freeze());
        pool.trim(start + 2 * TRIM_EVERY);
        assert_eq!((pool.len(), pool.capacity_bytes()), (1, 1_024));
        pool.trim(start + 3 * TRIM_EVERY);
        assert!(pool.is_empty());
        assert_eq!(pool.capacity_bytes(), 0);
    }
}
