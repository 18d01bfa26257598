//! Client side of a fetch session with one broker (KIP-227).
//!
//! A [`FetchSession`] owns what the broker is known to hold for this
//! consumer: the session id, the next epoch, and the partitions (with
//! offset, log start offset and maximum bytes) the broker last heard of.
//! From the partitions wanted now it builds the next request
//! ([`FetchSession::build`]): a full one while no session exists, or an
//! incremental one listing only partitions added or changed, with the
//! partitions no longer wanted to forget. From the broker's answer
//! ([`FetchSession::handle_response`]) it opens, keeps or drops the
//! session.
//!
//! Rules, as the Java consumer follows them:
//! - the first request is full with session id 0 and epoch 0 (asking for
//!   a session); an answer with a non-zero id opens it, an answer with id
//!   0 leaves the client sessionless (it keeps asking with full requests);
//! - each incremental request moves the epoch on, wrapping from
//!   `i32::MAX` to 1; the epoch is moved when the request is built, so an
//!   answer the caller later drops (a stale prefetch) does not roll it back;
//! - `FETCH_SESSION_ID_NOT_FOUND`, `INVALID_FETCH_SESSION_EPOCH`, any other
//!   top-level error, a lost connection or an answer that does not fit the
//!   session (a changed id, a partition never asked for in a full answer)
//!   drop the session: the next request is full and asks for a new one;
//! - a broker that negotiates a Fetch version below 7 gets sessionless
//!   requests (id 0, epoch -1).
//!
//! This module is pure logic: the fetcher turns a [`SessionRequest`] into
//! wire types.

use std::collections::BTreeMap;

/// Session epoch asking for no session at all (KIP-227).
pub(crate) const FINAL_EPOCH: i32 = -1;
/// Session epoch of a full request asking for a new session.
pub(crate) const INITIAL_EPOCH: i32 = 0;
/// First Fetch version that carries session fields.
pub(crate) const MIN_SESSION_VERSION: i16 = 7;

/// A topic and partition.
pub(crate) type PartitionKey = (String, i32);

/// What is asked for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionFetch {
    /// Offset to fetch from.
    pub fetch_offset: i64,
    /// Log start offset known to the consumer (-1 when unknown).
    pub log_start_offset: i64,
    /// Most bytes to return for the partition.
    pub max_bytes: i32,
}

/// The next Fetch's session fields and partition lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRequest {
    /// Session id to send.
    pub session_id: i32,
    /// Session epoch to send.
    pub session_epoch: i32,
    /// Whether every wanted partition is listed (a full request).
    pub full: bool,
    /// Partitions to list, with what is asked.
    pub partitions: Vec<(PartitionKey, PartitionFetch)>,
    /// Partitions the broker should drop from the session.
    pub forgotten: Vec<PartitionKey>,
}

/// What the caller learns from an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionOutcome {
    /// The answer fits: its partitions are to be used.
    Accepted,
    /// The session was dropped; the answer's partitions (if any) are still
    /// usable when `usable` is true, and the next request is full.
    Reset {
        /// Whether the answer's partition data can still be used.
        usable: bool,
    },
}

/// One broker's fetch session as the client sees it.
#[derive(Debug, Default)]
pub(crate) struct FetchSession {
    /// Session id given by the broker; 0 while none.
    session_id: i32,
    /// Epoch for the next request.
    next_epoch: i32,
    /// Partitions the broker holds in the session, as last sent.
    sent: BTreeMap<PartitionKey, PartitionFetch>,
    /// Whether the last built request was full.
    last_full: bool,
    /// Whether sessions are used at all.
    disabled: bool,
}

/// The epoch after `epoch`, wrapping from `i32::MAX` to 1.
pub(crate) fn next_epoch(epoch: i32) -> i32 {
    epoch.checked_add(1).filter(|e| *e > 0).unwrap_or(1)
}

