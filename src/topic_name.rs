//! Kafka's rules for topic names, checked before a name goes to a broker.
//!
//! A legal name has 1 to 249 characters, each an ASCII letter, a digit,
//! `.`, `_` or `-`, and is neither `.` nor `..` (Kafka's
//! `org.apache.kafka.common.internals.Topic.validate`). A broker answers
//! any other name with `INVALID_TOPIC_EXCEPTION`; the clients here refuse it
//! locally with the same code and say what is wrong, instead of waiting
//! for metadata that can never come.

use crate::error::{Error, KafkaCode};

/// The longest legal topic name, in characters (Kafka's limit, which
/// leaves room for a partition suffix in a 255-character file name).
pub(crate) const MAX_LEN: usize = 249;

/// Checks `name` against Kafka's rules; the error is
/// `Broker(INVALID_TOPIC_EXCEPTION)` (as a broker would answer) and says
/// what is wrong.
pub(crate) fn validate(name: &str) -> Result<(), Error> {
    let problem = if name.is_empty() {
        "is empty".to_string()
    } else if name == "." || name == ".." {
        "cannot be `.` or `..`".to_string()
    } else if name.len() > MAX_LEN {
        format!(
            "is {} characters long; the limit is {MAX_LEN}",
            name.chars().count()
        )
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!("contains {bad:?}; a topic name has only ASCII letters, digits, '.', '_' and '-'")
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(60).collect();
    let ellipsis = if shown.len() < name.len() { "..." } else { "" };
    Err(Error::broker(
        KafkaCode::INVALID_TOPIC_EXCEPTION,
        format_args!("topic name `{shown}{ellipsis}` {problem}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_pass() {
        let longest = "a".repeat(MAX_LEN);
        for name in [
            "events",
            "a",
            "orders.v2",
            "__consumer_offsets",
            "A-Z_0-9",
            "...",
            &longest,
        ] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn illegal_names_fail_with_the_reason_and_the_broker_code() {
        let too_long = "a".repeat(MAX_LEN + 1);
        for (name, says) in [
            ("", "is empty"),
            (".", "cannot be"),
            ("..", "cannot be"),
            ("bad topic!", "contains ' '"),
            ("orders/eu", "contains '/'"),
            ("événements", "contains 'é'"),
            (too_long.as_str(), "250 characters long"),
        ] {
            let err = validate(name).expect_err(name);
            assert_eq!(err.kafka_code(), Some(KafkaCode::INVALID_TOPIC_EXCEPTION));
            assert!(!err.is_retriable(), "{err}");
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
    }
}
