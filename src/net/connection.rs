//! A connection to one broker: a socket (anything `AsyncRead + AsyncWrite`,
//! so tests can use in-memory pipes), a writer task, a reader task, and the
//! sans-IO [`CorrelationState`] between them.
//!
//! Requests are pipelined: many can be written before the first response
//! arrives; responses are matched in order by correlation id. A request that
//! times out closes the whole connection, because its late response would
//! otherwise be taken for the answer to the next request. Any protocol error
//! (oversize frame, unexpected correlation id, a body the guard refuses)
//! also closes it and fails every request still waiting.
//!
//! How a connection is opened (TCP, TLS, ApiVersions, SASL) is
//! [`super::open`]'s job. A connection whose SASL session has a lifetime
//! re-authenticates before it ends ([`super::reauth`]): requests are then
//! held back, not failed, until the new session starts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::frame_reader::{FrameReader, Read, ReadError};
use crate::client_config::ClientConfig;
use crate::error::{Error, ErrorKind};
use crate::protocol::{
    ApiRequest, CorrelationState, FrameCursor, FrameParts, KafkaCode, MatchedResponse,
    NegotiatedVersions, PendingRequest, VersionRange, decode_body, decode_response,
};

type Reply = oneshot::Sender<Result<MatchedResponse, Error>>;

struct Inner {
    proto: CorrelationState,
    replies: VecDeque<Reply>,
    closed: Option<Error>,
    writer: mpsc::UnboundedSender<Outgoing>,
    /// Requests held back while the connection re-authenticates, oldest
    /// first; `None` while requests are written as they come.
    held: Option<VecDeque<Held>>,
    /// Why the stream ended while a re-authentication was under way with
    /// every response it asked for read: the re-authentication's outcome
    /// decides how the connection closes.
    ended: Option<Error>,
}

/// A request held back during a re-authentication: encoded (its
/// correlation id used), not yet written.
struct Held {
    frame: Outgoing,
    /// What its response is matched against and who waits for it; `None`
    /// for a request the broker does not answer.
    awaits: Option<(PendingRequest, Reply)>,
}

/// A frame for the writer task.
enum Outgoing {
    /// Encoded in one buffer.
    Whole(BytesMut),
    /// A Produce request whose record batches are written as they are.
    Parts(FrameParts),
}

impl Inner {
    /// Encodes `request` for the writer: a Produce request as parts that
    /// share its record batches (no copy of up to `max_request_size` into
    /// a fresh buffer), anything else into one buffer.
    fn encode<R: ApiRequest>(
        &mut self,
        version: i16,
        request: &R,
        expects_response: bool,
    ) -> Result<Outgoing, Error> {
        if let Some(produce) = request.as_produce()
            && let Some(parts) = self
                .proto
                .encode_produce(version, produce, expects_response)?
        {
            return Ok(Outgoing::Parts(parts));
        }
        let mut buf = BytesMut::new();
        self.proto
            .encode(&mut buf, version, request, expects_response)?;
        Ok(Outgoing::Whole(buf))
    }

    /// Hands `frame`, just encoded, to the writer, or holds it back while
    /// the connection re-authenticates unless `reauth` (a request of the
    /// re-authentication itself). `reply` waits for its response. False
    /// when the writer has stopped.
    fn submit(&mut self, frame: Outgoing, reply: Option<Reply>, reauth: bool) -> bool {
        if !reauth && let Some(held) = self.held.as_mut() {
            let awaits = reply.and_then(|r| self.proto.take_last_pending().map(|p| (p, r)));
            held.push_back(Held { frame, awaits });
            return true;
        }
        if let Some(reply) = reply {
            self.replies.push_back(reply);
        }
        self.writer.send(frame).is_ok()
    }

    /// Writes the held requests, in order, and stops holding. False when
    /// the writer has stopped.
    fn release(&mut self) -> bool {
        let Some(held) = self.held.take() else {
            return true;
        };
        for Held { frame, awaits } in held {
            if let Some((request, reply)) = awaits {
                self.proto.expect(request);
                self.replies.push_back(reply);
            }
            if self.writer.send(frame).is_err() {
                return false;
            }
        }
        true
    }

    /// Why a new request cannot be sent, if it cannot.
    fn refusal(&self) -> Option<Error> {
        self.closed
            .as_ref()
            .or(self.ended.as_ref())
            .map(Error::clone_shallow)
    }
}

