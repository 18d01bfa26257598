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
//! keeps acknowledged buffers (up to a count) and gives them to builders
//! instead: new memory is asked for only while the pool is empty, so the
//! pool and the batches in use together never hold more than the most
//! batches ever held at once.
//!
//! What a burst left behind is given back with time: every [`TRIM_EVERY`],
//! the buffers that stayed unused since the last trim (the fewest the pool
//! held meanwhile) are dropped, so an idle producer lets go of its spare
//! buffers within two intervals.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// How often buffers that were not needed are given back to the allocator.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// A bounded stack of empty buffers of at least a given capacity.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<BytesMut>,
    max_buffers: usize,
    min_capacity: usize,
    /// The fewest buffers held since the last trim: that many were not
    /// needed in the interval.
    low_water: usize,
    /// When the pool was last trimmed (first: when it was first asked to).
    trimmed_at: Option<Instant>,
}

impl BufferPool {
    /// A pool keeping up to `max_buffers` buffers, each with room for at
    /// least `min_capacity` bytes (smaller ones are not kept).
    pub fn new(max_buffers: usize, min_capacity: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            max_buffers,
            min_capacity,
            low_water: 0,
            trimmed_at: None,
        }
    }

    /// Takes back the bytes of a finished batch: kept when nothing else
    /// refers to them, they are large enough and the pool is not full;
    /// dropped otherwise.
    pub fn give(&mut self, bytes: Bytes) {
        if self.free.len() >= self.max_buffers {
            return;
        }
        if let Ok(mut buf) = bytes.try_into_mut()
            && buf.capacity() >= self.min_capacity
        {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// An empty buffer with room for at least `capacity` bytes, if the pool
    /// holds one.
    pub fn take(&mut self, capacity: usize) -> Option<BytesMut> {
        let at = self.free.iter().rposition(|b| b.capacity() >= capacity)?;
        let buf = self.free.swap_remove(at);
        self.low_water = self.low_water.min(self.free.len());
        Some(buf)
    }

    /// Drops the buffers that stayed unused since the last trim, once
    /// [`TRIM_EVERY`] has passed since it (the first call only starts the
    /// clock). The oldest buffers go first.
    pub fn trim(&mut self, now: Instant) {
        let Some(at) = self.trimmed_at else {
            self.trimmed_at = Some(now);
            self.low_water = self.free.len();
            return;
        };
        if now.saturating_duration_since(at) < TRIM_EVERY {
            return;
        }
        let unused = self.low_water.min(self.free.len());
        self.free.drain(..unused);
        self.low_water = self.free.len();
        self.trimmed_at = Some(now);
    }

    /// When [`trim`](Self::trim) would next drop something, if the pool
    /// holds buffers: time alone then has work to do.
    pub fn next_trim(&self) -> Option<Instant> {
        if self.free.is_empty() {
            return None;
        }
        Some(self.trimmed_at? + TRIM_EVERY)
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// Whether the pool holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    /// Bytes of capacity held.
    pub fn capacity_bytes(&self) -> usize {
        self.free.iter().map(BytesMut::capacity).sum()
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
        let mut pool = BufferPool::new(2, 1000);
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
        let mut pool = BufferPool::new(4, 1000);
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
        let mut pool = BufferPool::new(4, 1000);
        pool.give(batch(2000));
        assert!(pool.take(1_000_000).is_none());
        assert!(pool.take(1500).is_some());
    }

    #[test]
    fn trim_drops_what_a_whole_interval_left_unused() {
        let start = crate::clock::now();
        let mut pool = BufferPool::new(8, 1000);
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
        let mut pool = BufferPool::new(4, 1024);
        let mut buf = BytesMut::with_capacity(2048);
        buf.put_slice(b"an acknowledged batch");
        pool.give(buf.freeze());
        let again = pool.take(1024).unwrap();
        assert!(again.is_empty() && again.capacity() >= 1024);
        assert!(pool.take(1024).is_none());
    }
}
