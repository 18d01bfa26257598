//! The Produce path to the brokers: per broker, one ordered queue of the
//! engine's Produce requests, written in the order the engine drained them
//! (idempotent sequences depend on it) without waiting for an answer before
//! the next, and the answers handed back in that same order.
//!
//! ```text
//!   driver ──send(node, job)──▶ ProduceQueues
//!                                 │ idle queue, connection open: written at once
//!                                 │ otherwise: the broker's dispatch task
//!                                 ▼   (compresses first, with an Outbound)
//!                          BrokerConnection ──answers in write order──▶ forward_answers
//!                                                                          │
//!   driver ◀────────────── Response::Produce / Response::WireSizes ◀───────┘
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;

use crate::engine::SendFailure;
use crate::error::{Error, ErrorKind};
use crate::net::connection::{BrokerConnection, PendingResponse};
use crate::net::pool::BrokerPool;
use crate::producer::runtime::outbound::Outbound;
use crate::producer::runtime::response::Response;

/// Every broker's Produce queue, made on first use.
pub(crate) struct ProduceQueues {
    queues: BTreeMap<i32, ProduceQueue>,
    connections: Arc<BrokerPool>,
    responses: mpsc::UnboundedSender<Response>,
    /// The codec batches are compressed with on the way out, if any.
    outbound: Option<Outbound>,
}

impl ProduceQueues {
    /// Queues over `connections`, reporting to `responses`, compressing
    /// with `outbound`.
    pub(crate) fn new(
        connections: Arc<BrokerPool>,
        responses: mpsc::UnboundedSender<Response>,
        outbound: Option<Outbound>,
    ) -> Self {
        ProduceQueues {
            queues: BTreeMap::new(),
            connections,
            responses,
            outbound,
        }
    }

    /// Sends `job` to broker `node`, after every job sent to it before.
    /// Its answer comes back as [`Response::Produce`] (after a
    /// [`Response::WireSizes`] when it was compressed here).
    pub(crate) fn send(&mut self, node: i32, job: ProduceJob) {
        let outbound = self.outbound;
        let connections = &self.connections;
        let responses = &self.responses;
        let queue = self.queues.entry(node).or_insert_with(|| {
            let (jobs, rx) = mpsc::unbounded_channel();
            let (answers, answers_rx) = mpsc::unbounded_channel();
            let busy = Arc::new(AtomicUsize::new(0));
            tokio::spawn(forward_answers(answers_rx, responses.clone()));
            tokio::spawn(dispatch_produce(
                node,
                rx,
                Arc::clone(connections),
                responses.clone(),
                answers.clone(),
                outbound,
                Arc::clone(&busy),
            ));
            ProduceQueue {
                jobs,
                answers,
                busy,
            }
        });
        // Nothing to compress, nothing queued before it and the connection
        // open: write it from here, which saves a hop through the dispatch
        // task (encoding a Produce request copies no batch, so it costs the
        // caller little). Only this method adds jobs, so an idle queue stays
        // idle until it returns.
        if outbound.is_none()
            && queue.busy.load(Ordering::Acquire) == 0
            && let Some(conn) = connections.cached(node)
        {
            write_produce(&conn, &job, &queue.answers);
            return;
        }
        queue.busy.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(job)) = queue.jobs.send(job) {
            queue.busy.fetch_sub(1, Ordering::AcqRel);
            let failure =
                SendFailure::unwritten(Error::new(ErrorKind::Closed, "the producer is closing"));
            let _ = responses.send(Response::Produce {
                id: job.id,
                result: Err(failure),
            });
        }
    }
}

/// A Produce request on its way to one broker.
pub(crate) struct ProduceJob {
    /// The engine's request id.
    pub(crate) id: u64,
    /// The broker's address.
    pub(crate) addr: String,
    /// The request, compressed on the way out when the engine leaves that
    /// to the dispatch.
    pub(crate) request: ProduceRequest,
    /// Whether the broker answers (acks other than 0).
    pub(crate) expects_response: bool,
}

/// The answer to one Produce request, in the order the requests were
/// written to the broker.
enum Answer {
    /// Written; the broker's answer is still to come.
    Awaited(u64, PendingResponse<ProduceRequest>),
    /// Known already (not written, or written without an answer).
    Ready(u64, Result<ProduceResponse, SendFailure>),
}

/// Hands one broker's Produce answers to the driver in the order their
/// requests were written. The broker answers in that order on a
/// connection; awaiting them one by one keeps it, so the records of a
/// partition are reported in send order (a task per answer would race).
async fn forward_answers(
    mut answers: mpsc::UnboundedReceiver<Answer>,
    responses: mpsc::UnboundedSender<Response>,
) {
    while let Some(answer) = answers.recv().await {
        let (id, result) = match answer {
            Answer::Awaited(id, pending) => (
                id,
                pending.wait().await.map_err(|error| SendFailure {
                    // A connection re-authenticates only once every request
                    // written before has been answered, and holds back the
                    // ones that come meanwhile: a request that fails with
                    // the re-authentication's refusal was never written.
                    written: !matches!(error.kind(), ErrorKind::Authentication),
                    error,
                }),
            ),
            Answer::Ready(id, result) => (id, result),
        };
        let _ = responses.send(Response::Produce { id, result });
    }
}

