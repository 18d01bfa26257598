//! Validates the fake cluster's group coordinator against an independent
//! client, rust-rdkafka (librdkafka) consumers that `subscribe`: partitions
//! split over the members with each assignor, members joining, leaving and
//! going silent, static members restarting, and (over raw connections)
//! OffsetCommit generation checks and a coordinator move. Every test reads
//! its outcome back from the fake: records consumed per partition against
//! the log, committed offsets, the members' assignments, generations and
//! rebalance counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use protocol_tests::kafka_protocol::messages::leave_group_request::MemberIdentity;
use protocol_tests::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use protocol_tests::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use protocol_tests::kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use protocol_tests::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use protocol_tests::{FakeCluster, Fault, GroupPhase, GroupSnapshot};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::time::Instant;

use crate::support::raw::Conn;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const SETTLE: Duration = Duration::from_secs(30);

fn all_partitions() -> BTreeSet<i32> {
    (0..PARTITIONS).collect()
}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// What one consumer saw: its rebalance callbacks, its assignment, the
/// records it consumed and its failed commits.
#[derive(Default)]
struct Observed {
    events: Mutex<Vec<String>>,
    assigned: Mutex<BTreeSet<i32>>,
    consumed: Mutex<Vec<(i32, i64)>>,
    commit_errors: AtomicU64,
}

/// A consumer context recording rebalances.
struct Recorder(Arc<Observed>);

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    /// Records the rebalance and follows the assignment from it alone: an
    /// eager one revokes everything and assigns the whole new set, a
    /// cooperative one adds and takes away a few. (Asking the consumer for
    /// its assignment here, inside its own callback, can wait forever when
    /// the rebalance is the one of its close.)
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.0.assigned.lock().unwrap();
        let event = match rebalance {
            Rebalance::Assign(tpl) => {
                let added = partitions_of(tpl);
                assigned.extend(&added);
                format!("assign {added:?}")
            }
            Rebalance::Revoke(tpl) => {
                let revoked = partitions_of(tpl);
                assigned.retain(|p| !revoked.contains(p));
                format!("revoke {revoked:?}")
            }
            Rebalance::Error(e) => format!("error {e}"),
        };
        self.0.events.lock().unwrap().push(event);
    }
}

/// One librdkafka consumer polling on its own thread; every record is
/// committed synchronously before the next poll.
struct RdMember {
    name: String,
    observed: Arc<Observed>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RdMember {
    /// Starts consumer `name` (also its `client.id`) in `group`.
    fn start(
        cluster: &FakeCluster,
        group: &str,
        name: &str,
        strategy: &str,
        instance: Option<&str>,
    ) -> Self {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", group)
            .set("client.id", name)
            .set("partition.assignment.strategy", strategy)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "200")
            .set("max.poll.interval.ms", "10000")
            .set("fetch.wait.max.ms", "50")
            .set("reconnect.backoff.ms", "20")
            .set("retry.backoff.ms", "50");
        if let Some(instance) = instance {
            config.set("group.instance.id", instance);
        }
        let observed = Arc::new(Observed::default());
        let stop = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer<Recorder> = config
            .create_with_context(Recorder(Arc::clone(&observed)))
            .expect("create consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let thread = {
            let (observed, stop) = (Arc::clone(&observed), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                        observed
                            .consumed
                            .lock()
                            .unwrap()
                            .push((m.partition(), m.offset()));
                        if consumer.commit_message(&m, CommitMode::Sync).is_err() {
                            observed.commit_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // Dropping closes the consumer: a dynamic member leaves the
                // group, a static one does not.
                drop(consumer);
            })
        };
        Self {
            name: name.to_owned(),
            observed,
            stop,
            thread: Some(thread),
        }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.observed.assigned.lock().unwrap().clone()
    }

    fn consumed(&self) -> Vec<(i32, i64)> {
        self.observed.consumed.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.observed.events.lock().unwrap().clone()
    }

    /// Stops polling and closes the consumer (on a blocking thread, as the
    /// close waits for the coordinator).
    async fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().expect("consumer thread"))
                .await
                .expect("join");
        }
    }
}

