//! The Kafka wire protocol, without I/O: framing, request and response
//! headers, version negotiation, per-connection correlation state, the
//! bounded-decoding guard that every response passes before kafka-protocol
//! decodes it, and the consumer protocol (group subscriptions and
//! assignments) carried inside group requests. Error codes are read with
//! [`KafkaCode`], which lives with the crate's error type.
//!
//! Message structs come from the [`kafka_protocol`] crate.

mod codec;
pub mod consumer_protocol;
mod correlation;
mod frame;
pub mod guard;
// The vectored Produce encoder serves the tokio layer's writer only.
#[cfg(feature = "tokio-runtime")]
mod produce_frame;
mod versions;

/// Kafka's error-code table, kept with the crate's error type.
pub use crate::error::KafkaCode;
pub use codec::{
    ApiRequest, decode_body, decode_response, encode_request, response_header_version,
    split_response,
};
pub use correlation::{CorrelationState, MatchedResponse, PendingRequest};
pub use frame::{DEFAULT_MAX_FRAME_SIZE, FrameDecoder, write_frame};
#[cfg(feature = "tokio-runtime")]
pub(crate) use produce_frame::{FrameCursor, FrameParts};
pub use versions::{ApiKey, CLIENT_VERSIONS, NegotiatedVersions, VersionRange, client_range};
