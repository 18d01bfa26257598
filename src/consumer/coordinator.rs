//! The group's requests to its coordinator: FindCoordinator (through the
//! [`AdminClient`]), JoinGroup, SyncGroup, Heartbeat, LeaveGroup and
//! OffsetCommit, each built at the version negotiated with the
//! coordinator, on the client's one [`BrokerPool`].
//!
//! This module only speaks: it returns the broker's error codes as they
//! come, and [`super::membership::reaction`] decides what they mean.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::AdminClient;
use crate::error::Error;
use crate::group::OffsetToCommit;
use crate::net::connection::BrokerConnection;
use crate::net::pool::BrokerPool;
use crate::protocol::{KafkaCode, decode_response};

/// The protocol type of consumer groups.
const CONSUMER: &str = "consumer";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Who is asking: the group, and this member's static instance id.
#[derive(Debug, Clone)]
pub(crate) struct GroupIdentity {
    pub(crate) group: String,
    pub(crate) instance_id: Option<String>,
}

/// A JoinGroup answer.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) generation: i32,
    pub(crate) member_id: String,
    pub(crate) leader: String,
    pub(crate) protocol: Option<String>,
    /// Every member's id, instance id and metadata; only for the leader.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

/// The coordinator connection of one group member.
#[derive(Debug)]
pub(crate) struct Coordinator {
    admin: AdminClient,
    identity: GroupIdentity,
    conn: Option<(i32, Arc<BrokerConnection>)>,
}

impl Coordinator {
    pub(crate) fn new(pool: Arc<BrokerPool>, identity: GroupIdentity) -> Coordinator {
        Coordinator {
            admin: AdminClient::on_pool(pool),
            identity,
            conn: None,
        }
    }

    /// Another handle on the same pool and group that starts from this
    /// one's coordinator connection, for a task of its own (heartbeats, a
    /// rebalance round, an asynchronous commit), so the task does not look
    /// the coordinator up again.
    pub(crate) fn fork(&self) -> Coordinator {
        Coordinator {
            admin: AdminClient::on_pool(Arc::clone(self.admin.pool())),
            identity: self.identity.clone(),
            conn: self.conn.clone(),
        }
    }

    /// The pool the coordinator's connections come from.
    pub(crate) fn pool(&self) -> &Arc<BrokerPool> {
        self.admin.pool()
    }

    pub(crate) fn identity(&self) -> &GroupIdentity {
        &self.identity
    }

    /// The connection to the group's coordinator, found if not known.
    pub(crate) async fn connection(&mut self) -> Result<Arc<BrokerConnection>, Error> {
        if let Some((_, conn)) = &self.conn
            && !conn.is_closed()
        {
            return Ok(Arc::clone(conn));
        }
        self.conn = None;
        let node = self.admin.find_coordinator(&self.identity.group).await?;
        let conn = self.admin.pool().connection(node).await?;
        tracing::debug!(group = %self.identity.group, coordinator = node, "found the group coordinator");
        self.conn = Some((node, Arc::clone(&conn)));
        Ok(conn)
    }

    /// Forgets the coordinator (it moved or went down).
    pub(crate) fn forget(&mut self) {
        self.conn = None;
    }

    /// JoinGroup; the broker holds the answer until the rebalance
    /// completes, up to `rebalance_timeout`.
    pub(crate) async fn join(
        &mut self,
        member_id: &str,
        protocols: &[(String, Bytes)],
        session_timeout: Duration,
        rebalance_timeout: Duration,
    ) -> Result<Result<Joined, (KafkaCode, String)>, Error> {
        let conn = self.connection().await?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(&self.identity.group)))
            .with_session_timeout_ms(millis(session_timeout))
            .with_rebalance_timeout_ms(millis(rebalance_timeout))
            .with_member_id(sb(member_id))
            .with_group_instance_id(self.identity.instance_id.as_deref().map(sb))
            .with_protocol_type(sb(CONSUMER))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(name, metadata)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(sb(name))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        // The answer comes when every member has joined: allow the
        // rebalance timeout plus a margin, as the Java client does.
        let wait = rebalance_timeout + Duration::from_secs(5);
        let response = conn.send_waiting(&request, wait).await?;
        if let Some(code) = KafkaCode::from_i16(response.error_code) {
            // MEMBER_ID_REQUIRED carries the id to join with.
            return Ok(Err((code, response.member_id.to_string())));
        }
        Ok(Ok(Joined {
            generation: response.generation_id,
            member_id: response.member_id.to_string(),
            leader: response.leader.to_string(),
            protocol: response.protocol_name.map(|p| p.to_string()),
            members: response
                .members
                .into_iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.map(|i| i.to_string()),
                        m.metadata,
                    )
                })
                .collect(),
        }))
    }

    /// SyncGroup: the leader sends every member's assignment; everyone
    /// receives its own.
    pub(crate) async fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        rebalance_timeout: Duration,
    ) -> Result<Result<Bytes, KafkaCode>, Error> {
        let conn = self.connection().await?;
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(sb(&self.identity.group)))
            .with_generation_id(generation)
            .with_member_id(sb(member_id))
            .with_group_instance_id(self.identity.instance_id.as_deref().map(sb))
            .with_protocol_type(Some(sb(CONSUMER)))
            .with_protocol_name(protocol.map(sb))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(sb(&member))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        let wait = rebalance_timeout + Duration::from_secs(5);
        let (version, body) = conn.exchange_waiting(&request, wait).await?;
        let body = null_assignment_as_empty(version, body);
        let response = decode_response::<SyncGroupRequest>(version, body)?;
        Ok(match KafkaCode::from_i16(response.error_code) {
            Some(code) => Err(code),
            None => Ok(response.assignment),
        })
    }

    /// LeaveGroup for this member (dynamic members only leave this way).
    pub(crate) async fn leave(&mut self, member_id: &str, reason: &str) -> Result<(), Error> {
        let conn = self.connection().await?;
        let mut request =
            LeaveGroupRequest::default().with_group_id(GroupId(sb(&self.identity.group)));
        // v0-2 name one member; v3 on a batch of members with instance ids,
        // v5 with a reason.
        let version = conn.versions().require(ApiKey::LeaveGroup)?;
        if version < 3 {
            request.member_id = sb(member_id);
        } else {
            request.members = vec![
                MemberIdentity::default()
                    .with_member_id(sb(member_id))
                    .with_group_instance_id(self.identity.instance_id.as_deref().map(sb))
                    .with_reason((version >= 5).then(|| sb(reason))),
            ];
        }
        let response = conn.send(&request).await?;
        let code = KafkaCode::from_i16(response.error_code).or_else(|| {
            response
                .members
                .iter()
                .find_map(|m| KafkaCode::from_i16(m.error_code))
        });
        match code {
            // Already gone is as good as leaving.
            None | Some(KafkaCode::UNKNOWN_MEMBER_ID) => Ok(()),
            Some(code) => Err(Error::broker(
                code,
                format_args!("leaving group `{}`", self.identity.group),
            )),
        }
    }

    /// OffsetCommit at `generation` for `member_id` (generation -1 and an
    /// empty member id for a consumer outside group management). Returns
    /// the first error code of the answer, if any.
    pub(crate) async fn commit(
        &mut self,
        generation: i32,
        member_id: &str,
        offsets: &[OffsetToCommit],
    ) -> Result<Option<KafkaCode>, Error> {
        let conn = self.connection().await?;
        let request = commit_request(&self.identity, generation, member_id, offsets);
        let response = conn.send(&request).await?;
        Ok(response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find_map(|p| KafkaCode::from_i16(p.error_code)))
    }
}

