//! The crate's error type: an opaque [`Error`] carrying an [`ErrorKind`] and
//! predicates that tell a caller what to do next (retry, give up, check the
//! configuration), and Kafka's error-code table ([`KafkaCode`]) that the
//! kinds are built from. Both sit at the bottom of the crate: every layer
//! reports through them and they import nothing of the crate.

mod kafka_code;

use std::fmt;
use std::time::Duration;

pub use kafka_code::KafkaCode;

/// What went wrong, broadly. Match on this to decide how to react; the
/// predicates on [`Error`] answer the common questions directly.
///
/// ```no_run
/// # async fn demo(producer: smartkafka::Producer) -> Result<(), smartkafka::Error> {
/// use smartkafka::{ErrorKind, Record};
/// match producer.send_and_wait(Record::new("events").value("hi")).await {
///     Ok(metadata) => println!("stored at offset {}", metadata.offset),
///     Err(e) => match e.kind() {
///         ErrorKind::DeliveryTimeout if e.possibly_persisted() => {
///             eprintln!("outcome unknown: the record may be in the log: {e}")
///         }
///         ErrorKind::Config { field } => eprintln!("fix the setting `{field}`: {e}"),
///         _ if e.is_retriable() => eprintln!("try again: {e}"),
///         _ => return Err(e),
///     },
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration value is invalid; `field` names it.
    Config {
        /// The configuration field at fault, e.g. `"delivery_timeout"`.
        field: &'static str,
    },
    /// The broker answered with a Kafka error code, or the client refused
    /// locally what a broker would refuse with it (an illegal topic name
    /// is `INVALID_TOPIC_EXCEPTION`).
    Broker(KafkaCode),
    /// Connecting to a broker did not finish within the connect timeout.
    ConnectTimeout,
    /// A request got no response within the request timeout; its connection
    /// was closed because a late response would be mismatched.
    RequestTimeout,
    /// A socket-level failure (refused, reset, closed by the peer).
    Io,
    /// The peer sent bytes that do not form a valid response: bad framing,
    /// an unexpected correlation id, a frame above the size limit, or a body
    /// the bounded-decoding guard refused.
    Protocol,
    /// The broker does not support an API (or any version of it that this
    /// client speaks) that the operation needs.
    UnsupportedApi,
    /// No broker could be reached or none is known for the request.
    NoBrokerAvailable,
    /// The operation waited longer than allowed.
    Timeout,
    /// The client was closed.
    Closed,
    /// The producer's buffer stayed full (or it held its
    /// `max_buffered_records` records not yet delivered) for longer than
    /// `max_block`; for `try_send`, which does not wait, the buffer is full
    /// right now or the producer holds that many records.
    BufferExhausted,
    /// A record is larger than the producer's buffer or its maximum request
    /// size; it can never be sent.
    RecordTooLarge,
    /// A record names a partition that does not exist, or a custom
    /// partitioner refused it.
    InvalidPartition,
    /// A record was not delivered within `delivery_timeout`.
    DeliveryTimeout,
    /// Another producer with the same transactional id took over (it ran
    /// `init_transactions` later): this producer is finished. Fatal.
    Fenced,
    /// The open transaction cannot commit (a record or a transactional
    /// request failed): abort it, then carry on with a new one.
    TransactionAbortable,
    /// The record was not sent because its transaction was aborted.
    TransactionAborted,
    /// A transactional call made in the wrong state, such as a send before
    /// `begin_transaction` or an abort while a commit's outcome is unknown.
    InvalidTransactionState,
    /// A blocking call (`smartkafka::blocking`) was made from asynchronous
    /// code, whose thread it would block: use the async API there, or call
    /// it from `tokio::task::spawn_blocking` or a thread of your own.
    BlockingInAsyncContext,
    /// The TLS handshake failed: the broker's certificate did not verify
    /// (unknown issuer, expired, issued for another host), the broker
    /// wanted a client certificate, or it does not speak TLS. The message
    /// says which. Fatal: retrying cannot help.
    Tls,
    /// SASL authentication failed: wrong credentials, a mechanism the
    /// broker does not enable (the message lists those it does), or a
    /// server that could not prove it knows the password. Fatal.
    Authentication,
    /// A key or value could not be serialized or deserialized; nothing was
    /// sent (or, consuming, the record could not be read as its type).
    /// Retrying the same value cannot help.
    Serialization,
    /// A circuit breaker is open after repeated failures: the send was
    /// refused at once and nothing was buffered. Retriable once the breaker
    /// lets probes through again.
    CircuitOpen,
}

