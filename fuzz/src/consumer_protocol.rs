// Logic of the `consumer_protocol` fuzz target, shared with the corpus
// replay test (`tests/fuzz_corpus.rs`), which `include!`s this file.
//
// Input layout: the whole input is one consumer protocol message, as a
// member finds it in JoinGroup metadata or a SyncGroup assignment. It is
// decoded both as a `Subscription` and as an `Assignment`. Whatever decodes
// must re-encode (at version 3) into bytes that decode back to the same
// value, with the partition lists grouped by topic as the encoder writes
// them, and must stay within the size the input justifies.

use smartkafka::protocol::consumer_protocol::{Assignment, NO_GENERATION, Subscription};

/// What one input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The version the input carries, if it has the two bytes of one.
    pub version: Option<i16>,
    /// Whether the input decoded as a subscription.
    pub subscription: bool,
    /// Whether the input decoded as an assignment.
    pub assignment: bool,
}

/// `(topic, partition)` pairs grouped by topic, topics in order of first
/// appearance, partitions in their order within the topic: what the
/// encoder writes, so what decoding its output gives back.
fn grouped(pairs: &[(String, i32)]) -> Vec<(String, i32)> {
    let mut topics: Vec<&str> = Vec::new();
    for (topic, _) in pairs {
        if !topics.contains(&topic.as_str()) {
            topics.push(topic);
        }
    }
    topics
        .into_iter()
        .flat_map(|topic| pairs.iter().filter(move |(t, _)| t == topic).cloned())
        .collect()
}

/// Checks the re-encoding `again` of an input `data` that decoded at
/// `version`, for a message whose layout from `same_layout_from` on is the
/// version-3 layout: re-encoding drops only trailing bytes and merges or
/// drops partition-list entries, so it is never longer than the input,
/// and of equal length it is the input (after the version).
fn check_reencoding(data: &[u8], version: i16, same_layout_from: i16, again: &[u8]) {
    assert_eq!(again.get(..2), Some(&[0u8, 3][..]), "re-encoded at version 3");
    if version >= same_layout_from {
        assert!(again.len() <= data.len(), "re-encoding grew the message");
        if again.len() == data.len() {
            assert_eq!(again.get(2..), data.get(2..), "same length, different bytes");
        }
    }
}

/// Runs one input through both decoders. Never panics on any input.
pub fn run(data: &[u8]) -> Outcome {
    let version = match data {
        [a, b, ..] => Some(i16::from_be_bytes([*a, *b])),
        _ => None,
    };
    let mut outcome = Outcome {
        version,
        ..Outcome::default()
    };

    if let Ok(sub) = Subscription::decode(data) {
        outcome.subscription = true;
        let version = version.expect("a decoded message has a version");
        assert!(version >= 0, "negative version {version} accepted");
        // Each pair comes from a 4-byte partition number.
        assert!(sub.owned_partitions.len() <= data.len() / 4);
        if version < 1 {
            assert!(sub.owned_partitions.is_empty(), "owned partitions before v1");
        }
        if version < 2 {
            assert_eq!(sub.generation_id, NO_GENERATION, "generation before v2");
        }
        if version < 3 {
            assert_eq!(sub.rack_id, None, "rack before v3");
        }
        let bytes = sub.encode();
        let again = Subscription::decode(&bytes).expect("a re-encoded subscription decodes");
        let expected = Subscription {
            owned_partitions: grouped(&sub.owned_partitions),
            ..sub
        };
        assert_eq!(again, expected, "subscription round trip");
        assert_eq!(again.encode(), bytes, "re-encoding is not stable");
        check_reencoding(data, version, 3, &bytes);
    }

    if data.is_empty() {
        // What the coordinator sends a member the leader gave nothing.
        let assignment = Assignment::decode(data).expect("zero bytes are an empty assignment");
        assert_eq!(assignment, Assignment::default());
        outcome.assignment = true;
    } else if let Ok(assignment) = Assignment::decode(data) {
        outcome.assignment = true;
        let version = version.expect("a decoded message has a version");
        assert!(version >= 0, "negative version {version} accepted");
        assert!(assignment.partitions.len() <= data.len() / 4);
        let bytes = assignment.encode();
        let again = Assignment::decode(&bytes).expect("a re-encoded assignment decodes");
        let expected = Assignment {
            partitions: grouped(&assignment.partitions),
            ..assignment
        };
        assert_eq!(again, expected, "assignment round trip");
        assert_eq!(again.encode(), bytes, "re-encoding is not stable");
        // Every assignment version has the version-3 layout.
        check_reencoding(data, version, 0, &bytes);
    }
    outcome
}
