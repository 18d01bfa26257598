//! A Fetch answered and decoded on a task of its own.
//!
//! The reader writes a broker's Fetch as soon as it has handed out the
//! records of the last one, so the broker works while the application
//! processes them; the answer is decompressed and decoded on the runtime's
//! worker threads, not on the task that polls. Each broker's answer is
//! taken as soon as it is in ([`any_answered`]), so a slow broker never
//! holds back the others. Nothing here moves a
//! position: each decoded partition carries the offset it was fetched at,
//! and the reader uses it only if its position is still there (a seek, a
//! pause or a rebalance meanwhile makes it stale, and it is dropped).
//!
//! The answer's session fields travel with the decoded partitions, for the
//! reader to hand to the broker's fetch session when it uses the answer;
//! an answer dropped unread leaves the session as the request left it.
//!
//! Memory is bounded by one Fetch response per broker (`fetch_max_bytes`),
//! as the decoded records of one partition are bounded by that budget.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::aborted::AbortedFilter;
use super::decode::{Decoded, decode_partition};
use super::fetcher::{FetchedPartition, InFlightFetch, SessionReply};
use super::reader_config::IsolationLevel;
use crate::error::Error;
use crate::record_batch::ReadOptions;

/// A partition by topic and number.
pub(crate) type TopicPartition = (crate::record::Topic, i32);

/// One partition of an answered Fetch.
pub(crate) struct Answered {
    /// What the broker said, its record bytes already decoded (and
    /// released).
    pub(crate) fetched: FetchedPartition,
    /// The records, decoded from the offset asked, when the broker sent
    /// no error for the partition.
    pub(crate) decoded: Option<Decoded>,
}

/// A decoded answer: its session fields and its partitions.
pub(crate) struct Reply {
    /// What the answer says of the fetch session.
    pub(crate) session: SessionReply,
    /// The partitions asked for that the answer names, decoded.
    pub(crate) partitions: Vec<Answered>,
}

/// How the records of an answer are decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeSettings {
    pub(crate) isolation: IsolationLevel,
    pub(crate) options: ReadOptions,
    /// Decoded record bytes at most, over the whole answer.
    pub(crate) budget: usize,
}

/// A Fetch written to one broker, answered and decoded on its own task.
pub(crate) struct PendingFetch {
    node: i32,
    asked: BTreeMap<TopicPartition, i64>,
    task: JoinHandle<Result<Reply, Error>>,
    /// The task's outcome once it finished, kept until taken, so that a
    /// wait dropped after the task finished loses nothing.
    outcome: Option<Result<Reply, Error>>,
}

impl PendingFetch {
    /// Waits for `fetch` (which asked for the partitions and offsets in
    /// `asked`) and decodes its answer, on a task of its own.
    pub(crate) fn spawn(
        fetch: InFlightFetch,
        asked: BTreeMap<TopicPartition, i64>,
        settings: DecodeSettings,
    ) -> PendingFetch {
        let node = fetch.broker();
        let offsets = asked.clone();
        let task = tokio::spawn(async move {
            let answer = fetch.wait().await?;
            Ok(Reply {
                session: answer.session,
                partitions: decode_all(answer.partitions, &offsets, settings),
            })
        });
        PendingFetch {
            node,
            asked,
            task,
            outcome: None,
        }
    }

    /// The broker asked.
    pub(crate) fn node(&self) -> i32 {
        self.node
    }

    /// Whether this Fetch asked for exactly these offsets of each of
    /// `targets` (it may have asked for more partitions).
    pub(crate) fn covers(&self, targets: impl IntoIterator<Item = (TopicPartition, i64)>) -> bool {
        targets
            .into_iter()
            .all(|(key, offset)| self.asked.get(&key) == Some(&offset))
    }

    /// The offset this Fetch asked for a partition.
    pub(crate) fn offset_asked(&self, key: &TopicPartition) -> Option<i64> {
        self.asked.get(key).copied()
    }

    /// Whether the answer is in (decoded, or failed): polls the task, and
    /// keeps its outcome for [`take_answer`](Self::take_answer).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.outcome.is_some() {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(joined) => {
                self.outcome = Some(joined.unwrap_or_else(|join| {
                    Err(Error::new(
                        crate::error::ErrorKind::Io,
                        format!("the fetch from broker {} was lost: {join}", self.node),
                    ))
                }));
                Poll::Ready(())
            }
        }
    }

    /// The answer, if it is in.
    pub(crate) fn take_answer(&mut self) -> Option<Result<Reply, Error>> {
        if self.outcome.is_none() && self.task.is_finished() {
            // Finished: the poll is ready at once.
            let waker = std::task::Waker::noop();
            let _ = self.poll_answer(&mut Context::from_waker(waker));
        }
        self.outcome.take()
    }
}

/// Waits until at least one of `pending` is answered or `deadline`
/// passes; whether one was. Nothing is taken out of `pending`, so a wait
/// that is dropped loses nothing.
pub(crate) async fn any_answered(
    pending: &mut [PendingFetch],
    deadline: tokio::time::Instant,
) -> bool {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    std::future::poll_fn(|cx| {
        let mut any = false;
        for fetch in pending.iter_mut() {
            any |= fetch.poll_answer(cx).is_ready();
        }
        if any {
            Poll::Ready(true)
        } else if sleep.as_mut().poll(cx).is_ready() {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    })
    .await
}

impl Drop for PendingFetch {
    fn drop(&mut self) {
        // Not waited for: nothing of it is used.
        self.task.abort();
    }
}

/// Decodes every error-free partition of an answer from the offset asked.
fn decode_all(
    partitions: Vec<FetchedPartition>,
    asked: &BTreeMap<TopicPartition, i64>,
    settings: DecodeSettings,
) -> Vec<Answered> {
    let mut budget = settings.budget;
    partitions
        .into_iter()
        .map(|mut fetched| {
            let position = asked
                .get(&(fetched.topic.clone(), fetched.partition))
                .copied();
            let decoded = match (fetched.error, position) {
                (None, Some(position)) => {
                    let mut filter = match settings.isolation {
                        IsolationLevel::ReadCommitted => {
                            AbortedFilter::read_committed(fetched.aborted.iter().copied())
                        }
                        IsolationLevel::ReadUncommitted => AbortedFilter::read_uncommitted(),
                    };
                    let decoded = decode_partition(
                        &fetched.topic,
                        fetched.partition,
                        position,
                        &fetched.records,
                        &mut filter,
                        settings.options,
                        budget,
                    );
                    budget = budget.saturating_sub(decoded.bytes);
                    Some(decoded)
                }
                _ => None,
            };
            fetched.records = bytes::Bytes::new();
            Answered { fetched, decoded }
        })
        .collect()
}
