//! The retry policy: what to do with a batch whose attempt did not succeed,
//! decided in one exhaustive match, and the exponential backoff with jitter
//! between attempts (KIP-580).

use std::time::Duration;

use crate::protocol::KafkaCode;

/// How an attempt ended, when it did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The broker answered the partition with an error code.
    Code(KafkaCode),
    /// The request never got an answer: connect failure (`written` false),
    /// or a timeout or lost connection after it was written.
    Transport {
        /// Whether the request may have reached the broker.
        written: bool,
    },
    /// The request failed with an error retrying cannot fix (the broker
    /// refused to authenticate the connection, including a refused
    /// re-authentication, or the TLS handshake failed).
    Fatal {
        /// Whether the request may have reached the broker.
        written: bool,
    },
    /// The response did not mention the partition.
    MissingPartition,
    /// A leadership error (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH)
    /// whose response named the new leader (KIP-951), and the metadata
    /// cache took that hint: the new leader is known already.
    LeaderMoved,
}

/// What the engine does next with the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAction {
    /// Send it again after a backoff.
    Retry {
        /// Forget the partition's leader and refresh metadata first.
        refresh_metadata: bool,
        /// The attempt may have been written to the log.
        possibly_persisted: bool,
        /// Wait for the retry backoff first (`false`: the cause is already
        /// known to be fixed, so resend at once, as KIP-951 asks).
        backoff: bool,
    },
    /// Fail its records.
    Fail {
        /// The attempt may have been written to the log.
        possibly_persisted: bool,
    },
}

/// The one place that maps an outcome to an action.
pub(crate) fn classify(outcome: Outcome) -> RetryAction {
    match outcome {
        // The protocol table calls CORRUPT_MESSAGE retriable, but the same
        // bytes would be refused again.
        Outcome::Code(KafkaCode::CORRUPT_MESSAGE) => RetryAction::Fail {
            possibly_persisted: false,
        },
        Outcome::Code(code) if code.is_retriable() => RetryAction::Retry {
            refresh_metadata: code.invalidates_metadata(),
            possibly_persisted: matches!(
                code,
                KafkaCode::REQUEST_TIMED_OUT
                    | KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                    | KafkaCode::NETWORK_EXCEPTION
            ),
            backoff: true,
        },
        Outcome::Code(_) => RetryAction::Fail {
            possibly_persisted: false,
        },
        Outcome::Transport { written } => RetryAction::Retry {
            refresh_metadata: true,
            possibly_persisted: written,
            backoff: true,
        },
        Outcome::Fatal { written } => RetryAction::Fail {
            possibly_persisted: written,
        },
        Outcome::MissingPartition => RetryAction::Retry {
            refresh_metadata: false,
            possibly_persisted: true,
            backoff: true,
        },
        Outcome::LeaderMoved => RetryAction::Retry {
            refresh_metadata: false,
            possibly_persisted: false,
            backoff: false,
        },
    }
}

/// A small seeded generator (SplitMix64) for jitter: deterministic per seed.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The backoff before attempt `attempt + 1` (`attempt` >= 1):
    /// `base * 2^(attempt-1)`, at most `max`, times a factor in [0.8, 1.2).
    pub(crate) fn backoff(&mut self, base: Duration, max: Duration, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let raw = base.saturating_mul(1u32 << exp).min(max);
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        raw.mul_f64(0.8 + 0.4 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_errors_refresh_and_auth_errors_fail() {
        assert_eq!(
            classify(Outcome::Code(KafkaCode::NOT_LEADER_OR_FOLLOWER)),
            RetryAction::Retry {
                refresh_metadata: true,
                possibly_persisted: false,
                backoff: true,
            }
        );
        assert_eq!(
            classify(Outcome::LeaderMoved),
            RetryAction::Retry {
                refresh_metadata: false,
                possibly_persisted: false,
                backoff: false,
            }
        );
        assert_eq!(
            classify(Outcome::Code(KafkaCode::KAFKA_STORAGE_ERROR)),
            RetryAction::Retry {
                refresh_metadata: true,
                possibly_persisted: false,
                backoff: true,
            }
        );
        assert_eq!(
            classify(Outcome::Code(KafkaCode::TOPIC_AUTHORIZATION_FAILED)),
            RetryAction::Fail {
                possibly_persisted: false
            }
        );
        assert!(matches!(
            classify(Outcome::Transport { written: true }),
            RetryAction::Retry {
                possibly_persisted: true,
                ..
            }
        ));
        // A connection the broker would not (re-)authenticate fails the
        // batch at once, saying whether it may have been written.
        assert_eq!(
            classify(Outcome::Fatal { written: true }),
            RetryAction::Fail {
                possibly_persisted: true
            }
        );
        assert_eq!(
            classify(Outcome::Fatal { written: false }),
            RetryAction::Fail {
                possibly_persisted: false
            }
        );
    }

    #[test]
    fn backoff_grows_to_the_cap_with_bounded_jitter() {
        let mut j = Jitter::new(1);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..10 {
            let b = j.backoff(base, max, attempt);
            let raw = (base * (1 << (attempt - 1))).min(max);
            assert!(
                b >= raw.mul_f64(0.8) && b < raw.mul_f64(1.2),
                "{attempt}: {b:?}"
            );
        }
    }
}