/// Writes one broker's Produce requests in the order the engine drained
/// them (idempotent sequences depend on it), without waiting for one answer
/// before writing the next; the answers go through `answers`, in order.
async fn dispatch_produce(
    node: i32,
    mut jobs: mpsc::UnboundedReceiver<ProduceJob>,
    connections: Arc<BrokerPool>,
    responses: mpsc::UnboundedSender<Response>,
    answers: mpsc::UnboundedSender<Answer>,
    outbound: Option<Outbound>,
    busy: Arc<AtomicUsize>,
) {
    while let Some(mut job) = jobs.recv().await {
        let id = job.id;
        if let Some(outbound) = outbound {
            match outbound.compress(std::mem::take(&mut job.request)).await {
                Ok((request, sizes)) => {
                    job.request = request;
                    if !sizes.is_empty() {
                        let _ = responses.send(Response::WireSizes { id, sizes });
                    }
                }
                Err(error) => {
                    let failure = SendFailure::unwritten(error);
                    let _ = answers.send(Answer::Ready(id, Err(failure)));
                    busy.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
            }
        }
        match connections.connect_at(node, &job.addr).await {
            Ok(conn) => write_produce(&conn, &job, &answers),
            Err(error) => {
                let failure = SendFailure::unwritten(error);
                let _ = answers.send(Answer::Ready(id, Err(failure)));
            }
        }
        // Done with this job: the driver may write directly again once
        // nothing is queued here.
        busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Queues one Produce request on `conn`; its answer joins `answers`.
fn write_produce(
    conn: &BrokerConnection,
    job: &ProduceJob,
    answers: &mpsc::UnboundedSender<Answer>,
) {
    let id = job.id;
    let answer = if !job.expects_response {
        let result = conn
            .send_without_response(&job.request)
            .map(|()| ProduceResponse::default())
            .map_err(|error| SendFailure {
                error,
                written: true,
            });
        Answer::Ready(id, result)
    } else {
        match conn.begin(&job.request) {
            Ok(pending) => Answer::Awaited(id, pending),
            // Not queued on the connection: nothing was written.
            Err(error) => Answer::Ready(id, Err(SendFailure::unwritten(error))),
        }
    };
    let _ = answers.send(answer);
}

/// One broker's dispatch queue.
struct ProduceQueue {
    jobs: mpsc::UnboundedSender<ProduceJob>,
    /// The broker's answers, in write order (see `forward_answers`).
    answers: mpsc::UnboundedSender<Answer>,
    busy: Arc<AtomicUsize>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use protocol_tests::{FakeCluster, Fault};

    use super::*;
    use crate::client_config::ClientConfig;
    use crate::compression::Compression;
    use crate::record_batch::{BatchBuilder, BatchConfig};

    const TOPIC: &str = "events";

    /// A Produce request carrying one batch of one record, `value`, for
    /// partition 0 of [`TOPIC`].
    fn request(value: &str, acks: i16) -> ProduceRequest {
        let mut builder = BatchBuilder::new(BatchConfig::default(), 1_000);
        let appended = builder
            .try_append(1_000, None, Some(value.as_bytes()), &[])
            .expect("a valid record");
        assert!(matches!(
            appended,
            crate::record_batch::AppendOutcome::Appended
        ));
        let batch = builder.seal().expect("one record");
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.bytes().clone())),
                    ]),
            ])
    }

    /// A one-broker cluster, its broker's id and address, and queues over a
    /// pool of it (compressing with `outbound`) with the channel they
    /// report on.
    async fn queues(
        outbound: Option<Outbound>,
    ) -> (
        FakeCluster,
        i32,
        String,
        ProduceQueues,
        mpsc::UnboundedReceiver<Response>,
    ) {
        let cluster = FakeCluster::builder().topic(TOPIC, 1).build().await;
        let (node, addr) = cluster.broker_addrs()[0];
        let pool = BrokerPool::new(
            ClientConfig::new(&cluster.bootstrap_servers()),
            Duration::from_millis(100),
        )
        .expect("a pool");
        let (responses, rx) = mpsc::unbounded_channel();
        let queues = ProduceQueues::new(pool, responses, outbound);
        (cluster, node, addr.to_string(), queues, rx)
    }

    fn job(id: u64, addr: &str, acks: i16) -> ProduceJob {
        ProduceJob {
            id,
            addr: addr.to_string(),
            // Padded so that compression pays: `values` takes the padding
            // off again.
            request: request(&format!("v{id}{}", "x".repeat(1000)), acks),
            expects_response: acks != 0,
        }
    }

    /// The next report, within 10 s.
    async fn next(rx: &mut mpsc::UnboundedReceiver<Response>) -> Response {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a report within 10 s")
            .expect("the channel is open")
    }

    fn values(cluster: &FakeCluster) -> Vec<String> {
        cluster
            .records(TOPIC, 0)
            .iter()
            .map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                    .trim_end_matches('x')
                    .to_string()
            })
            .collect()
    }

    /// The first answer is held back by the broker; the others, written
    /// behind it on the same connection, are still reported after it, in
    /// write order, and the log holds the records in that order.
    #[tokio::test]
    async fn answers_come_back_in_write_order() {
        let (cluster, node, addr, mut queues, mut rx) = queues(None).await;
        cluster.inject(
            Fault::new(ApiKey::Produce)
                .delay(Duration::from_millis(300))
                .times(1),
        );
        for id in 1..=20 {
            queues.send(node, job(id, &addr, -1));
        }
        let mut answered = Vec::new();
        while answered.len() < 20 {
            match next(&mut rx).await {
                Response::Produce { id, result } => {
                    let response = result.expect("every request is answered");
                    let code = response.responses[0].partition_responses[0].error_code;
                    assert_eq!(code, 0, "request {id} refused");
                    answered.push(id);
                }
                _ => panic!("only Produce answers are reported"),
            }
        }
        assert_eq!(answered, (1..=20).collect::<Vec<_>>());
        let expected: Vec<String> = (1..=20).map(|id| format!("v{id}")).collect();
        assert_eq!(values(&cluster), expected);
    }

    /// Once the connection is open and nothing is queued, requests are
    /// written by the caller directly; their answers keep write order too.
    #[tokio::test]
    async fn direct_writes_keep_write_order() {
        let (cluster, node, addr, mut queues, mut rx) = queues(None).await;
        queues.send(node, job(1, &addr, -1));
        assert!(matches!(
            next(&mut rx).await,
            Response::Produce {
                id: 1,
                result: Ok(_)
            }
        ));
        cluster.inject(
            Fault::new(ApiKey::Produce)
                .delay(Duration::from_millis(300))
                .times(1),
        );
        for id in 2..=6 {
            queues.send(node, job(id, &addr, -1));
        }
        for expected in 2..=6 {
            match next(&mut rx).await {
                Response::Produce { id, result } => {
                    assert_eq!(id, expected);
                    result.expect("answered");
                }
                _ => panic!("only Produce answers are reported"),
            }
        }
        assert_eq!(values(&cluster), ["v1", "v2", "v3", "v4", "v5", "v6"]);
    }

    /// Without acks the broker sends nothing back: the request is reported
    /// as written at once, and the record still reaches the log.
    #[tokio::test]
    async fn acks_zero_is_reported_once_written() {
        let (cluster, node, addr, mut queues, mut rx) = queues(None).await;
        queues.send(node, job(1, &addr, 0));
        match next(&mut rx).await {
            Response::Produce { id: 1, result } => {
                result.expect("written");
            }
            _ => panic!("request 1's report"),
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while values(&cluster).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(values(&cluster), ["v1"]);
    }

    /// A broker nothing listens for: the request fails as never written, so
    /// the engine may retry it without risking a duplicate.
    #[tokio::test]
    async fn an_unreachable_broker_fails_the_request_unwritten() {
        let (_cluster, _node, _addr, mut queues, mut rx) = queues(None).await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = closed.local_addr().expect("its address").to_string();
        drop(closed);
        queues.send(7, job(1, &addr, -1));
        match next(&mut rx).await {
            Response::Produce { id: 1, result } => {
                let failure = result.expect_err("nothing listens");
                assert!(!failure.written, "{failure:?}");
            }
            _ => panic!("request 1's report"),
        }
    }

    /// Compressed on the way out: the batch sizes as written are reported
    /// before the answer, and the log holds the records as sent.
    #[tokio::test]
    async fn compressed_requests_report_their_wire_sizes_first() {
        let outbound = Outbound {
            codec: Compression::Lz4,
            level: None,
        };
        let (cluster, node, addr, mut queues, mut rx) = queues(Some(outbound)).await;
        for id in 1..=3 {
            queues.send(node, job(id, &addr, -1));
        }
        let mut sized = Vec::new();
        let mut answered = Vec::new();
        while answered.len() < 3 {
            match next(&mut rx).await {
                Response::WireSizes { id, sizes } => {
                    assert!(!answered.contains(&id), "sizes of {id} after its answer");
                    assert_eq!(sizes.len(), 1, "one batch: {sizes:?}");
                    sized.push(id);
                }
                Response::Produce { id, result } => {
                    result.expect("answered");
                    answered.push(id);
                }
                _ => panic!("only Produce reports"),
            }
        }
        assert_eq!(sized, [1, 2, 3]);
        assert_eq!(answered, [1, 2, 3]);
        assert_eq!(values(&cluster), ["v1", "v2", "v3"]);
    }
}