impl Drop for RdMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decodes a consumer protocol assignment (its version first).
fn decode_assignment(raw: &Bytes) -> BTreeSet<i32> {
    if raw.len() < 2 {
        return BTreeSet::new();
    }
    let mut buf = raw.clone();
    let version = buf.get_i16().min(3);
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version).expect("assignment");
    assignment
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == TOPIC)
        .flat_map(|t| t.partitions.iter().copied())
        .collect()
}

/// The fake's assignment per client id.
fn fake_assignment(group: &GroupSnapshot) -> BTreeMap<String, BTreeSet<i32>> {
    group
        .members
        .iter()
        .map(|m| (m.client_id.clone(), decode_assignment(&m.assignment)))
        .collect()
}

/// Whether `parts` are disjoint and cover every partition.
fn disjoint_and_complete(parts: &BTreeMap<String, BTreeSet<i32>>) -> bool {
    let total: usize = parts.values().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = parts.values().flatten().copied().collect();
    total == PARTITIONS as usize && union == all_partitions()
}

/// Waits until the group is stable with exactly `members` (plus `extra`
/// members the test drives itself), the fake's assignment is disjoint and
/// complete, and every consumer holds what the fake assigned it.
async fn wait_settled(
    cluster: &FakeCluster,
    group: &str,
    members: &[&RdMember],
    extra: usize,
) -> GroupSnapshot {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(g) = cluster.group_state(group) {
            let fake = fake_assignment(&g);
            if g.phase == GroupPhase::Stable
                && g.members.len() == members.len() + extra
                && disjoint_and_complete(&fake)
                && members
                    .iter()
                    .all(|m| fake.get(&m.name) == Some(&m.assigned()))
            {
                return g;
            }
        }
        if Instant::now() > deadline {
            let events: Vec<_> = members.iter().map(|m| (&m.name, m.events())).collect();
            panic!(
                "group {group} did not settle: {:?}\nconsumers: {events:?}",
                cluster.group_state(group)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn producer(cluster: &FakeCluster) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("create producer")
}

/// Produces `per_partition` records to every partition of the topic.
async fn produce(producer: &FutureProducer, per_partition: usize) {
    let mut pending = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..per_partition {
            let value = format!("p{p}-{i}");
            let record = FutureRecord::<(), _>::to(TOPIC)
                .partition(p)
                .payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("enqueue record: {e}"),
            }
        }
    }
    for delivery in pending {
        delivery
            .await
            .expect("delivery not cancelled")
            .unwrap_or_else(|(e, _)| panic!("record not delivered: {e}"));
    }
}

/// Every `(partition, offset)` consumed by `members`, in consumption order.
fn consumed_by(members: &[&RdMember]) -> Vec<(i32, i64)> {
    members.iter().flat_map(|m| m.consumed()).collect()
}

/// Waits until `members` together consumed up to every partition's high
/// watermark, then asserts each offset was consumed exactly once.
async fn assert_consumed_exactly_once(cluster: &FakeCluster, members: &[&RdMember]) {
    let total: i64 = (0..PARTITIONS)
        .map(|p| cluster.high_watermark(TOPIC, p))
        .sum();
    let deadline = Instant::now() + SETTLE;
    while (consumed_by(members).len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {total} records",
            consumed_by(members).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in consumed_by(members) {
        per_partition.entry(p).or_default().push(o);
    }
    for p in 0..PARTITIONS {
        let mut offsets = per_partition.remove(&p).unwrap_or_default();
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..cluster.high_watermark(TOPIC, p)).collect();
        assert_eq!(
            offsets, expected,
            "partition {p}: every record exactly once"
        );
    }
}

/// Asserts the group committed every partition up to its high watermark.
fn assert_committed_everything(cluster: &FakeCluster, group: &str) {
    for p in 0..PARTITIONS {
        assert_eq!(
            cluster.committed_offset(group, TOPIC, p),
            Some(cluster.high_watermark(TOPIC, p)),
            "committed offset of partition {p}"
        );
    }
}