/// Heartbeat on `conn`; the error code of the answer, if any.
pub(crate) async fn heartbeat(
    conn: &BrokerConnection,
    identity: &GroupIdentity,
    generation: i32,
    member_id: &str,
) -> Result<Option<KafkaCode>, Error> {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(sb(&identity.group)))
        .with_generation_id(generation)
        .with_member_id(sb(member_id))
        .with_group_instance_id(identity.instance_id.as_deref().map(sb));
    let response = conn.send(&request).await?;
    Ok(KafkaCode::from_i16(response.error_code))
}

fn commit_request(
    identity: &GroupIdentity,
    generation: i32,
    member_id: &str,
    offsets: &[OffsetToCommit],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for offset in offsets {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(offset.partition)
            .with_committed_offset(offset.offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(sb(offset.metadata.as_deref().unwrap_or(""))));
        match topics
            .iter_mut()
            .find(|t| t.name.0.as_str() == offset.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb(&offset.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(&identity.group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(sb(member_id))
        .with_group_instance_id(identity.instance_id.as_deref().map(sb))
        .with_retention_time_ms(-1)
        .with_topics(topics)
}

/// A SyncGroup answer (v0-3) whose assignment is null, rewritten with an
/// empty one. Kafka sends empty bytes to a member the leader gave nothing;
/// librdkafka's mock broker sends null, which the schema does not allow.
/// The body is otherwise left alone (and checked by the guard as usual).
fn null_assignment_as_empty(version: i16, body: Bytes) -> Bytes {
    // [throttle_time_ms (v1+)] error_code, then the assignment's length.
    let at = if version >= 1 { 6 } else { 2 };
    if version > 3 || body.len() != at + 4 || body[at..] != [0xff, 0xff, 0xff, 0xff] {
        return body;
    }
    let mut fixed = body.to_vec();
    fixed[at..].copy_from_slice(&[0, 0, 0, 0]);
    Bytes::from(fixed)
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_assignment_reads_as_empty_and_other_bodies_are_untouched() {
        let null_v3 = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let fixed = null_assignment_as_empty(3, null_v3);
        let response = decode_response::<SyncGroupRequest>(3, fixed).unwrap();
        assert!(response.assignment.is_empty());
        let null_v0 = Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            &null_assignment_as_empty(0, null_v0)[..],
            &[0, 0, 0, 0, 0, 0]
        );
        let with_bytes = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 7]);
        assert_eq!(null_assignment_as_empty(3, with_bytes.clone()), with_bytes);
        // A flexible version is never rewritten.
        let flexible = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(null_assignment_as_empty(4, flexible.clone()), flexible);
    }

    #[test]
    fn a_commit_groups_offsets_by_topic_and_carries_the_generation() {
        let identity = GroupIdentity {
            group: "g".into(),
            instance_id: Some("i-1".into()),
        };
        let request = commit_request(
            &identity,
            7,
            "m",
            &[
                OffsetToCommit::new("a", 0, 10),
                OffsetToCommit::new("b", 1, 3),
                OffsetToCommit::new("a", 2, 12),
            ],
        );
        assert_eq!(request.generation_id_or_member_epoch, 7);
        assert_eq!(request.member_id.as_str(), "m");
        assert_eq!(request.group_instance_id.as_deref(), Some("i-1"));
        let by_topic: Vec<(String, Vec<(i32, i64)>)> = request
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.committed_offset))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            by_topic,
            vec![
                ("a".to_string(), vec![(0, 10), (2, 12)]),
                ("b".to_string(), vec![(1, 3)])
            ]
        );
    }
}
