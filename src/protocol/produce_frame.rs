//! Produce requests framed without copying their record batches.
//!
//! A Produce request is mostly record batches, which the producer already
//! holds as shared [`Bytes`]. Encoding it like any other request copies
//! every batch into one frame buffer (up to `max_request_size`). Here the
//! request is written as [`FrameParts`]: runs of encoded fields, and the
//! batches themselves in between, which a vectored write sends as they are.
//! The bytes are those of the generic encoder (kafka-protocol's), which a
//! test checks for every version this client sends.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use crate::error::Error;

/// Batches shorter than this are copied into the encoded run: a separate
/// part costs the writer more than the copy.
const SHARE_MIN: usize = 1024;

/// A request frame as byte runs to write in order (size prefix included).
#[derive(Debug, Default, Clone)]
pub struct FrameParts {
    parts: Vec<Bytes>,
    len: usize,
}

// What the byte-for-byte tests read of a frame; the writer reads it through
// a `FrameCursor`.
#[cfg(test)]
impl FrameParts {
    /// The runs, in order.
    fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The frame in one buffer (a copy).
    fn to_contiguous(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.len);
        for part in &self.parts {
            out.extend_from_slice(part);
        }
        out
    }
}

/// Reads a frame's runs in order, for a vectored write
/// (`AsyncWriteExt::write_all_buf`).
#[derive(Debug)]
pub struct FrameCursor {
    parts: std::collections::VecDeque<Bytes>,
    remaining: usize,
}

impl From<FrameParts> for FrameCursor {
    fn from(frame: FrameParts) -> FrameCursor {
        FrameCursor {
            remaining: frame.len,
            parts: frame.parts.into(),
        }
    }
}

