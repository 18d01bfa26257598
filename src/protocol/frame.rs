//! Size-prefixed framing: every Kafka request and response travels as a
//! 4-byte big-endian length followed by that many bytes.
//!
//! The decoder checks the declared length against the configured maximum
//! *before* it reserves anything, and never reserves more than the bytes that
//! actually arrived: a peer that declares 2 GiB and sends ten bytes costs ten
//! bytes of memory.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, ErrorKind};

/// The default maximum frame size: 100 MiB, like the Java client's
/// `max.response.size` ceiling (`socket.request.max.bytes` on the broker).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Splits a byte stream into frames.
///
/// ```
/// use bytes::BytesMut;
/// use smartkafka::protocol::FrameDecoder;
/// let decoder = FrameDecoder::new(1024);
/// let mut buf = BytesMut::from(&[0u8, 0, 0, 3, b'a', b'b', b'c', 0, 0][..]);
/// assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], b"abc");
/// assert!(decoder.decode(&mut buf).unwrap().is_none()); // a partial prefix waits
/// let mut hostile = BytesMut::from(&[0x7fu8, 0xff, 0xff, 0xff][..]);
/// assert!(decoder.decode(&mut hostile).is_err()); // 2 GiB declared: refused
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> FrameDecoder {
        FrameDecoder { max_frame_size }
    }

    /// The largest frame this decoder accepts.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes one complete frame off the front of `buf`, or returns `None` when
    /// more bytes are needed. An error means the stream is unusable and its
    /// connection must be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        let Some(declared) = self.declared_len(buf)? else {
            return Ok(None);
        };
        let total = 4 + declared;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(declared).freeze()))
    }

    /// The body length announced by the prefix at the front of `buf`, checked
    /// against the limit, or `None` if fewer than four bytes are buffered.
    pub fn declared_len(&self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let declared = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let Ok(declared) = usize::try_from(declared) else {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("negative frame size {declared}"),
            ));
        };
        if declared > self.max_frame_size {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "frame of {declared} bytes exceeds the maximum of {} bytes",
                    self.max_frame_size
                ),
            ));
        }
        Ok(Some(declared))
    }
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

/// Writes `body` into `out` as one frame.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) -> Result<(), Error> {
    let len = i32::try_from(body.len())
        .map_err(|_| Error::protocol(format!("frame of {} bytes is too large", body.len())))?;
    out.reserve(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let d = FrameDecoder::new(64);
        let mut wire = BytesMut::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, b"world!").unwrap();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_and_negative_prefixes_are_refused_before_the_body_arrives() {
        let d = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&65i32.to_be_bytes()[..]);
        assert!(d.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert!(d.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&64i32.to_be_bytes()[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
    }
}