async fn cluster(brokers: usize) -> FakeCluster {
    FakeCluster::builder()
        .brokers(brokers)
        .topic(TOPIC, PARTITIONS)
        .group_initial_rebalance_delay(Duration::from_millis(100))
        .group_session_timeout_range(Duration::from_secs(1), Duration::from_secs(300))
        .build()
        .await
}

/// Two consumers with `strategy` split the partitions and consume every
/// record once, each only from partitions the coordinator gave it.
async fn two_members_split(strategy: &str) {
    let cluster = cluster(1).await;
    let group = format!("split-{strategy}");
    let a = RdMember::start(&cluster, &group, "a", strategy, None);
    let b = RdMember::start(&cluster, &group, "b", strategy, None);
    let settled = wait_settled(&cluster, &group, &[&a, &b], 0).await;
    let generation = settled.generation;
    assert_eq!(settled.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(settled.protocol_name.as_deref(), Some(strategy));
    let fake = fake_assignment(&settled);
    assert!(
        fake.values().all(|p| !p.is_empty()),
        "both members own partitions: {fake:?}"
    );
    assert!(
        cluster.request_count(ApiKey::JoinGroup) >= 4,
        "each new member joins twice: MEMBER_ID_REQUIRED first (KIP-394)"
    );

    produce(&producer(&cluster), 10).await;
    assert_consumed_exactly_once(&cluster, &[&a, &b]).await;
    for m in [&a, &b] {
        let owned = &fake[&m.name];
        assert!(
            m.consumed().iter().all(|(p, _)| owned.contains(p)),
            "{} read only its partitions {owned:?}",
            m.name
        );
        assert_eq!(m.observed.commit_errors.load(Ordering::Relaxed), 0);
    }
    assert_committed_everything(&cluster, &group);
    assert_eq!(
        cluster.group_generation(&group),
        Some(generation),
        "no rebalance while nobody joins or leaves"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_range() {
    two_members_split("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_roundrobin() {
    two_members_split("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_cooperative_sticky() {
    two_members_split("cooperative-sticky").await;
}

/// A third member joins (a rebalance, still a disjoint and complete
/// assignment), then one closes: the others take over its partitions from
/// its committed offsets and nothing is lost or read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_member_joins_then_one_leaves_without_loss() {
    let cluster = cluster(1).await;
    let group = "grow-shrink";
    let producer = producer(&cluster);
    let a = RdMember::start(&cluster, group, "a", "range", None);
    let b = RdMember::start(&cluster, group, "b", "range", None);
    let two = wait_settled(&cluster, group, &[&a, &b], 0).await;
    produce(&producer, 5).await;
    assert_consumed_exactly_once(&cluster, &[&a, &b]).await;

    let c = RdMember::start(&cluster, group, "c", "range", None);
    let three = wait_settled(&cluster, group, &[&a, &b, &c], 0).await;
    assert!(three.generation > two.generation, "joining rebalances");
    assert!(cluster.rebalances(group) > two.rebalances);
    assert!(
        fake_assignment(&three).values().all(|p| !p.is_empty()),
        "range over 6 partitions gives each of 3 members some"
    );
    produce(&producer, 5).await;
    assert_consumed_exactly_once(&cluster, &[&a, &b, &c]).await;

    let b_partitions = b.assigned();
    let b_consumed = b.consumed();
    let leaves_before = cluster.request_count(ApiKey::LeaveGroup);
    b.close().await;
    assert!(cluster.request_count(ApiKey::LeaveGroup) > leaves_before);
    let committed_at_leave: BTreeMap<i32, i64> = b_partitions
        .iter()
        .map(|p| {
            (
                *p,
                cluster
                    .committed_offset(group, TOPIC, *p)
                    .expect("b committed"),
            )
        })
        .collect();
    let after = wait_settled(&cluster, group, &[&a, &c], 0).await;
    assert!(after.generation > three.generation);
    assert!(!after.members.iter().any(|m| m.client_id == "b"));
    let a_before = a.consumed().len();
    let c_before = c.consumed().len();
    produce(&producer, 5).await;

    // b's consumption counts too: every record once over a, b and c.
    let deadline = Instant::now() + SETTLE;
    let expected: i64 = (0..PARTITIONS)
        .map(|p| cluster.high_watermark(TOPIC, p))
        .sum();
    while (a.consumed().len() + b_consumed.len() + c.consumed().len()) < expected as usize {
        assert!(
            Instant::now() < deadline,
            "records after b left not consumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut all: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in a
        .consumed()
        .into_iter()
        .chain(b_consumed)
        .chain(c.consumed())
    {
        all.entry(p).or_default().push(o);
    }
    for p in 0..PARTITIONS {
        let mut offsets = all.remove(&p).unwrap_or_default();
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..cluster.high_watermark(TOPIC, p)).collect();
        assert_eq!(
            offsets, expected,
            "partition {p}: every record exactly once"
        );
    }
    // The new owners of b's partitions resumed at b's committed offsets.
    let resumed: Vec<(i32, i64)> = a.consumed()[a_before..]
        .iter()
        .chain(&c.consumed()[c_before..])
        .copied()
        .collect();
    for (p, committed) in committed_at_leave {
        let first = resumed
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .min()
            .expect("b's partition consumed after it left");
        assert_eq!(first, committed, "partition {p} resumed at b's commit");
    }
    assert_committed_everything(&cluster, group);
    a.close().await;
    c.close().await;
}

/// A consumer protocol subscription to the topic (version 0).
fn subscription() -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str(TOPIC)])
        .encode(&mut buf, 0)
        .expect("encode subscription");
    buf.freeze()
}

fn join_request(group: &str, member: &str, session_ms: i32, protocol: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_string(protocol.to_owned()))
                .with_metadata(subscription()),
        ])
}