struct Shared {
    inner: Mutex<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    label: String,
    /// Signalled when the last awaited response has been read while
    /// requests are held back.
    drained: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another task panicked mid-update; the
        // connection is then closed below, so recovering the guard is safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection: fails every waiting request with `reason`,
    /// held ones included.
    fn close(&self, reason: Error) {
        let (replies, held) = {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return;
            }
            tracing::debug!(connection = %self.label, %reason, "closing connection");
            inner.proto.drain_pending();
            inner.closed = Some(reason.clone_shallow());
            (std::mem::take(&mut inner.replies), inner.held.take())
        };
        let held = held
            .into_iter()
            .flatten()
            .filter_map(|h| h.awaits.map(|(_, reply)| reply));
        for reply in replies.into_iter().chain(held) {
            let _ = reply.send(Err(reason.clone_shallow()));
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// The stream ended (or reading failed) with `reason`. While a
    /// re-authentication has read every response it asked for, it decides
    /// how the connection closes (a refused one with its authentication
    /// error, as a broker closes the stream after refusing); otherwise the
    /// connection closes now.
    fn end(&self, reason: Error) {
        {
            let mut inner = self.lock();
            if inner.held.is_some() && inner.replies.is_empty() && inner.closed.is_none() {
                inner.ended = Some(reason);
                return;
            }
        }
        self.close(reason);
    }
}

/// A pipelined connection to one broker, with its negotiated API versions.
pub(crate) struct BrokerConnection {
    shared: Arc<Shared>,
    versions: NegotiatedVersions,
    request_timeout: Duration,
    /// A handle of the re-authentication task (see
    /// [`reauthenticator`](Self::reauthenticator)), not the owner.
    reauth: bool,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl BrokerConnection {
    /// Starts the connection's tasks on an established stream and runs the
    /// ApiVersions exchange.
    pub(crate) async fn handshake<S>(
        stream: S,
        label: String,
        config: &ClientConfig,
    ) -> Result<BrokerConnection, Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut conn = BrokerConnection::start(stream, label, config);
        conn.versions = conn.negotiate().await?;
        Ok(conn)
    }

