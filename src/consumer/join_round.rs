//! One rebalance round of a group member, run as its own task so that a
//! `poll` never waits longer than its timeout for the rest of the group:
//! JoinGroup (again with the member id the coordinator gives, KIP-394),
//! the leader's assignment, SyncGroup, retried until the member has a
//! generation and its assignment or an error no retry helps.
//!
//! The consumer starts a round, and each `poll` waits for it only as long
//! as its timeout allows; revocations before the round and the new
//! assignment after it stay with the consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::assignor::{Assignor, GroupMember};
use super::coordinator::{Coordinator, GroupIdentity, Joined};
use super::membership::{Reaction, reaction};
use crate::admin::AdminClient;
use crate::error::{Error, ErrorKind};
use crate::protocol::KafkaCode;
use crate::protocol::consumer_protocol::Subscription;

/// What a round asks for.
#[derive(Debug, Clone)]
pub(crate) struct RoundPlan {
    pub(crate) identity: GroupIdentity,
    pub(crate) member_id: String,
    /// Assignor names with this member's subscription, most preferred first.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) retry_backoff: Duration,
}

/// A completed round.
#[derive(Debug)]
pub(crate) struct Synced {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    /// The assignment bytes SyncGroup returned (untrusted).
    pub(crate) assignment: Bytes,
    /// The coordinator did not know the member any more during the round
    /// (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION): what it owned is lost.
    pub(crate) lost_membership: bool,
}

/// Starts a round.
pub(crate) fn spawn(
    coordinator: Coordinator,
    plan: RoundPlan,
) -> JoinHandle<Result<Synced, Error>> {
    tokio::spawn(run(coordinator, plan))
}

async fn run(mut coordinator: Coordinator, plan: RoundPlan) -> Result<Synced, Error> {
    let admin = AdminClient::on_pool(Arc::clone(coordinator.pool()));
    let group = plan.identity.group.clone();
    let mut member_id = plan.member_id.clone();
    let mut lost_membership = false;
    let mut late_syncs = 0;
    loop {
        let step = round(&mut coordinator, &admin, &plan, &mut member_id).await;
        let (code, stage) = match step {
            Ok(Ok(mut synced)) => {
                synced.lost_membership |= lost_membership;
                return Ok(synced);
            }
            Ok(Err(failure)) => failure,
            Err(e) if e.is_retriable() => {
                tracing::debug!(%group, error = %e, "joining the group failed; retrying");
                coordinator.forget();
                tokio::time::sleep(plan.retry_backoff).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // A SyncGroup that reaches a group which moved on: librdkafka's mock
        // hands out assignments when the leader's SyncGroup arrives and
        // answers a follower's later one with INVALID_REQUEST (a Kafka
        // broker answers it with the assignment). Join again; a follower
        // on a busy machine can lose that race several times in a row, so
        // only a long run of refusals is an error.
        if code == KafkaCode::INVALID_REQUEST && stage == "SyncGroup" && late_syncs < 10 {
            late_syncs += 1;
            tracing::debug!(%group, "SyncGroup refused as INVALID_REQUEST; joining again");
            continue;
        }
        match reaction(code) {
            Reaction::Rediscover => {
                coordinator.forget();
                tokio::time::sleep(plan.retry_backoff).await;
            }
            Reaction::Retry => tokio::time::sleep(plan.retry_backoff).await,
            Reaction::Rejoin => {}
            Reaction::ResetGeneration => lost_membership = true,
            Reaction::ResetMember => {
                lost_membership = true;
                member_id.clear();
            }
            Reaction::Fatal => {
                return Err(Error::broker(
                    code,
                    format_args!("{stage} in group `{group}`"),
                ));
            }
        }
        tracing::debug!(%group, %code, stage, "rebalance round: joining again");
    }
}

/// One JoinGroup (repeated for MEMBER_ID_REQUIRED) and SyncGroup.
async fn round(
    coordinator: &mut Coordinator,
    admin: &AdminClient,
    plan: &RoundPlan,
    member_id: &mut String,
) -> Result<Result<Synced, (KafkaCode, &'static str)>, Error> {
    let joined = loop {
        let answer = coordinator
            .join(
                member_id,
                &plan.protocols,
                plan.session_timeout,
                plan.rebalance_timeout,
            )
            .await?;
        match answer {
            Ok(joined) => break joined,
            // KIP-394: join again with the id the coordinator gave.
            Err((KafkaCode::MEMBER_ID_REQUIRED, id)) if !id.is_empty() => *member_id = id,
            Err((code, _)) => return Ok(Err((code, "JoinGroup"))),
        }
    };
    *member_id = joined.member_id.clone();
    let leader = joined.leader == joined.member_id;
    tracing::info!(
        group = %plan.identity.group,
        member = %joined.member_id,
        generation = joined.generation,
        leader,
        protocol = joined.protocol.as_deref().unwrap_or(""),
        "joined the group"
    );
    let assignments = if leader {
        assign_as_leader(admin, &plan.identity.group, &joined).await?
    } else {
        Vec::new()
    };
    let answer = coordinator
        .sync(
            joined.generation,
            &joined.member_id,
            joined.protocol.as_deref(),
            assignments,
            plan.rebalance_timeout,
        )
        .await?;
    Ok(match answer {
        Ok(assignment) => Ok(Synced {
            member_id: joined.member_id,
            generation: joined.generation,
            protocol: joined.protocol,
            assignment,
            lost_membership: false,
        }),
        Err(code) => Err((code, "SyncGroup")),
    })
}

/// The leader's part: every member's subscription in, an assignment per
/// member out, with the assignor the group chose.
async fn assign_as_leader(
    admin: &AdminClient,
    group: &str,
    joined: &Joined,
) -> Result<Vec<(String, Bytes)>, Error> {
    let name = joined.protocol.clone().unwrap_or_default();
    let assignor = Assignor::from_name(&name).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            format!("group `{group}` chose assignor `{name}`, which this member did not offer"),
        )
    })?;
    let mut members = Vec::with_capacity(joined.members.len());
    let mut topics: BTreeSet<String> = BTreeSet::new();
    for (member_id, instance_id, metadata) in &joined.members {
        let subscription = match Subscription::decode(metadata) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(member = %member_id, error = %e, "a member's subscription does not decode; it gets nothing");
                Subscription::default()
            }
        };
        topics.extend(subscription.topics.iter().cloned());
        members.push(GroupMember {
            member_id: member_id.clone(),
            group_instance_id: instance_id.clone(),
            subscription,
        });
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let metadata = admin.metadata(Some(&names)).await?;
    let partitions: BTreeMap<String, i32> = metadata
        .topics
        .values()
        .filter(|t| topics.contains(&t.name) && t.error.is_none() && !t.partitions.is_empty())
        .map(|t| {
            (
                t.name.clone(),
                i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
            )
        })
        .collect();
    let plan = assignor.assign(&members, &partitions);
    tracing::debug!(%group, ?plan, "assigned the group's partitions");
    Ok(plan
        .into_iter()
        .map(|(member, assignment)| (member, assignment.encode()))
        .collect())
}
