//! CreateTopics: creates topics with leaders spread round-robin.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};

use super::{Ctx, sb};

/// Answers a CreateTopics request.
pub(super) fn handle(ctx: &Ctx<'_>, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let v = ctx.version;
    let mut state = ctx.shared.state();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
            let partitions = if topic.num_partitions == -1 {
                if topic.assignments.is_empty() {
                    state.default_partitions
                } else {
                    topic.assignments.len() as i32
                }
            } else {
                topic.num_partitions
            };
            let outcome = if request.validate_only {
                if state.topics.contains_key(name) {
                    Err(ResponseError::TopicAlreadyExists)
                } else if partitions <= 0 {
                    Err(ResponseError::InvalidPartitions)
                } else {
                    Ok(None)
                }
            } else {
                state.create_topic(name, partitions).map(Some)
            };
            match outcome {
                Ok(id) => {
                    if v >= 5 {
                        result.num_partitions = partitions;
                        result.replication_factor = 1;
                        result.configs = Some(Vec::new());
                        if let Some(id) = id.filter(|_| v >= 7) {
                            result.topic_id = id;
                        }
                    }
                }
                Err(e) => {
                    result.error_code = e.code();
                    if v >= 1 {
                        result.error_message = Some(sb(&format!("{e}")));
                    }
                    if v >= 5 {
                        result.num_partitions = -1;
                        result.replication_factor = -1;
                    }
                }
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// The CreateTopics response for an injected error: every topic carries `code`.
pub(super) fn error(
    ctx: &Ctx<'_>,
    request: &CreateTopicsRequest,
    code: i16,
) -> CreateTopicsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let mut result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code);
            if ctx.version >= 5 {
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