impl bytes::Buf for FrameCursor {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = std::io::IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// Encoded runs and shared batches, before the size prefix is known.
enum Run {
    Encoded(BytesMut),
    Shared(Bytes),
}

fn put_uvarint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// A length as the format's prefix: `i16` for a classic string, `u32` (as
/// an unsigned varint of length + 1) for a compact one.
fn put_str(buf: &mut BytesMut, value: Option<&str>, compact: bool) -> Result<(), Error> {
    match (value, compact) {
        (None, true) => buf.put_u8(0),
        (None, false) => buf.put_i16(-1),
        (Some(s), true) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
        (Some(s), false) => {
            let len = i16::try_from(s.len())
                .map_err(|_| Error::protocol(format!("a string of {} bytes", s.len())))?;
            buf.put_i16(len);
            buf.put_slice(s.as_bytes());
        }
    }
    Ok(())
}

/// Encodes `request` as a frame at `version` with its header (correlation
/// id, client id), sharing the record batches rather than copying them.
/// `None` when the request needs the generic encoder: a version outside
/// 3..=12 (v13 names topics by id) or unknown tagged fields to carry.
pub fn encode_produce_frame(
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    request: &ProduceRequest,
) -> Result<Option<FrameParts>, Error> {
    let has_tags = !request.unknown_tagged_fields.is_empty()
        || request.topic_data.iter().any(|t| {
            !t.unknown_tagged_fields.is_empty()
                || t.partition_data
                    .iter()
                    .any(|p| !p.unknown_tagged_fields.is_empty())
        });
    if !(3..=12).contains(&version) || has_tags {
        return Ok(None);
    }
    let flexible = version >= 9;
    let mut runs = Vec::new();
    let mut head = BytesMut::with_capacity(128 + 32 * request.topic_data.len());
    head.put_i32(0); // the size, patched at the end
    head.put_i16(ApiKey::Produce as i16);
    head.put_i16(version);
    head.put_i32(correlation_id);
    // The header's client id is a classic nullable string in v1 and v2.
    put_str(&mut head, client_id, false)?;
    if flexible {
        head.put_u8(0); // header tagged fields
    }
    put_str(
        &mut head,
        request.transactional_id.as_ref().map(|t| t.0.as_str()),
        flexible,
    )?;
    head.put_i16(request.acks);
    head.put_i32(request.timeout_ms);
    let put_count = |head: &mut BytesMut, n: usize| -> Result<(), Error> {
        let n = i32::try_from(n).map_err(|_| Error::protocol(format!("an array of {n}")))?;
        if flexible {
            put_uvarint(head, n as u64 + 1);
        } else {
            head.put_i32(n);
        }
        Ok(())
    };
    put_count(&mut head, request.topic_data.len())?;
    for topic in &request.topic_data {
        put_str(&mut head, Some(topic.name.0.as_str()), flexible)?;
        put_count(&mut head, topic.partition_data.len())?;
        for partition in &topic.partition_data {
            head.put_i32(partition.index);
            match &partition.records {
                None if flexible => head.put_u8(0),
                None => head.put_i32(-1),
                Some(records) => {
                    let len = i32::try_from(records.len()).map_err(|_| {
                        Error::protocol(format!("record batches of {} bytes", records.len()))
                    })?;
                    if flexible {
                        put_uvarint(&mut head, len as u64 + 1);
                    } else {
                        head.put_i32(len);
                    }
                    if records.len() >= SHARE_MIN {
                        runs.push(Run::Encoded(head.split()));
                        runs.push(Run::Shared(records.clone()));
                    } else {
                        head.put_slice(records);
                    }
                }
            }
            if flexible {
                head.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            head.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        head.put_u8(0); // request tagged fields
    }
    runs.push(Run::Encoded(head));
    let len: usize = runs
        .iter()
        .map(|r| match r {
            Run::Encoded(b) => b.len(),
            Run::Shared(b) => b.len(),
        })
        .sum();
    let size = i32::try_from(len - 4)
        .map_err(|_| Error::protocol(format!("Produce request of {len} bytes is too large")))?;
    if let Some(Run::Encoded(first)) = runs.first_mut() {
        first[..4].copy_from_slice(&size.to_be_bytes());
    }
    let parts = runs
        .into_iter()
        .map(|r| match r {
            Run::Encoded(b) => b.freeze(),
            Run::Shared(b) => b,
        })
        .filter(|b| !b.is_empty())
        .collect();
    Ok(Some(FrameParts { parts, len }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::StrBytes;

    fn request(transactional: bool) -> ProduceRequest {
        let big = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        let topic = |name: &'static str, parts: Vec<(i32, Option<Bytes>)>| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_data(
                    parts
                        .into_iter()
                        .map(|(index, records)| {
                            PartitionProduceData::default()
                                .with_index(index)
                                .with_records(records)
                        })
                        .collect(),
                )
        };
        ProduceRequest::default()
            .with_transactional_id(transactional.then(|| StrBytes::from_static_str("txn-1").into()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic(
                    "events",
                    vec![
                        (0, Some(big.clone())),
                        (3, Some(Bytes::from_static(b"small batch"))),
                        (5, None),
                    ],
                ),
                topic("orders", vec![(1, Some(big.slice(10..3000)))]),
                topic("empty", vec![]),
            ])
    }

    /// Byte for byte what the generic encoder writes, at every version the
    /// client sends, with and without a transactional id and a client id.
    #[test]
    fn matches_the_generic_encoder() {
        for version in 3..=12 {
            for transactional in [false, true] {
                for client_id in [None, Some("smartkafka")] {
                    let req = request(transactional);
                    let mut generic = BytesMut::new();
                    super::super::codec::encode_request(&mut generic, 7, client_id, version, &req)
                        .unwrap();
                    let parts = encode_produce_frame(7, client_id, version, &req)
                        .unwrap()
                        .unwrap();
                    assert_eq!(parts.len, generic.len());
                    assert_eq!(
                        parts.to_contiguous(),
                        generic,
                        "v{version} transactional={transactional} client_id={client_id:?}"
                    );
                    // The large batches are shared, not copied.
                    assert!(parts.parts().len() >= 4, "{}", parts.parts().len());
                }
            }
        }
    }

    /// The cursor yields the frame's bytes whatever the steps it is read in.
    #[test]
    fn the_cursor_reads_the_whole_frame_in_any_steps() {
        let frame = encode_produce_frame(3, Some("c"), 11, &request(true))
            .unwrap()
            .unwrap();
        let whole = frame.to_contiguous();
        for step in [1, 7, 1000, 4096, usize::MAX] {
            let mut cursor = FrameCursor::from(frame.clone());
            let mut read = Vec::new();
            while cursor.has_remaining() {
                let mut slices = [std::io::IoSlice::new(&[]); 3];
                let n = cursor.chunks_vectored(&mut slices);
                assert!(n >= 1);
                let chunk = cursor.chunk();
                let take = chunk.len().min(step);
                read.extend_from_slice(&chunk[..take]);
                cursor.advance(take);
            }
            assert_eq!(read, whole, "steps of {step}");
        }
    }

    #[test]
    fn leaves_what_it_cannot_frame_to_the_generic_encoder() {
        let req = request(false);
        assert!(encode_produce_frame(1, None, 13, &req).unwrap().is_none());
        let mut tagged = req.clone();
        tagged
            .unknown_tagged_fields
            .insert(5, Bytes::from_static(b"x"));
        assert!(
            encode_produce_frame(1, None, 11, &tagged)
                .unwrap()
                .is_none()
        );
    }
}
