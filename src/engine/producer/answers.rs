//! One Produce response's answers, found per batch of the request.
//!
//! The protocol does not fix the order of a response's partitions. A
//! broker that answers in the order the request named them (the librdkafka
//! mock cluster does) lets the batches of a request, taken in their order,
//! find their answers one after the other: each lookup compares one entry.
//! Apache Kafka builds its answer from hash maps, so its order may be any;
//! an answer not where it is expected is found by a binary search over the
//! answers sorted once. Either way a request of hundreds of partitions
//! costs no tree built per response (an allocation per node) and no
//! lookup that compares names at every level.

use kafka_protocol::messages::ProduceResponse;

/// One partition's answer in a Produce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartitionAnswer {
    pub(super) code: i16,
    pub(super) base_offset: i64,
    pub(super) log_append_time: i64,
    /// KIP-951 `current_leader`: (leader id, leader epoch), -1 when absent.
    pub(super) leader_hint: (i32, i32),
    pub(super) log_start_offset: i64,
}

/// The answers of one response, by topic and partition.
pub(super) struct Answers<'a> {
    /// In the response's order.
    list: Vec<(&'a str, i32, PartitionAnswer)>,
    /// Where the next lookup expects its answer.
    next: usize,
    /// Positions in `list` sorted by topic and partition, made at the
    /// first answer not found where expected.
    sorted: Option<Vec<usize>>,
}

impl<'a> Answers<'a> {
    /// The answers of `response`.
    pub(super) fn new(response: &'a ProduceResponse) -> Answers<'a> {
        let count = response
            .responses
            .iter()
            .map(|t| t.partition_responses.len())
            .sum();
        let mut list = Vec::with_capacity(count);
        for topic in &response.responses {
            for p in &topic.partition_responses {
                list.push((
                    topic.name.0.as_str(),
                    p.index,
                    PartitionAnswer {
                        code: p.error_code,
                        base_offset: p.base_offset,
                        log_append_time: p.log_append_time_ms,
                        leader_hint: (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
                        log_start_offset: p.log_start_offset,
                    },
                ));
            }
        }
        Answers {
            list,
            next: 0,
            sorted: None,
        }
    }

    /// The answer for `topic`'s `partition`, if the response has one. A
    /// partition answered more than once (no broker does that) gets its
    /// last answer, unless it is looked up where its first one stands.
    pub(super) fn find(&mut self, topic: &str, partition: i32) -> Option<PartitionAnswer> {
        if let Some(&(t, p, answer)) = self.list.get(self.next)
            && p == partition
            && t == topic
        {
            self.next += 1;
            return Some(answer);
        }
        let list = &self.list;
        let sorted = self.sorted.get_or_insert_with(|| {
            let mut sorted: Vec<usize> = (0..list.len()).collect();
            // Stable: equal keys stay in the response's order.
            sorted.sort_by_key(|&i| (list[i].0, list[i].1));
            sorted
        });
        let after = sorted.partition_point(|&i| (list[i].0, list[i].1) <= (topic, partition));
        let at = *sorted[..after].last()?;
        let (t, p, answer) = list[at];
        if (t, p) != (topic, partition) {
            return None;
        }
        self.next = at + 1;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::Answers;

    /// A response answering `(topic, partition)` in this order, each with
    /// a base offset telling it apart.
    fn response(order: &[(&str, i32)]) -> ProduceResponse {
        let mut topics: Vec<TopicProduceResponse> = Vec::new();
        for (n, &(topic, partition)) in order.iter().enumerate() {
            let answer = PartitionProduceResponse::default()
                .with_index(partition)
                .with_base_offset(n as i64 * 100);
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partition_responses.push(answer),
                _ => topics.push(
                    TopicProduceResponse::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_responses(vec![answer]),
                ),
            }
        }
        ProduceResponse::default().with_responses(topics)
    }

    fn offset(answers: &mut Answers<'_>, topic: &str, partition: i32) -> Option<i64> {
        answers.find(topic, partition).map(|a| a.base_offset)
    }

    #[test]
    fn answers_in_the_requests_order_are_found_one_after_the_other() {
        let r = response(&[("a", 0), ("a", 1), ("b", 0)]);
        let mut answers = Answers::new(&r);
        assert_eq!(offset(&mut answers, "a", 0), Some(0));
        assert_eq!(offset(&mut answers, "a", 1), Some(100));
        assert_eq!(offset(&mut answers, "b", 0), Some(200));
        assert!(answers.sorted.is_none(), "no search was needed");
    }

    /// Any order, a partition the response does not mention, one answered
    /// twice: each lookup gets what a map of the answers would give.
    #[test]
    fn answers_in_another_order_or_missing_are_found_as_a_map_would() {
        let order = [("b", 3), ("a", 7), ("b", 1), ("a", 2), ("a", 7), ("c", 0)];
        let r = response(&order);
        let mut map = std::collections::BTreeMap::new();
        for (n, key) in order.iter().enumerate() {
            map.insert(*key, n as i64 * 100);
        }
        let lookups = [
            ("a", 2),
            ("a", 7),
            ("b", 3),
            ("b", 2),
            ("c", 0),
            ("b", 1),
            ("z", 0),
            ("a", 7),
        ];
        let mut answers = Answers::new(&r);
        for (topic, partition) in lookups {
            assert_eq!(
                offset(&mut answers, topic, partition),
                map.get(&(topic, partition)).copied(),
                "{topic}-{partition}"
            );
        }
        let empty = ProduceResponse::default();
        assert_eq!(Answers::new(&empty).find("a", 0), None);
    }
}