/// JoinGroup v5 from a new dynamic member: MEMBER_ID_REQUIRED, then the
/// join with the id handed out. Returns the second response.
async fn raw_join(conn: &mut Conn, group: &str, session_ms: i32) -> JoinGroupResponse {
    let first: JoinGroupResponse = conn
        .call(
            ApiKey::JoinGroup,
            5,
            &join_request(group, "", session_ms, "range"),
        )
        .await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.as_str().to_owned();
    assert!(
        member.starts_with("raw-test-"),
        "{{client_id}}-{{uuid}}: {member}"
    );
    conn.call(
        ApiKey::JoinGroup,
        5,
        &join_request(group, &member, session_ms, "range"),
    )
    .await
}

fn sync_request(
    group: &str,
    generation: i32,
    member: &str,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(m))
                        .with_assignment(a)
                })
                .collect(),
        )
}

fn heartbeat_request(
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_group_instance_id(instance.map(|i| StrBytes::from_string(i.to_owned())))
}

/// A consumer stops heartbeating (a raw member that joined through the
/// rdkafka leader's assignment, then goes silent): the coordinator expels
/// it after its session timeout and the rdkafka consumers take over its
/// partitions and read them from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_member_is_expelled_after_session_timeout() {
    let cluster = cluster(1).await;
    let group = "silent";
    let a = RdMember::start(&cluster, group, "a", "range", None);
    let b = RdMember::start(&cluster, group, "b", "range", None);
    let two = wait_settled(&cluster, group, &[&a, &b], 0).await;

    let mut conn = Conn::open(&cluster, cluster.group_coordinator(group)).await;
    let joined = raw_join(&mut conn, group, 2_000).await;
    assert_eq!(joined.error_code, 0);
    assert!(joined.generation_id > two.generation);
    assert_ne!(joined.leader, joined.member_id, "an rdkafka member leads");
    assert!(joined.members.is_empty(), "followers get no member list");
    let victim = joined.member_id.as_str().to_owned();
    let synced: SyncGroupResponse = conn
        .call(
            ApiKey::SyncGroup,
            3,
            &sync_request(group, joined.generation_id, &victim, Vec::new()),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    let victim_partitions = decode_assignment(&synced.assignment);
    assert_eq!(victim_partitions.len(), 2, "range gives 2 of 6 partitions");
    let last_seen = Instant::now();
    let three = wait_settled(&cluster, group, &[&a, &b], 1).await;
    assert_eq!(three.generation, joined.generation_id);

    produce(&producer(&cluster), 5).await;
    // Nobody reads the silent member's partitions until it is expelled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        consumed_by(&[&a, &b])
            .iter()
            .all(|(p, _)| !victim_partitions.contains(p))
    );

    let after = wait_settled(&cluster, group, &[&a, &b], 0).await;
    let expelled_after = last_seen.elapsed();
    assert!(
        expelled_after >= Duration::from_secs(2),
        "expelled only after its 2 s session: {expelled_after:?}"
    );
    assert!(after.generation > three.generation);
    assert!(!after.members.iter().any(|m| m.member_id == victim));
    assert_consumed_exactly_once(&cluster, &[&a, &b]).await;
    assert_committed_everything(&cluster, group);

    let late: HeartbeatResponse = conn
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, three.generation, &victim, None),
        )
        .await;
    assert_eq!(late.error_code, ResponseError::UnknownMemberId.code());
    a.close().await;
    b.close().await;
}

