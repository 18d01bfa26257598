//! Reading whole frames off a socket, with the memory of large frames
//! reused.
//!
//! Small frames (most responses) are read into one growing buffer and split
//! off it. A frame whose declared size is larger than [`LARGE_FRAME`] (a
//! Fetch response of many record batches, typically) is read straight into
//! a buffer of its own, taken from a small pool kept per connection; once
//! every record sliced from that frame has been dropped, the buffer goes back
//! to the pool. So a consumer reading megabytes a second does not allocate,
//! fault in, copy while growing and free a fresh buffer for each response.
//!
//! The rule of [`FrameDecoder`] holds on both paths: the declared size is
//! checked before anything is reserved, and nothing grows beyond twice what
//! actually arrived. A buffer taken from the pool was grown by earlier
//! frames, so reusing it costs no new memory.

use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;
use crate::protocol::FrameDecoder;

/// Frames declared larger than this are read into a pooled buffer of their
/// own; smaller ones share the connection's read buffer.
pub(crate) const LARGE_FRAME: usize = 64 * 1024;

/// How many free buffers a connection keeps for reuse. Two cover the usual
/// pattern of one response being read while the previous one is consumed.
const KEPT_BUFFERS: usize = 2;

/// What one call to [`FrameReader::next`] found.
#[derive(Debug)]
pub(crate) enum Read {
    /// A complete frame body (without its size prefix).
    Frame(Bytes),
    /// Bytes arrived, but no frame is complete yet. `started` says whether
    /// the size prefix of the next frame has arrived (so a response is
    /// being received).
    Partial { started: bool },
    /// The peer closed the stream cleanly between reads.
    Closed,
}

/// Splits a socket's bytes into frames; see the module doc.
#[derive(Debug)]
pub(crate) struct FrameReader {
    decoder: FrameDecoder,
    /// Bytes of small frames, and the start of a frame until its size is
    /// known.
    buf: BytesMut,
    /// The large frame being read: its body so far and its declared size.
    large: Option<(Vec<u8>, usize)>,
    pool: Arc<FramePool>,
}

impl FrameReader {
    /// A reader refusing frames larger than `decoder` allows.
    pub(crate) fn new(decoder: FrameDecoder) -> FrameReader {
        FrameReader {
            decoder,
            buf: BytesMut::with_capacity(LARGE_FRAME),
            large: None,
            pool: Arc::new(FramePool::default()),
        }
    }

