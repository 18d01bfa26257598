//! Group membership rules, without I/O: who this member is in the group
//! (member id, generation, chosen protocol) and what each coordinator
//! error code means for it, as the Java consumer reads them.
//!
//! ```text
//!   code from Join/Sync/Heartbeat/OffsetCommit     reaction
//!   NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE     Rediscover (find the coordinator again)
//!   COORDINATOR_LOAD_IN_PROGRESS, other retriable  Retry after a backoff
//!   REBALANCE_IN_PROGRESS                          Rejoin (keep member id and partitions)
//!   ILLEGAL_GENERATION                             ResetGeneration (partitions lost, rejoin)
//!   UNKNOWN_MEMBER_ID                              ResetMember (partitions lost, new member id)
//!   FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED,
//!   INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT,
//!   GROUP_MAX_SIZE_REACHED, anything else          Fatal
//! ```

use crate::protocol::KafkaCode;

/// What a member does about an error code from its coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Try the same request again after the retry backoff.
    Retry,
    /// The coordinator moved or is down: find it again, then retry.
    Rediscover,
    /// The group is rebalancing: join again, keeping member id and
    /// partitions (they are revoked or kept by the rebalance protocol).
    Rejoin,
    /// This member's generation is gone: its partitions are lost (no
    /// commit for them); join again with the same member id.
    ResetGeneration,
    /// The coordinator does not know this member: partitions lost; join
    /// again as a new member.
    ResetMember,
    /// No retry helps: report the error to the application.
    Fatal,
}

/// The reaction to `code`.
pub(crate) fn reaction(code: KafkaCode) -> Reaction {
    match code {
        KafkaCode::NOT_COORDINATOR | KafkaCode::COORDINATOR_NOT_AVAILABLE => Reaction::Rediscover,
        KafkaCode::REBALANCE_IN_PROGRESS => Reaction::Rejoin,
        KafkaCode::ILLEGAL_GENERATION => Reaction::ResetGeneration,
        KafkaCode::UNKNOWN_MEMBER_ID => Reaction::ResetMember,
        KafkaCode::FENCED_INSTANCE_ID
        | KafkaCode::GROUP_AUTHORIZATION_FAILED
        | KafkaCode::INCONSISTENT_GROUP_PROTOCOL
        | KafkaCode::INVALID_SESSION_TIMEOUT
        | KafkaCode::GROUP_MAX_SIZE_REACHED
        | KafkaCode::INVALID_GROUP_ID => Reaction::Fatal,
        code if code.is_retriable() => Reaction::Retry,
        _ => Reaction::Fatal,
    }
}

/// Generation id of a member that has not joined (or whose generation was
/// reset).
pub(crate) const NO_GENERATION: i32 = -1;

/// Who this member is in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Given by the coordinator (empty before the first join).
    pub(crate) member_id: String,
    /// The generation of the last completed join and sync.
    pub(crate) generation: i32,
    /// The assignor protocol the group chose in that generation.
    pub(crate) protocol: Option<String>,
}

impl Member {
    pub(crate) fn new() -> Member {
        Member {
            member_id: String::new(),
            generation: NO_GENERATION,
            protocol: None,
        }
    }

    /// Whether the member holds a generation (joined and synced).
    pub(crate) fn is_stable(&self) -> bool {
        self.generation != NO_GENERATION
    }

    /// Applies a reset reaction: the generation goes, and with
    /// [`Reaction::ResetMember`] the member id too.
    pub(crate) fn reset(&mut self, reaction: Reaction) {
        match reaction {
            Reaction::ResetMember => {
                self.member_id.clear();
                self.generation = NO_GENERATION;
            }
            Reaction::ResetGeneration => self.generation = NO_GENERATION,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_errors_map_as_the_java_consumer_reads_them() {
        assert_eq!(reaction(KafkaCode::NOT_COORDINATOR), Reaction::Rediscover);
        assert_eq!(
            reaction(KafkaCode::COORDINATOR_NOT_AVAILABLE),
            Reaction::Rediscover
        );
        assert_eq!(
            reaction(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS),
            Reaction::Retry
        );
        assert_eq!(reaction(KafkaCode::REBALANCE_IN_PROGRESS), Reaction::Rejoin);
        assert_eq!(
            reaction(KafkaCode::ILLEGAL_GENERATION),
            Reaction::ResetGeneration
        );
        assert_eq!(
            reaction(KafkaCode::UNKNOWN_MEMBER_ID),
            Reaction::ResetMember
        );
        assert_eq!(reaction(KafkaCode::FENCED_INSTANCE_ID), Reaction::Fatal);
        assert_eq!(
            reaction(KafkaCode::GROUP_AUTHORIZATION_FAILED),
            Reaction::Fatal
        );
        assert_eq!(
            reaction(KafkaCode::INCONSISTENT_GROUP_PROTOCOL),
            Reaction::Fatal
        );
    }

    #[test]
    fn resets_drop_the_generation_and_an_unknown_member_its_id() {
        let mut member = Member {
            member_id: "m-1".into(),
            generation: 4,
            protocol: Some("range".into()),
        };
        assert!(member.is_stable());
        member.reset(Reaction::Rejoin);
        assert_eq!(member.generation, 4);
        member.reset(Reaction::ResetGeneration);
        assert_eq!(member.generation, NO_GENERATION);
        assert_eq!(member.member_id, "m-1");
        member.generation = 5;
        member.reset(Reaction::ResetMember);
        assert!(member.member_id.is_empty());
        assert!(!member.is_stable());
    }
}