/// A static member (`group.instance.id`) restarting within its session
/// timeout takes back its partitions without a rebalance; its old member id
/// is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_partitions_without_rebalance() {
    let cluster = cluster(1).await;
    let group = "static";
    let a = RdMember::start(&cluster, group, "a", "range", Some("instance-a"));
    let b = RdMember::start(&cluster, group, "b", "range", Some("instance-b"));
    let before = wait_settled(&cluster, group, &[&a, &b], 0).await;
    let old = before
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("instance-a"))
        .expect("static member a")
        .clone();
    let partitions = a.assigned();
    assert!(!partitions.is_empty());

    a.close().await;
    assert_eq!(
        cluster.request_count(ApiKey::LeaveGroup),
        0,
        "static members do not leave on close"
    );
    let a2 = RdMember::start(&cluster, group, "a", "range", Some("instance-a"));
    let after = wait_settled(&cluster, group, &[&a2, &b], 0).await;
    assert_eq!(a2.assigned(), partitions, "same partitions after restart");
    assert_eq!(after.generation, before.generation, "no new generation");
    assert_eq!(cluster.rebalances(group), before.rebalances, "no rebalance");
    let new = after
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("instance-a"))
        .expect("static member a after restart");
    assert_ne!(new.member_id, old.member_id, "a new member id");
    assert_eq!(new.assignment, old.assignment);

    let mut conn = Conn::open(&cluster, cluster.group_coordinator(group)).await;
    let fenced: HeartbeatResponse = conn
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, after.generation, &old.member_id, Some("instance-a")),
        )
        .await;
    assert_eq!(fenced.error_code, ResponseError::FencedInstanceId.code());
    a2.close().await;
    b.close().await;
}

fn commit_request(group: &str, generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ])
}

async fn commit(conn: &mut Conn, group: &str, generation: i32, member: &str, offset: i64) -> i16 {
    let r: OffsetCommitResponse = conn
        .call(
            ApiKey::OffsetCommit,
            7,
            &commit_request(group, generation, member, offset),
        )
        .await;
    r.topics[0].partitions[0].error_code
}