impl FetchSession {
    /// A session state asking for a session on the first request; with
    /// `enabled` false every request is sessionless.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            disabled: !enabled,
            ..Self::default()
        }
    }

    /// The broker's session id (0 while none).
    pub(crate) fn session_id(&self) -> i32 {
        self.session_id
    }

    /// Whether a session is open.
    pub(crate) fn is_open(&self) -> bool {
        self.session_id != 0
    }

    /// Drops the session: the next request is full and asks for a new one.
    /// Used on a lost connection or an abandoned request.
    pub(crate) fn reset(&mut self) {
        self.session_id = 0;
        self.next_epoch = INITIAL_EPOCH;
        self.sent.clear();
    }

    /// Builds the next request for `wanted` (the partitions to fetch now)
    /// under the Fetch `version` negotiated with the broker. The epoch moves
    /// on here, so an answer later dropped does not roll it back.
    pub(crate) fn build(
        &mut self,
        wanted: &BTreeMap<PartitionKey, PartitionFetch>,
        version: i16,
    ) -> SessionRequest {
        let all: Vec<_> = wanted.iter().map(|(k, v)| (k.clone(), *v)).collect();
        if self.disabled || version < MIN_SESSION_VERSION {
            self.reset();
            self.last_full = true;
            return SessionRequest {
                session_id: 0,
                session_epoch: FINAL_EPOCH,
                full: true,
                partitions: all,
                forgotten: Vec::new(),
            };
        }
        if !self.is_open() {
            self.sent = wanted.clone();
            self.last_full = true;
            return SessionRequest {
                session_id: 0,
                session_epoch: INITIAL_EPOCH,
                full: true,
                partitions: all,
                forgotten: Vec::new(),
            };
        }
        let partitions: Vec<_> = wanted
            .iter()
            .filter(|(k, v)| self.sent.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let forgotten: Vec<_> = self
            .sent
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        self.sent = wanted.clone();
        self.last_full = false;
        let epoch = self.next_epoch;
        self.next_epoch = next_epoch(epoch);
        SessionRequest {
            session_id: self.session_id,
            session_epoch: epoch,
            full: false,
            partitions,
            forgotten,
        }
    }

    /// Takes in an answer to the last built request: its top-level error
    /// code, its session id and the partitions it names. Partitions named in
    /// an answer that were never asked for reset the session.
    pub(crate) fn handle_response(
        &mut self,
        error_code: i16,
        session_id: i32,
        named: &[PartitionKey],
    ) -> SessionOutcome {
        if self.disabled {
            return SessionOutcome::Accepted;
        }
        if error_code != 0 {
            self.reset();
            return SessionOutcome::Reset { usable: false };
        }
        if named.iter().any(|k| !self.sent.contains_key(k)) {
            self.reset();
            return SessionOutcome::Reset { usable: false };
        }
        if self.last_full {
            if session_id == 0 {
                // Sessionless broker (or no room): stay full.
                self.reset();
            } else if session_id < 0 {
                self.reset();
                return SessionOutcome::Reset { usable: true };
            } else {
                self.session_id = session_id;
                self.next_epoch = next_epoch(INITIAL_EPOCH);
            }
            return SessionOutcome::Accepted;
        }
        if session_id != self.session_id {
            self.reset();
            return SessionOutcome::Reset { usable: false };
        }
        SessionOutcome::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(offset: i64) -> PartitionFetch {
        PartitionFetch {
            fetch_offset: offset,
            log_start_offset: -1,
            max_bytes: 1024,
        }
    }

    fn wanted(list: &[(&str, i32, i64)]) -> BTreeMap<PartitionKey, PartitionFetch> {
        list.iter()
            .map(|(t, p, o)| (((*t).to_string(), *p), pf(*o)))
            .collect()
    }

    fn key(t: &str, p: i32) -> PartitionKey {
        (t.to_string(), p)
    }

    fn opened(w: &BTreeMap<PartitionKey, PartitionFetch>) -> FetchSession {
        let mut s = FetchSession::new(true);
        let r = s.build(w, 12);
        assert_eq!((r.session_id, r.session_epoch, r.full), (0, 0, true));
        assert_eq!(s.handle_response(0, 42, &[]), SessionOutcome::Accepted);
        s
    }

    #[test]
    fn first_request_is_full_and_asks_for_a_session() {
        let w = wanted(&[("t", 0, 0), ("t", 1, 5)]);
        let mut s = FetchSession::new(true);
        let r = s.build(&w, 12);
        assert!(r.full);
        assert_eq!(r.session_id, 0);
        assert_eq!(r.session_epoch, 0);
        assert_eq!(r.partitions.len(), 2);
        assert!(r.forgotten.is_empty());
    }

    #[test]
    fn idle_incremental_lists_nothing() {
        let w = wanted(&[("t", 0, 0), ("t", 1, 5)]);
        let mut s = opened(&w);
        let r = s.build(&w, 12);
        assert!(!r.full);
        assert_eq!((r.session_id, r.session_epoch), (42, 1));
        assert!(r.partitions.is_empty());
        assert!(r.forgotten.is_empty());
        assert_eq!(s.handle_response(0, 42, &[]), SessionOutcome::Accepted);
        assert_eq!(s.build(&w, 12).session_epoch, 2);
    }

    #[test]
    fn incremental_lists_adds_changes_and_forgets() {
        let mut s = opened(&wanted(&[("t", 0, 0), ("t", 1, 5), ("t", 2, 7)]));
        let now = wanted(&[("t", 0, 0), ("t", 1, 9), ("u", 0, 0)]);
        let r = s.build(&now, 12);
        let listed: Vec<_> = r.partitions.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(listed, vec![key("t", 1), key("u", 0)]);
        assert_eq!(r.partitions[0].1.fetch_offset, 9);
        assert_eq!(r.forgotten, vec![key("t", 2)]);
    }

    #[test]
    fn max_bytes_or_log_start_change_is_listed() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let mut changed = w.clone();
        changed.get_mut(&key("t", 0)).unwrap().log_start_offset = 3;
        assert_eq!(s.build(&changed, 12).partitions.len(), 1);
        changed.get_mut(&key("t", 0)).unwrap().max_bytes = 1;
        assert_eq!(s.build(&changed, 12).partitions.len(), 1);
    }

    #[test]
    fn epoch_wraps_to_one() {
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(1), 2);
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        s.next_epoch = i32::MAX;
        assert_eq!(s.build(&w, 12).session_epoch, i32::MAX);
        assert_eq!(s.build(&w, 12).session_epoch, 1);
    }

    #[test]
    fn session_errors_reset_to_a_full_request() {
        for code in [70i16, 71, 7] {
            let w = wanted(&[("t", 0, 0)]);
            let mut s = opened(&w);
            s.build(&w, 12);
            assert_eq!(
                s.handle_response(code, 0, &[]),
                SessionOutcome::Reset { usable: false }
            );
            let r = s.build(&w, 12);
            assert!(r.full);
            assert_eq!((r.session_id, r.session_epoch), (0, 0));
            assert_eq!(r.partitions.len(), 1);
        }
    }

    #[test]
    fn sessionless_broker_stays_full() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = FetchSession::new(true);
        s.build(&w, 12);
        assert_eq!(s.handle_response(0, 0, &[]), SessionOutcome::Accepted);
        assert!(!s.is_open());
        let r = s.build(&w, 12);
        assert!(r.full);
        assert_eq!(r.session_epoch, 0);
    }

    #[test]
    fn old_versions_and_disabled_are_sessionless() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = FetchSession::new(true);
        let r = s.build(&w, 6);
        assert_eq!((r.session_id, r.session_epoch, r.full), (0, -1, true));
        let mut off = FetchSession::new(false);
        let r = off.build(&w, 12);
        assert_eq!((r.session_id, r.session_epoch), (0, -1));
        assert_eq!(off.handle_response(0, 9, &[]), SessionOutcome::Accepted);
        assert!(!off.is_open());
    }

    #[test]
    fn dropped_answer_does_not_roll_the_epoch_back() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        assert_eq!(s.build(&w, 12).session_epoch, 1);
        // The answer to epoch 1 is dropped unread: the next is epoch 2.
        assert_eq!(s.build(&w, 12).session_epoch, 2);
    }

    #[test]
    fn hostile_answers_reset_without_panic() {
        let w = wanted(&[("t", 0, 0)]);
        // A partition never asked for.
        let mut s = opened(&w);
        s.build(&w, 12);
        assert_eq!(
            s.handle_response(0, 42, &[key("x", 3)]),
            SessionOutcome::Reset { usable: false }
        );
        assert!(!s.is_open());
        // A session id that changes mid-session.
        let mut s = opened(&w);
        s.build(&w, 12);
        assert_eq!(
            s.handle_response(0, 43, &[]),
            SessionOutcome::Reset { usable: false }
        );
        assert!(s.build(&w, 12).full);
        // A negative session id on a full answer.
        let mut s = FetchSession::new(true);
        s.build(&w, 12);
        assert_eq!(
            s.handle_response(0, -5, &[]),
            SessionOutcome::Reset { usable: true }
        );
        assert!(!s.is_open());
    }

    #[test]
    fn connection_loss_resets() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        s.reset();
        assert_eq!(s.session_id(), 0);
        assert!(s.build(&w, 12).full);
    }
}