    fn start<S>(stream: S, label: String, config: &ClientConfig) -> BrokerConnection
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                proto: CorrelationState::new(Some(config.client_id.clone()), config.max_frame_size),
                replies: VecDeque::new(),
                closed: None,
                writer: tx,
                held: None,
                ended: None,
            }),
            tasks: Mutex::new(Vec::new()),
            label,
            drained: tokio::sync::Notify::new(),
        });
        let write_shared = Arc::clone(&shared);
        let write_task = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let written = match frame {
                    Outgoing::Whole(buf) => writer.write_all(&buf).await,
                    // One vectored write per run of parts where the stream
                    // takes them (a TCP socket does).
                    Outgoing::Parts(parts) => {
                        writer.write_all_buf(&mut FrameCursor::from(parts)).await
                    }
                };
                // A TLS stream holds written bytes until flushed; flush
                // once no further frame is waiting (free for plain TCP).
                let written = match written {
                    Ok(()) if rx.is_empty() => writer.flush().await,
                    other => other,
                };
                if let Err(e) = written {
                    write_shared.close(Error::io(
                        format_args!("writing to {}", write_shared.label),
                        e,
                    ));
                    return;
                }
            }
        });
        let read_shared = Arc::clone(&shared);
        let read_task = tokio::spawn(async move {
            let decoder = read_shared.lock().proto.frame_decoder();
            let mut frames = FrameReader::new(decoder);
            loop {
                let frame = match frames.next(&mut reader).await {
                    Ok(Read::Frame(frame)) => frame,
                    Ok(Read::Partial { started }) => {
                        // Bytes of a response began to arrive: refuse them
                        // at once if no request is waiting for one.
                        if started && read_shared.lock().proto.pending().len() == 0 {
                            read_shared.close(Error::protocol(
                                "response received with no request outstanding",
                            ));
                            return;
                        }
                        continue;
                    }
                    Ok(Read::Closed) => {
                        let reason = Error::new(
                            ErrorKind::Io,
                            format!("connection to {} closed by the broker", read_shared.label),
                        );
                        read_shared.end(reason);
                        return;
                    }
                    Err(ReadError::Io(e)) => {
                        read_shared.end(Error::io(
                            format_args!("reading from {}", read_shared.label),
                            e,
                        ));
                        return;
                    }
                    Err(ReadError::Protocol(e)) => {
                        read_shared.close(e);
                        return;
                    }
                };
                let matched = {
                    let mut inner = read_shared.lock();
                    inner.proto.match_frame(frame).map(|resp| {
                        let reply = inner.replies.pop_front();
                        let drained = inner.held.is_some() && inner.replies.is_empty();
                        (resp, reply, drained)
                    })
                };
                match matched {
                    Ok((resp, Some(reply), drained)) => {
                        let _ = reply.send(Ok(resp));
                        if drained {
                            read_shared.drained.notify_one();
                        }
                    }
                    // A response nobody waits for any more (its request
                    // timed out on a connection about to close).
                    Ok((_, None, _)) => {}
                    Err(e) => {
                        read_shared.close(e);
                        return;
                    }
                }
            }
        });
        shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([write_task, read_task]);
        BrokerConnection {
            shared,
            versions: NegotiatedVersions::default(),
            request_timeout: config.request_timeout,
            reauth: false,
        }
    }

    async fn negotiate(&self) -> Result<NegotiatedVersions, Error> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("smartkafka"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let max = crate::protocol::client_range(ApiKey::ApiVersions).map_or(0, |r| r.max);
        let mut version = max;
        for _ in 0..3 {
            let matched = self.round_trip(version, &request).await?;
            let body = matched.body;
            // Every ApiVersions response starts with its error code. A broker
            // that does not know our version should answer in the v0 format,
            // listing its own range; if that answer does not parse (some
            // brokers answer in a hybrid format), fall back to v0, which every
            // broker speaks.
            let code = body
                .get(..2)
                .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]));
            if code == KafkaCode::UNSUPPORTED_VERSION.code() && version > 0 {
                let theirs = decode_body::<ApiVersionsResponse>(ApiKey::ApiVersions, 0, body)
                    .ok()
                    .and_then(|r| {
                        r.api_keys
                            .iter()
                            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                            .map(|k| k.max_version)
                    });
                version = theirs.filter(|v| *v < version).unwrap_or(0).clamp(0, max);
                continue;
            }
            let response: ApiVersionsResponse = decode_body(ApiKey::ApiVersions, version, body)?;
            if let Some(code) = KafkaCode::from_i16(response.error_code) {
                return Err(Error::broker(
                    code,
                    format_args!("ApiVersions from {}", self.shared.label),
                ));
            }
            return Ok(NegotiatedVersions::negotiate(response.api_keys.iter().map(
                |k| (k.api_key, VersionRange::new(k.min_version, k.max_version)),
            )));
        }
        Err(Error::new(
            ErrorKind::UnsupportedApi,
            format!(
                "{} refused every ApiVersions version offered",
                self.shared.label
            ),
        ))
    }

    /// The versions negotiated with this broker.
    pub(crate) fn versions(&self) -> &NegotiatedVersions {
        &self.versions
    }

    /// Sends `request` at the negotiated version and decodes its response.
    pub(crate) async fn send<R: ApiRequest>(&self, request: &R) -> Result<R::Response, Error> {
        let version = self.versions.require(R::KEY)?;
        let matched = self.round_trip(version, request).await?;
        decode_response::<R>(version, matched.body)
    }

    /// Like [`send`](Self::send), with a longer wait than the request
    /// timeout for a request the broker answers late by design (JoinGroup
    /// is held until the group's rebalance completes). The wait is never
    /// shorter than the connection's request timeout.
    pub(crate) async fn send_waiting<R: ApiRequest>(
        &self,
        request: &R,
        wait: Duration,
    ) -> Result<R::Response, Error> {
        let (version, body) = self.exchange_waiting(request, wait).await?;
        decode_response::<R>(version, body)
    }

    /// Like [`send_waiting`](Self::send_waiting), returning the version
    /// and the response body undecoded.
    pub(crate) async fn exchange_waiting<R: ApiRequest>(
        &self,
        request: &R,
        wait: Duration,
    ) -> Result<(i16, bytes::Bytes), Error> {
        let version = self.versions.require(R::KEY)?;
        let mut pending = self.start_at(version, request)?;
        pending.request_timeout = pending.request_timeout.max(wait);
        let matched = pending.wait_matched().await?;
        Ok((version, matched.body))
    }

    /// Writes `request` at the negotiated version without waiting for a
    /// response: Produce with acks = 0, which the broker never answers.
    pub(crate) fn send_without_response<R: ApiRequest>(&self, request: &R) -> Result<(), Error> {
        let version = self.versions.require(R::KEY)?;
        let mut inner = self.shared.lock();
        if let Some(reason) = inner.refusal() {
            return Err(reason);
        }
        let frame = inner.encode(version, request, false)?;
        if !inner.submit(frame, None, self.reauth) {
            drop(inner);
            let reason = Error::new(
                ErrorKind::Io,
                format!("connection to {} is closed", self.shared.label),
            );
            self.shared.close(reason.clone_shallow());
            return Err(reason);
        }
        Ok(())
    }

    /// Writes `request` at `version` and waits for its matched response,
    /// closing the connection if the request timeout passes first.
    pub(crate) async fn round_trip<R: ApiRequest>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<MatchedResponse, Error> {
        self.start_at(version, request)?.wait_matched().await
    }

    /// Queues `request` at the negotiated version for writing, now: the
    /// order of `begin` calls is the order on the wire. The response is
    /// awaited separately with [`PendingResponse::wait`], so a caller can
    /// queue many requests in order without waiting for each answer.
    /// An error means the request was not queued (nothing was written).
    pub(crate) fn begin<R: ApiRequest>(&self, request: &R) -> Result<PendingResponse<R>, Error> {
        let version = self.versions.require(R::KEY)?;
        self.start_at(version, request)
    }

    fn start_at<R: ApiRequest>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<PendingResponse<R>, Error> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.shared.lock();
        if let Some(reason) = inner.refusal() {
            return Err(reason);
        }
        let frame = inner.encode(version, request, true)?;
        // Sending while holding the lock keeps write order equal to
        // queue order.
        if !inner.submit(frame, Some(tx), self.reauth) {
            drop(inner);
            let reason = Error::new(
                ErrorKind::Io,
                format!("connection to {} is closed", self.shared.label),
            );
            self.shared.close(reason.clone_shallow());
            return Err(reason);
        }
        Ok(PendingResponse {
            rx,
            version,
            shared: Arc::clone(&self.shared),
            request_timeout: self.request_timeout,
            _request: std::marker::PhantomData,
        })
    }

    /// Whether the connection has been closed (by either side or an error).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// A second handle on this connection for its re-authentication task:
    /// its requests are written while others are held back, and dropping
    /// it leaves the connection open.
    pub(crate) fn reauthenticator(&self) -> BrokerConnection {
        BrokerConnection {
            shared: Arc::clone(&self.shared),
            versions: self.versions.clone(),
            request_timeout: self.request_timeout,
            reauth: true,
        }
    }

    /// Ties `task` to the connection: it is aborted when the connection
    /// closes (at once if it already has).
    pub(crate) fn adopt_task(&self, task: JoinHandle<()>) {
        let abort = task.abort_handle();
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        // `close` marks the connection closed before it aborts the tasks:
        // a task pushed after that is aborted here.
        if self.is_closed() {
            abort.abort();
        }
    }

    /// Starts holding requests back (they are queued, not written) and
    /// waits until every request already written has been answered.
    pub(crate) async fn hold_requests(&self) {
        self.shared.lock().held.get_or_insert_with(VecDeque::new);
        loop {
            let drained = self.shared.drained.notified();
            if self.shared.lock().replies.is_empty() {
                return;
            }
            drained.await;
        }
    }

    /// Ends a re-authentication: on success writes the held requests, in
    /// order, and returns true; on failure, or when the stream ended
    /// meanwhile, closes the connection (failing the held requests with
    /// the reason) and returns false.
    pub(crate) fn finish_reauthentication(&self, outcome: Result<(), Error>) -> bool {
        let failure = {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() {
                return false;
            }
            let failure = match outcome {
                Ok(()) => inner.ended.take(),
                Err(error) => Some(error),
            };
            match failure {
                None if inner.release() => return true,
                None => Error::new(
                    ErrorKind::Io,
                    format!("connection to {} is closed", self.shared.label),
                ),
                Some(error) => error,
            }
        };
        self.shared.close(failure);
        false
    }

    /// Closes the connection, failing anything still waiting.
    pub(crate) fn close(&self) {
        self.shared.close(Error::new(
            ErrorKind::Closed,
            format!("connection to {} closed by the client", self.shared.label),
        ));
    }
}

/// A request written (or queued for writing) on a connection, whose
/// response has not been read yet.
pub(crate) struct PendingResponse<R> {
    rx: oneshot::Receiver<Result<MatchedResponse, Error>>,
    version: i16,
    shared: Arc<Shared>,
    request_timeout: Duration,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: ApiRequest> PendingResponse<R> {
    /// Waits for the response and decodes it; closes the connection when
    /// the request timeout passes first (a late answer would be mismatched).
    pub(crate) async fn wait(self) -> Result<R::Response, Error> {
        let version = self.version;
        let matched = self.wait_matched().await?;
        decode_response::<R>(version, matched.body)
    }

    async fn wait_matched(self) -> Result<MatchedResponse, Error> {
        match tokio::time::timeout(self.request_timeout, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Io,
                format!("connection to {} closed", self.shared.label),
            )),
            Err(_) => {
                let err = Error::request_timeout(
                    format_args!("{:?} to {}", R::KEY, self.shared.label),
                    self.request_timeout,
                );
                self.shared.close(err.clone_shallow());
                Err(err)
            }
        }
    }
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        if !self.reauth {
            self.close();
        }
    }
}