/// The error type of every fallible operation in smartkafka.
///
/// ```
/// use smartkafka::{Error, ErrorKind};
/// let err = Error::config("linger", "is above the longest allowed");
/// assert_eq!(err.kind(), &ErrorKind::Config { field: "linger" });
/// assert!(!err.is_retriable());
/// assert!(err.to_string().contains("linger"));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    possibly_persisted: bool,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// Some constructors serve only the tokio layer.
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
                possibly_persisted: false,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// An [`ErrorKind::Authentication`] error with `message`: for a
    /// [`TokenProvider`](crate::security::TokenProvider) that cannot supply
    /// a token.
    ///
    /// ```
    /// let err = smartkafka::Error::authentication("the identity provider is down");
    /// assert!(err.is_fatal());
    /// ```
    pub fn authentication(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Authentication, message)
    }

    /// An [`ErrorKind::Serialization`] error with `message`: for a
    /// [`Serializer`](crate::serialization::Serializer) or
    /// [`Deserializer`](crate::serialization::Deserializer) of your own.
    ///
    /// ```
    /// let err = smartkafka::Error::serialization("price is not a number");
    /// assert!(!err.is_retriable());
    /// assert!(err.to_string().contains("price"));
    /// ```
    pub fn serialization(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Serialization, message)
    }

    /// The same error with `source` as its cause (for example a serde
    /// error behind a [`ErrorKind::Serialization`] error).
    pub fn caused_by(self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.with_source(source)
    }

    /// A copy with the same kind and message (the source chain is not kept),
    /// for reporting one failure to many waiters.
    pub(crate) fn clone_shallow(&self) -> Error {
        Error::new(self.inner.kind.clone(), self.inner.message.clone())
            .with_possibly_persisted(self.inner.possibly_persisted)
    }

    /// The same error, marked as possibly persisted or not.
    pub(crate) fn with_possibly_persisted(mut self, possibly: bool) -> Error {
        self.inner.possibly_persisted = possibly;
        self
    }

    /// For a failed delivery: whether the record may nevertheless be in the
    /// log. `false` means it is certainly not (it was never sent, or the
    /// broker refused it); `true` means a request carrying it was written
    /// and its outcome is unknown (a timeout, a lost connection), so a
    /// consumer may still see it.
    ///
    /// ```
    /// use smartkafka::Error;
    /// assert!(!Error::config("acks", "bad").possibly_persisted());
    /// ```
    pub fn possibly_persisted(&self) -> bool {
        self.inner.possibly_persisted
    }

    /// A configuration error naming the offending field.
    pub fn config(field: &'static str, message: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::Config { field },
            format!("invalid `{field}`: {message}"),
        )
    }

    pub(crate) fn broker(code: KafkaCode, context: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Broker(code), format!("{context}: {code}"))
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{context}: {err}")).with_source(err)
    }

    pub(crate) fn request_timeout(what: impl fmt::Display, after: Duration) -> Error {
        Error::new(
            ErrorKind::RequestTimeout,
            format!("{what}: no response within {after:?}; connection closed"),
        )
    }

    /// What kind of error this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self.inner.kind {
            ErrorKind::Broker(code) => Some(code),
            _ => None,
        }
    }

    /// Whether trying the same operation again may succeed: transient broker
    /// errors, timeouts, lost connections.
    pub fn is_retriable(&self) -> bool {
        match &self.inner.kind {
            ErrorKind::Broker(code) => code.is_retriable(),
            ErrorKind::ConnectTimeout
            | ErrorKind::RequestTimeout
            | ErrorKind::Io
            | ErrorKind::NoBrokerAvailable
            | ErrorKind::Timeout
            | ErrorKind::BufferExhausted
            | ErrorKind::DeliveryTimeout
            | ErrorKind::CircuitOpen => true,
            ErrorKind::Config { .. }
            | ErrorKind::Protocol
            | ErrorKind::UnsupportedApi
            | ErrorKind::Closed
            | ErrorKind::RecordTooLarge
            | ErrorKind::InvalidPartition
            | ErrorKind::Fenced
            | ErrorKind::TransactionAbortable
            | ErrorKind::TransactionAborted
            | ErrorKind::InvalidTransactionState
            | ErrorKind::BlockingInAsyncContext
            | ErrorKind::Tls
            | ErrorKind::Authentication
            | ErrorKind::Serialization => false,
        }
    }

    /// Whether the client cannot go on: retrying or continuing is pointless
    /// (bad configuration, an unsupported broker, authorisation failures,
    /// a closed client).
    pub fn is_fatal(&self) -> bool {
        match &self.inner.kind {
            ErrorKind::Config { .. }
            | ErrorKind::UnsupportedApi
            | ErrorKind::Closed
            | ErrorKind::Fenced
            | ErrorKind::Tls
            | ErrorKind::Authentication => true,
            ErrorKind::Broker(code) => matches!(
                *code,
                KafkaCode::CLUSTER_AUTHORIZATION_FAILED
                    | KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                    | KafkaCode::PRODUCER_FENCED
                    | KafkaCode::UNSUPPORTED_VERSION
                    | KafkaCode::SASL_AUTHENTICATION_FAILED
            ),
            _ => false,
        }
    }

    /// Whether the open transaction must be aborted (then the producer goes
    /// on with a new one): true for [`ErrorKind::TransactionAbortable`].
    ///
    /// ```
    /// # use smartkafka::{Error, ErrorKind};
    /// let err = Error::config("transactional_id", "empty");
    /// assert!(!err.is_abortable());
    /// ```
    pub fn is_abortable(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::TransactionAbortable)
    }

    /// Whether this is a configuration error.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Config { .. })
    }

    /// Whether this is any kind of timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::ConnectTimeout
                | ErrorKind::RequestTimeout
                | ErrorKind::Timeout
                | ErrorKind::DeliveryTimeout
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("source", &self.inner.source)
            .field("possibly_persisted", &self.inner.possibly_persisted)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_the_kind() {
        let e = Error::broker(KafkaCode::NOT_LEADER_OR_FOLLOWER, "produce");
        assert!(e.is_retriable() && !e.is_fatal());
        assert_eq!(e.kafka_code(), Some(KafkaCode::NOT_LEADER_OR_FOLLOWER));
        let e = Error::broker(KafkaCode::CLUSTER_AUTHORIZATION_FAILED, "produce");
        assert!(!e.is_retriable() && e.is_fatal());
        let e = Error::request_timeout("metadata", Duration::from_secs(1));
        assert!(e.is_retriable() && e.is_timeout());
        assert!(Error::protocol("bad").kafka_code().is_none());
    }
}
