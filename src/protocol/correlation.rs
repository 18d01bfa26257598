//! One broker connection's protocol state, without any I/O: correlation ids,
//! the queue of requests awaiting responses, framing, and the versions
//! negotiated for this connection.
//!
//! Kafka answers requests on a connection strictly in the order it received
//! them, so the queue is FIFO: every response frame must carry the
//! correlation id at the head of the queue. Anything else means the stream is
//! out of step, and the connection must be closed (its remaining responses
//! cannot be trusted).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
#[cfg(feature = "tokio-runtime")]
use kafka_protocol::messages::ProduceRequest;

use super::codec::{self, ApiRequest};
use super::frame::FrameDecoder;
#[cfg(feature = "tokio-runtime")]
use super::produce_frame::FrameParts;
use super::versions::NegotiatedVersions;
use crate::error::Error;

/// A request written to the connection and awaiting its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRequest {
    /// The correlation id the response must carry.
    pub correlation_id: i32,
    /// The request's API.
    pub api: ApiKey,
    /// The version it was sent at.
    pub version: i16,
}

/// A response matched to its request, body not yet decoded.
#[derive(Debug, Clone)]
pub struct MatchedResponse {
    /// The request this answers.
    pub request: PendingRequest,
    /// The response body, after the header.
    pub body: Bytes,
}

/// The sans-IO state of one connection.
#[derive(Debug)]
pub struct CorrelationState {
    client_id: Option<String>,
    next_correlation_id: i32,
    pending: VecDeque<PendingRequest>,
    frames: FrameDecoder,
    versions: Option<NegotiatedVersions>,
}

impl CorrelationState {
    /// A fresh connection state.
    pub fn new(client_id: Option<String>, max_frame_size: usize) -> CorrelationState {
        CorrelationState {
            client_id,
            next_correlation_id: 0,
            pending: VecDeque::new(),
            frames: FrameDecoder::new(max_frame_size),
            versions: None,
        }
    }

    /// Encodes `request` at `version` into `out` and, if `expects_response`,
    /// queues it for matching. Returns the correlation id used. Produce with
    /// acks=0 is the one request that gets no response.
    pub fn encode<R: ApiRequest>(
        &mut self,
        out: &mut BytesMut,
        version: i16,
        request: &R,
        expects_response: bool,
    ) -> Result<i32, Error> {
        let api = R::KEY;
        let correlation_id = self.next_correlation_id;
        codec::encode_request(
            out,
            correlation_id,
            self.client_id.as_deref(),
            version,
            request,
        )?;
        self.register(correlation_id, api, version, expects_response);
        Ok(correlation_id)
    }

    /// Like [`encode`](Self::encode) for a Produce request, as
    /// `FrameParts` that share its record batches instead of copying them.
    /// `Ok(None)`, with nothing used up, when the request needs the generic
    /// encoder (see `encode_produce_frame`).
    #[cfg(feature = "tokio-runtime")]
    pub(crate) fn encode_produce(
        &mut self,
        version: i16,
        request: &ProduceRequest,
        expects_response: bool,
    ) -> Result<Option<FrameParts>, Error> {
        let correlation_id = self.next_correlation_id;
        let Some(parts) = super::produce_frame::encode_produce_frame(
            correlation_id,
            self.client_id.as_deref(),
            version,
            request,
        )?
        else {
            return Ok(None);
        };
        self.register(correlation_id, ApiKey::Produce, version, expects_response);
        Ok(Some(parts))
    }

    /// Uses up `correlation_id` for a request written, queuing it for its
    /// response if one comes.
    fn register(&mut self, correlation_id: i32, api: ApiKey, version: i16, expects_response: bool) {
        // Wrap to 0, never negative: some brokers log negative ids oddly.
        self.next_correlation_id = correlation_id.checked_add(1).unwrap_or(0);
        if expects_response {
            self.pending.push_back(PendingRequest {
                correlation_id,
                api,
                version,
            });
        }
    }

    /// Takes back the request queued last for its response, so that it can
    /// be written later than requests encoded after it (a connection that
    /// re-authenticates holds its requests back); [`expect`](Self::expect)
    /// queues it again once it is written.
    #[cfg(feature = "tokio-runtime")]
    pub(crate) fn take_last_pending(&mut self) -> Option<PendingRequest> {
        self.pending.pop_back()
    }

    /// Queues `request`, taken back with
    /// [`take_last_pending`](Self::take_last_pending), for its response:
    /// it is being written now, after everything queued before.
    #[cfg(feature = "tokio-runtime")]
    pub(crate) fn expect(&mut self, request: PendingRequest) {
        self.pending.push_back(request);
    }

    /// Takes the next complete response off `buf`, matched to its request.
    /// `Ok(None)` means more bytes are needed. An error (oversize frame,
    /// unexpected correlation id, malformed header) means the connection must
    /// be closed and every pending request failed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<MatchedResponse>, Error> {
        if buf.len() >= 4 && self.pending.is_empty() {
            return Err(Error::protocol(
                "response received with no request outstanding",
            ));
        }
        let Some(frame) = self.frames.decode(buf)? else {
            return Ok(None);
        };
        self.match_frame(frame).map(Some)
    }

    /// Matches one complete response frame (its body, without the size
    /// prefix) to the oldest request waiting. An error means the connection
    /// must be closed, as for [`CorrelationState::decode`].
    pub fn match_frame(&mut self, frame: Bytes) -> Result<MatchedResponse, Error> {
        let Some(request) = self.pending.front().copied() else {
            return Err(Error::protocol(
                "response received with no request outstanding",
            ));
        };
        let (correlation_id, body) = codec::split_response(request.api, request.version, frame)?;
        if correlation_id != request.correlation_id {
            return Err(Error::protocol(format!(
                "expected a response to correlation id {} ({:?}), got {correlation_id}",
                request.correlation_id, request.api
            )));
        }
        self.pending.pop_front();
        Ok(MatchedResponse { request, body })
    }

    /// Requests written and not yet answered, oldest first.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &PendingRequest> {
        self.pending.iter()
    }

    /// Forgets every pending request (the connection is closing) and returns them.
    pub fn drain_pending(&mut self) -> Vec<PendingRequest> {
        self.pending.drain(..).collect()
    }

    /// Versions negotiated with this broker, once ApiVersions has completed.
    pub fn versions(&self) -> Option<&NegotiatedVersions> {
        self.versions.as_ref()
    }

    /// Records the versions negotiated with this broker.
    pub fn set_versions(&mut self, versions: NegotiatedVersions) {
        self.versions = Some(versions);
    }

    /// The frame decoder (and so the maximum frame size) of this connection.
    pub fn frame_decoder(&self) -> FrameDecoder {
        self.frames
    }
}
