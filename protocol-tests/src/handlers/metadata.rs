//! Metadata: brokers, topics, partitions, leaders and leader epochs.
//!
//! Unknown topics answer `UNKNOWN_TOPIC_OR_PARTITION` (or `UNKNOWN_TOPIC_ID`
//! when asked by id) unless auto-creation is enabled on the cluster and the
//! request allows it. A name that breaks Kafka's topic-name rules answers
//! `INVALID_TOPIC_EXCEPTION`, auto-creation or not, as a broker does.
//!
//! The controller id is the first broker's unless the cluster was told to
//! report another ([`crate::FakeCluster::set_controller_id`]), and brokers
//! the cluster was told to leave out
//! ([`crate::FakeCluster::set_listed_in_metadata`]) are not in the list.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest};
use uuid::Uuid;

use super::{Ctx, sb, tn};
use crate::state::{ClusterState, is_legal_topic_name};

const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// A requested topic, by name or by id.
enum Wanted {
    Name(String),
    Id(Uuid),
}

fn wanted(version: i16, request: &MetadataRequest) -> Option<Vec<Wanted>> {
    match &request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .iter()
                .map(|t| match &t.name {
                    Some(name) => Wanted::Name(name.0.as_str().to_owned()),
                    None => Wanted::Id(t.topic_id),
                })
                .collect(),
        ),
    }
}

fn base(ctx: &Ctx<'_>, state: &ClusterState) -> MetadataResponse {
    let v = ctx.version;
    let brokers = state
        .brokers
        .iter()
        .filter(|b| !state.unlisted_brokers.contains(&b.id))
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(sb(&b.host))
                .with_port(i32::from(b.port))
        })
        .collect();
    let mut response = MetadataResponse::default().with_brokers(brokers);
    if v >= 1 {
        let first = state.brokers.first().map_or(-1, |b| b.id);
        response.controller_id = BrokerId(state.controller_id.unwrap_or(first));
    }
    if v >= 2 {
        response.cluster_id = Some(sb(&state.cluster_id));
    }
    response.cluster_authorized_operations = OPERATIONS_NOT_REQUESTED;
    response
}

fn topic_entry(ctx: &Ctx<'_>, state: &ClusterState, name: &str) -> MetadataResponseTopic {
    let v = ctx.version;
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(tn(name)))
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED);
    let Some(topic) = state.topics.get(name) else {
        let error = if is_legal_topic_name(name) {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::InvalidTopicException
        };
        return entry.with_error_code(error.code());
    };
    if v >= 10 {
        entry.topic_id = topic.id;
    }
    entry.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut part = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(vec![BrokerId(p.leader)])
                .with_isr_nodes(vec![BrokerId(p.leader)]);
            if v >= 7 {
                part.leader_epoch = p.leader_epoch;
            }
            part
        })
        .collect();
    entry
}

/// Answers a Metadata request.
pub(super) fn handle(ctx: &Ctx<'_>, request: MetadataRequest) -> MetadataResponse {
    let v = ctx.version;
    let mut state = ctx.shared.state();
    let mut response = base(ctx, &state);
    let allow_auto = v < 4 || request.allow_auto_topic_creation;
    response.topics = match wanted(v, &request) {
        None => {
            let names: Vec<String> = state.topics.keys().cloned().collect();
            names.iter().map(|n| topic_entry(ctx, &state, n)).collect()
        }
        Some(list) => list
            .into_iter()
            .map(|w| match w {
                Wanted::Name(name) => {
                    if !state.topics.contains_key(&name)
                        && allow_auto
                        && let Some(partitions) = state.auto_create_partitions
                    {
                        let _ = state.create_topic(&name, partitions);
                    }
                    topic_entry(ctx, &state, &name)
                }
                Wanted::Id(id) => match state.topic_name_by_id(id).map(str::to_owned) {
                    Some(name) => topic_entry(ctx, &state, &name),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(id)
                        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    response
}

/// The Metadata response for an injected error: every requested (or known)
/// topic carries `code`.
pub(super) fn error(ctx: &Ctx<'_>, request: &MetadataRequest, code: i16) -> MetadataResponse {
    let state = ctx.shared.state();
    let mut response = base(ctx, &state);
    let names: Vec<String> = match wanted(ctx.version, request) {
        None => state.topics.keys().cloned().collect(),
        Some(list) => list
            .into_iter()
            .filter_map(|w| match w {
                Wanted::Name(n) => Some(n),
                Wanted::Id(id) => state.topic_name_by_id(id).map(str::to_owned),
            })
            .collect(),
    };
    response.topics = names
        .iter()
        .map(|n| {
            MetadataResponseTopic::default()
                .with_name(Some(tn(n)))
                .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
                .with_error_code(code)
        })
        .collect();
    if ctx.version >= 13 {
        response.error_code = code;
    }
    response
}
