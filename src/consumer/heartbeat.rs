//! The heartbeat task of a group member: one tokio task per generation
//! that sends Heartbeat every `heartbeat_interval` on the coordinator's
//! connection and watches `max_poll_interval`, so the member stays in the
//! group while the application processes records between polls.
//!
//! The task never changes the assignment itself: it raises [`Signals`]
//! that the next `poll` acts on (rejoin, partitions lost, coordinator to
//! find again, a fatal error), and wakes a `poll` that is waiting for
//! records. When the application has not polled for `max_poll_interval`,
//! a dynamic member leaves the group (LeaveGroup, as Java) and the next
//! `poll` rejoins as a new member; a static member stops heartbeating and
//! is removed when its session times out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::coordinator::{Coordinator, GroupIdentity, heartbeat};
use super::membership::{Reaction, reaction};
use crate::clock;
use crate::error::Error;

/// What the heartbeat task tells the next `poll`.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// A rebalance is under way: join again.
    pub(crate) rejoin: bool,
    /// The generation ended (`ResetGeneration`) or the member was removed
    /// (`ResetMember`): partitions lost.
    pub(crate) reset: Option<Reaction>,
    /// The member left because `poll` was not called in time.
    pub(crate) poll_timeout: bool,
    /// No retry helps.
    pub(crate) fatal: Option<Error>,
}

/// Shared between the consumer and its heartbeat task.
#[derive(Debug)]
pub(crate) struct Signals {
    pending: Mutex<Pending>,
    last_poll: Mutex<Instant>,
    /// Woken when something is pending.
    pub(crate) wake: Notify,
}

impl Signals {
    pub(crate) fn new() -> Arc<Signals> {
        Arc::new(Signals {
            pending: Mutex::new(Pending::default()),
            last_poll: Mutex::new(clock::now()),
            wake: Notify::new(),
        })
    }

    /// Records that the application polled now.
    pub(crate) fn polled(&self) {
        *lock(&self.last_poll) = clock::now();
    }

    fn since_poll(&self) -> Duration {
        lock(&self.last_poll).elapsed()
    }

    /// Takes what is pending, leaving nothing.
    pub(crate) fn take(&self) -> Pending {
        std::mem::take(&mut *lock(&self.pending))
    }

    fn raise(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut lock(&self.pending));
        self.wake.notify_waiters();
        self.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The settings the task runs with.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatPlan {
    pub(crate) identity: GroupIdentity,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) interval: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) retry_backoff: Duration,
}

/// Starts the heartbeat task of one generation; abort the handle when the
/// generation ends.
pub(crate) fn spawn(
    coordinator: Coordinator,
    plan: HeartbeatPlan,
    signals: Arc<Signals>,
) -> JoinHandle<()> {
    tokio::spawn(run(coordinator, plan, signals))
}

async fn run(mut coordinator: Coordinator, plan: HeartbeatPlan, signals: Arc<Signals>) {
    let mut last_ok = clock::now();
    let mut delay = plan.interval;
    loop {
        tokio::time::sleep(delay).await;
        delay = plan.interval;
        if signals.since_poll() > plan.max_poll_interval {
            tracing::warn!(
                group = %plan.identity.group,
                member = %plan.member_id,
                max_poll_interval = ?plan.max_poll_interval,
                "poll was not called within max_poll_interval: the member leaves the group \
                 (processing between polls takes too long; raise max_poll_interval or lower \
                 max_poll_records)"
            );
            if plan.identity.instance_id.is_none()
                && let Err(e) = coordinator
                    .leave(&plan.member_id, "consumer poll timeout has expired")
                    .await
            {
                tracing::debug!(error = %e, "LeaveGroup after the poll timeout failed");
            }
            signals.raise(|p| {
                p.poll_timeout = true;
                p.reset = Some(Reaction::ResetMember);
            });
            return;
        }
        let answer = match coordinator.connection().await {
            Ok(conn) => heartbeat(&conn, &plan.identity, plan.generation, &plan.member_id).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(None) => last_ok = clock::now(),
            Ok(Some(code)) => match reaction(code) {
                Reaction::Retry => delay = plan.retry_backoff,
                Reaction::Rediscover => {
                    coordinator.forget();
                    delay = plan.retry_backoff;
                }
                Reaction::Rejoin => {
                    tracing::info!(group = %plan.identity.group, "the group is rebalancing");
                    signals.raise(|p| p.rejoin = true);
                    return;
                }
                r @ (Reaction::ResetGeneration | Reaction::ResetMember) => {
                    tracing::info!(group = %plan.identity.group, %code, "heartbeat: this member's generation ended");
                    signals.raise(|p| p.reset = Some(r));
                    return;
                }
                Reaction::Fatal => {
                    signals.raise(|p| {
                        p.fatal = Some(Error::broker(
                            code,
                            format_args!("heartbeat in group `{}`", plan.identity.group),
                        ));
                    });
                    return;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed; finding the coordinator again");
                coordinator.forget();
                delay = plan.retry_backoff;
                if last_ok.elapsed() > plan.session_timeout {
                    // The coordinator has removed us by now.
                    signals.raise(|p| p.reset = Some(Reaction::ResetMember));
                    return;
                }
            }
        }
    }
}