    /// Returns the next complete frame if one is buffered; otherwise reads
    /// once from `stream` and returns what that read gave.
    pub(crate) async fn next<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Read, ReadError> {
        if let Some(frame) = self.complete().map_err(ReadError::Protocol)? {
            return Ok(Read::Frame(frame));
        }
        let n = match self.large.as_mut() {
            Some((body, declared)) => {
                let remaining = *declared - body.len();
                if body.capacity() == body.len() {
                    // Grow by what arrived so far (at least 64 KiB), never
                    // past the declared size.
                    body.reserve(remaining.min(body.len().max(LARGE_FRAME)));
                }
                stream.read_buf(&mut (&mut *body).limit(remaining)).await
            }
            None => stream.read_buf(&mut self.buf).await,
        }
        .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(Read::Closed);
        }
        match self.complete().map_err(ReadError::Protocol)? {
            Some(frame) => Ok(Read::Frame(frame)),
            None => Ok(Read::Partial {
                started: self.large.is_some() || self.buf.len() >= 4,
            }),
        }
    }

    /// Takes the next complete frame off what is buffered, moving a large
    /// frame's first bytes to a buffer of its own when its size is known.
    fn complete(&mut self) -> Result<Option<Bytes>, Error> {
        if let Some((body, declared)) = &self.large {
            if body.len() < *declared {
                return Ok(None);
            }
            let (body, _) = self.large.take().expect("checked above");
            return Ok(Some(Bytes::from_owner(PooledFrame {
                body,
                pool: Arc::downgrade(&self.pool),
            })));
        }
        if let Some(frame) = self.decoder.decode(&mut self.buf)? {
            return Ok(Some(frame));
        }
        match self.decoder.declared_len(&self.buf)? {
            Some(declared) if declared > LARGE_FRAME => {
                // The buffer holds a prefix of this frame only (it would
                // have been decoded above if it were complete).
                let mut body = self.pool.take();
                body.extend_from_slice(&self.buf[4..]);
                self.buf.clear();
                self.large = Some((body, declared));
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket failed.
    Io(std::io::Error),
    /// The bytes are not a valid frame (a size the decoder refuses).
    Protocol(Error),
}

/// The free buffers of one connection.
#[derive(Debug, Default)]
struct FramePool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl FramePool {
    /// An empty buffer, with the capacity of an earlier frame when one was
    /// given back.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `body`'s memory for a later frame, unless enough is kept.
    fn give(&self, mut body: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEPT_BUFFERS {
            body.clear();
            free.push(body);
        }
    }
}

/// A large frame's buffer, owned by the [`Bytes`] sliced from it; it goes
/// back to its connection's pool when the last slice is dropped.
struct PooledFrame {
    body: Vec<u8>,
    pool: Weak<FramePool>,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give(std::mem::take(&mut self.body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::write_frame;
    use tokio::io::AsyncWriteExt;

    /// Reads every frame of `wire`, delivered in pieces of `chunk` bytes.
    async fn frames_of(wire: Vec<u8>, chunk: usize, reader: &mut FrameReader) -> Vec<Bytes> {
        let (mut tx, mut rx) = tokio::io::duplex(chunk);
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(chunk) {
                tx.write_all(piece).await.unwrap();
            }
        });
        let mut frames = Vec::new();
        loop {
            match reader.next(&mut rx).await.unwrap() {
                Read::Frame(f) => frames.push(f),
                Read::Partial { .. } => {}
                Read::Closed => break,
            }
        }
        writer.await.unwrap();
        frames
    }

    fn wire_of(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        for body in bodies {
            write_frame(&mut wire, body).unwrap();
        }
        wire.to_vec()
    }

    #[tokio::test]
    async fn small_and_large_frames_come_out_whole_and_in_order() {
        let bodies: Vec<Vec<u8>> = [10, LARGE_FRAME + 1, 0, 3 * LARGE_FRAME + 17, 5, LARGE_FRAME]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        for chunk in [1, 1000, 65_536, 1 << 20] {
            let mut reader = FrameReader::new(FrameDecoder::new(1 << 20));
            let frames = frames_of(wire_of(&bodies), chunk, &mut reader).await;
            let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            let want: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
            assert_eq!(got, want, "delivered in pieces of {chunk} bytes");
        }
    }

    #[tokio::test]
    async fn a_large_frame_buffer_is_reused_once_its_slices_are_dropped() {
        let body: Vec<u8> = (0..2 * LARGE_FRAME).map(|b| b as u8).collect();
        let mut reader = FrameReader::new(FrameDecoder::new(1 << 20));
        let first = frames_of(wire_of(std::slice::from_ref(&body)), 4096, &mut reader).await;
        let address = first[0].as_ptr();
        let slice = first[0].slice(10..20);
        drop(first);
        // A slice still holds the buffer: the next frame gets another one.
        let second = frames_of(wire_of(std::slice::from_ref(&body)), 4096, &mut reader).await;
        assert_ne!(second[0].as_ptr(), address);
        assert_eq!(&slice[..], &body[10..20]);
        drop(slice);
        drop(second);
        // Both are free now; the pool hands one of them back.
        let third = frames_of(wire_of(std::slice::from_ref(&body)), 4096, &mut reader).await;
        assert_eq!(&third[0][..], &body[..]);
        assert_eq!(reader.pool.free.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_declared_size_past_the_limit_is_refused_before_reading_it() {
        let mut reader = FrameReader::new(FrameDecoder::new(LARGE_FRAME * 2));
        let mut wire = ((LARGE_FRAME * 2 + 1) as i32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[0; 100]);
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&wire).await.unwrap();
        let refused = loop {
            match reader.next(&mut rx).await {
                Ok(Read::Partial { .. }) => continue,
                other => break other,
            }
        };
        assert!(
            matches!(refused, Err(ReadError::Protocol(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_declares_much_and_sends_little_costs_little() {
        let mut reader = FrameReader::new(FrameDecoder::new(64 << 20));
        let mut wire = (60i32 << 20).to_be_bytes().to_vec();
        wire.extend_from_slice(&[1; 1000]);
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&wire).await.unwrap();
        drop(tx);
        loop {
            match reader.next(&mut rx).await.unwrap() {
                Read::Partial { started } => assert!(started),
                Read::Closed => break,
                Read::Frame(_) => panic!("no frame was complete"),
            }
        }
        let (body, declared) = reader.large.as_ref().unwrap();
        assert_eq!(*declared, 60 << 20);
        assert_eq!(body.len(), 1000);
        assert!(body.capacity() <= 2 * LARGE_FRAME, "{}", body.capacity());
    }
}
