//! Compression on the way out: the producer's engine configuration places
//! compression here ([`CompressAt::Dispatch`]), so the engine encodes and
//! stamps batches uncompressed, and each broker's dispatch task has them
//! compressed here, on the blocking pool, right before the request is
//! written. Compression then runs on other threads while the driver goes on
//! encoding, instead of after encoding on the driver's own task.
//!
//! A batch that does not shrink, or whose compression fails, goes out
//! uncompressed (as the builder's uncompressed fallback would send it).

use std::cell::RefCell;

use kafka_protocol::messages::ProduceRequest;

use crate::compression::{Compression, Compressor};
use crate::engine::{CompressAt, EngineConfig};
use crate::error::{Error, ErrorKind};

/// The codec and level batches are compressed with on the way out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outbound {
    pub(crate) codec: Compression,
    pub(crate) level: Option<i32>,
}

/// Bytes on the wire of each compressed batch: (topic, partition, bytes).
pub(crate) type WireSizes = Vec<(String, i32, usize)>;

thread_local! {
    /// Codec state and scratch of this blocking-pool thread, kept between
    /// batches (a zstd context is expensive to make).
    static STATE: RefCell<(Compressor, Vec<u8>)> = RefCell::new((Compressor::new(), Vec::new()));
}

impl Outbound {
    /// The codec to compress with on the way out, when the engine's
    /// configuration places compression here ([`CompressAt::Dispatch`]);
    /// `None` when there is no codec.
    pub(crate) fn for_engine(engine: &EngineConfig) -> Option<Outbound> {
        if engine.compress_at != CompressAt::Dispatch || engine.compression == Compression::None {
            return None;
        }
        Some(Outbound {
            codec: engine.compression,
            level: engine.compression_level,
        })
    }

    /// Compresses every batch of `request`, off the async workers.
    pub(crate) async fn compress(
        self,
        request: ProduceRequest,
    ) -> Result<(ProduceRequest, WireSizes), Error> {
        tokio::task::spawn_blocking(move || self.compress_now(request))
            .await
            .map_err(|e| Error::new(ErrorKind::Closed, format!("compression stopped: {e}")))
    }

    fn compress_now(self, mut request: ProduceRequest) -> (ProduceRequest, WireSizes) {
        let mut sizes = WireSizes::new();
        STATE.with(|state| {
            let (compressor, scratch) = &mut *state.borrow_mut();
            for topic in &mut request.topic_data {
                for partition in &mut topic.partition_data {
                    let Some(records) = partition.records.as_ref() else {
                        continue;
                    };
                    match crate::record_batch::compress_batch(
                        records, self.codec, self.level, compressor, scratch,
                    ) {
                        Ok(Some(compressed)) => {
                            sizes.push((
                                topic.name.0.to_string(),
                                partition.index,
                                compressed.len(),
                            ));
                            partition.records = Some(compressed);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(
                            "{:?} compression failed, sending the batch uncompressed: {e}",
                            self.codec
                        ),
                    }
                }
            }
        });
        (request, sizes)
    }
}
