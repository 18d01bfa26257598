//! [`BufferPool`]: batch buffers handed back once their batch is
//! acknowledged, for the next batches to be encoded into.
//!
//! An uncompressed batch leaves its builder as the very buffer it was
//! encoded into, so without a pool every batch starts in freshly allocated
//! memory, which the allocator often has to fault in from the kernel page
//! by page. The pool keeps a few acknowledged buffers (up to a count) and
//! gives them to builders instead.

use bytes::{Bytes, BytesMut};

/// A bounded stack of empty buffers of at least a given capacity.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<BytesMut>,
    max_buffers: usize,
    min_capacity: usize,
}

impl BufferPool {
    /// A pool keeping up to `max_buffers` buffers, each with room for at
    /// least `min_capacity` bytes (smaller ones are not kept).
    pub fn new(max_buffers: usize, min_capacity: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            max_buffers,
            min_capacity,
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
        Some(self.free.swap_remove(at))
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