/// OffsetCommit checks generation and member id as Kafka does: a stale
/// generation gets ILLEGAL_GENERATION, a commit during the sync phase
/// REBALANCE_IN_PROGRESS, an unknown member UNKNOWN_MEMBER_ID, and a
/// commit from outside the group only passes once the group is empty.
/// Also: NOT_COORDINATOR away from the coordinator, a coordinator move
/// that keeps the last stored generation, and an injected Heartbeat fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_stale_generation_is_rejected() {
    let cluster = cluster(2).await;
    let group = "raw-commits";
    let coordinator = cluster.group_coordinator(group);
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != coordinator)
        .expect("two brokers");
    let mut elsewhere = Conn::open(&cluster, other).await;
    let wrong: JoinGroupResponse = elsewhere
        .call(
            ApiKey::JoinGroup,
            5,
            &join_request(group, "", 6_000, "range"),
        )
        .await;
    assert_eq!(wrong.error_code, ResponseError::NotCoordinator.code());

    let mut conn = Conn::open(&cluster, coordinator).await;
    let g1 = raw_join(&mut conn, group, 6_000).await;
    assert_eq!(g1.error_code, 0);
    assert_eq!(g1.generation_id, 1);
    let member = g1.member_id.as_str().to_owned();
    assert_eq!(g1.leader.as_str(), member, "the only member leads");
    assert_eq!(g1.members.len(), 1, "the leader gets every member");
    assert_eq!(g1.members[0].metadata, subscription());
    let assignment = Bytes::from_static(b"\x00\x00assignment");
    let s1: SyncGroupResponse = conn
        .call(
            ApiKey::SyncGroup,
            3,
            &sync_request(
                group,
                1,
                &member,
                vec![(member.clone(), assignment.clone())],
            ),
        )
        .await;
    assert_eq!(
        (s1.error_code, s1.assignment.clone()),
        (0, assignment.clone())
    );
    assert_eq!(commit(&mut conn, group, 1, &member, 10).await, 0);

    // The leader rejoining a stable group starts generation 2.
    let g2: JoinGroupResponse = conn
        .call(
            ApiKey::JoinGroup,
            5,
            &join_request(group, &member, 6_000, "range"),
        )
        .await;
    assert_eq!((g2.error_code, g2.generation_id), (0, 2));
    let stale = ResponseError::IllegalGeneration.code();
    assert_eq!(commit(&mut conn, group, 1, &member, 11).await, stale);
    let hb: HeartbeatResponse = conn
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, 1, &member, None),
        )
        .await;
    assert_eq!(hb.error_code, stale);
    assert_eq!(
        commit(&mut conn, group, 2, &member, 11).await,
        ResponseError::RebalanceInProgress.code(),
        "no commits between JoinGroup and SyncGroup"
    );
    let s2: SyncGroupResponse = conn
        .call(
            ApiKey::SyncGroup,
            3,
            &sync_request(
                group,
                2,
                &member,
                vec![(member.clone(), assignment.clone())],
            ),
        )
        .await;
    assert_eq!(s2.error_code, 0);
    assert_eq!(commit(&mut conn, group, 2, &member, 12).await, 0);
    let unknown = ResponseError::UnknownMemberId.code();
    assert_eq!(commit(&mut conn, group, 2, "nobody", 13).await, unknown);
    assert_eq!(
        commit(&mut conn, group, -1, "", 13).await,
        unknown,
        "simple commits only to an empty group"
    );
    assert_eq!(cluster.committed_offset(group, TOPIC, 0), Some(12));
    assert_eq!(cluster.group_generation(group), Some(2));
    assert_eq!(cluster.rebalances(group), 2);

    // Coordinator failover: the new coordinator loads generation 2.
    cluster.move_group_coordinator(group, other);
    let moved: HeartbeatResponse = conn
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, 2, &member, None),
        )
        .await;
    assert_eq!(moved.error_code, ResponseError::NotCoordinator.code());
    let reloaded: HeartbeatResponse = elsewhere
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, 2, &member, None),
        )
        .await;
    assert_eq!(reloaded.error_code, 0);

    // Faults apply to the membership APIs like any other.
    cluster.inject(Fault::new(ApiKey::Heartbeat).error(ResponseError::CoordinatorLoadInProgress));
    let faulted: HeartbeatResponse = elsewhere
        .call(
            ApiKey::Heartbeat,
            3,
            &heartbeat_request(group, 2, &member, None),
        )
        .await;
    assert_eq!(
        faulted.error_code,
        ResponseError::CoordinatorLoadInProgress.code()
    );
    assert_eq!(cluster.triggered_faults(), 1);

    let left: LeaveGroupResponse = elsewhere
        .call(
            ApiKey::LeaveGroup,
            3,
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(StrBytes::from_string(member)),
                ]),
        )
        .await;
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(commit(&mut elsewhere, group, -1, "", 14).await, 0);
    assert_eq!(cluster.committed_offset(group, TOPIC, 0), Some(14));
    let state = cluster.group_state(group).expect("group");
    assert_eq!(state.phase, GroupPhase::Empty);
    assert!(state.members.is_empty());
}
