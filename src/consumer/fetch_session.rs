//! Client side of a fetch session with one broker (KIP-227).
//!
//! A [`FetchSession`] owns what the broker is known to hold for this
//! consumer: the session id, the next epoch, and the partitions (with
//! offset, leader epoch, log start offset and maximum bytes) the broker
//! last heard of. From the partitions wanted now it builds the next
//! request ([`FetchSession::build`]): a full one while no session exists,
//! or an incremental one listing only partitions added or changed, with
//! the partitions no longer wanted (unassigned, paused, moved to another
//! broker) to forget. From the broker's answer
//! ([`FetchSession::handle_response`]) it opens, keeps or drops the
//! session.
//!
//! Rules, as the Java consumer follows them:
//! - the first request is full with session id 0 and epoch 0 (asking for
//!   a session); an answer with a non-zero id opens it, an answer with id
//!   0 leaves the client sessionless (it keeps asking with full requests);
//! - each incremental request moves the epoch on, wrapping from
//!   `i32::MAX` to 1; the epoch is moved when the request is built, so an
//!   answer the caller later drops (a stale prefetch) does not roll it back.
//!   The broker saw that request all the same and moved its epoch too;
//! - an incremental answer names only the partitions with news; the others
//!   keep what the client knows of them;
//! - `FETCH_SESSION_ID_NOT_FOUND` drops the session: the next request is
//!   full with id 0 and epoch 0;
//! - `INVALID_FETCH_SESSION_EPOCH`, any other top-level error, a lost
//!   connection or an answer that does not fit the session (a changed id,
//!   a partition never asked for) drop it too, and the next full request
//!   names the old id with epoch 0, so that the broker frees it at once
//!   while it opens a new one;
//! - an incremental answer with session id 0 means the broker closed the
//!   session: its partitions are still good, the next request is full;
//! - a broker that negotiates a Fetch version below 7 gets sessionless
//!   requests (id 0, epoch -1).
//!
//! Answers are matched to the request they answer by a build number, so
//! an answer to a request older than the last one built (or built before a
//! reset) leaves the session as it is.
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
/// `FETCH_SESSION_ID_NOT_FOUND`.
const SESSION_ID_NOT_FOUND: i16 = 70;

/// A topic and partition.
pub(crate) type PartitionKey = (crate::record::Topic, i32);

/// What is asked for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionFetch {
    /// Offset to fetch from.
    pub fetch_offset: i64,
    /// Leader epoch known to the consumer (-1 when unknown).
    pub current_leader_epoch: i32,
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
    /// Which build this is, to hand back with the answer.
    pub build: u64,
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
    /// Session id given by the broker; 0 while none. Kept with
    /// `next_epoch` at [`INITIAL_EPOCH`] after a reset, to close it.
    session_id: i32,
    /// Epoch for the next request; [`INITIAL_EPOCH`] while no session is
    /// open.
    next_epoch: i32,
    /// Partitions the broker holds in the session, as last sent.
    sent: BTreeMap<PartitionKey, PartitionFetch>,
    /// Whether the last built request was full.
    last_full: bool,
    /// Requests built so far (the last one's number), bumped by resets.
    builds: u64,
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
    #[cfg(test)]
    pub(crate) fn session_id(&self) -> i32 {
        self.session_id
    }

    /// Whether a session is open (the next request is incremental).
    pub(crate) fn is_open(&self) -> bool {
        self.session_id != 0 && self.next_epoch != INITIAL_EPOCH
    }

    /// Drops the session: the next request is full, names the old id (so
    /// the broker frees it) and asks for a new one. Used on a lost
    /// connection, an abandoned request or an answer that does not fit.
    pub(crate) fn reset(&mut self) {
        if self.session_id < 0 {
            self.session_id = 0;
        }
        self.next_epoch = INITIAL_EPOCH;
        self.sent.clear();
        self.builds += 1;
    }

    /// Ends the session on the client's side when it closes: returns the id
    /// to close at the broker (a Fetch with epoch -1), if there is one.
    pub(crate) fn close(&mut self) -> Option<i32> {
        let id = self.session_id;
        self.forget();
        (id > 0 && !self.disabled).then_some(id)
    }

    /// Forgets the session entirely (the broker no longer knows it): the
    /// next request is full with id 0 and epoch 0.
    fn forget(&mut self) {
        self.reset();
        self.session_id = 0;
    }

    /// Builds the next request for `wanted` (the partitions to fetch now)
    /// under the Fetch `version` negotiated with the broker. The epoch moves
    /// on here, so an answer later dropped does not roll it back.
    pub(crate) fn build(
        &mut self,
        wanted: &BTreeMap<PartitionKey, PartitionFetch>,
        version: i16,
    ) -> SessionRequest {
        self.builds += 1;
        let build = self.builds;
        let all: Vec<_> = wanted.iter().map(|(k, v)| (k.clone(), *v)).collect();
        if self.disabled || version < MIN_SESSION_VERSION {
            self.forget();
            self.builds = build;
            self.last_full = true;
            return SessionRequest {
                session_id: 0,
                session_epoch: FINAL_EPOCH,
                full: true,
                partitions: all,
                forgotten: Vec::new(),
                build,
            };
        }
        if !self.is_open() {
            self.sent = wanted.clone();
            self.last_full = true;
            return SessionRequest {
                session_id: self.session_id,
                session_epoch: INITIAL_EPOCH,
                full: true,
                partitions: all,
                forgotten: Vec::new(),
                build,
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
            build,
        }
    }

    /// Takes in the answer to build `build`: its top-level error code, its
    /// session id and the partitions it names. Partitions named in an
    /// answer that were never asked for reset the session. An answer to an
    /// older build leaves the session as it is (its partition data is
    /// usable unless it carries an error).
    pub(crate) fn handle_response(
        &mut self,
        build: u64,
        error_code: i16,
        session_id: i32,
        named: &[PartitionKey],
    ) -> SessionOutcome {
        if self.disabled || build != self.builds {
            return SessionOutcome::Accepted;
        }
        if error_code == SESSION_ID_NOT_FOUND {
            self.forget();
            return SessionOutcome::Reset { usable: false };
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
                self.forget();
            } else if session_id < 0 {
                self.forget();
                return SessionOutcome::Reset { usable: true };
            } else {
                self.session_id = session_id;
                self.next_epoch = next_epoch(INITIAL_EPOCH);
            }
            return SessionOutcome::Accepted;
        }
        if session_id == 0 {
            // The broker closed the session; this answer still stands.
            self.forget();
            return SessionOutcome::Reset { usable: true };
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
            current_leader_epoch: -1,
            log_start_offset: -1,
            max_bytes: 1024,
        }
    }

    fn wanted(list: &[(&str, i32, i64)]) -> BTreeMap<PartitionKey, PartitionFetch> {
        list.iter()
            .map(|(t, p, o)| ((crate::record::Topic::from(*t), *p), pf(*o)))
            .collect()
    }

    fn key(t: &str, p: i32) -> PartitionKey {
        (crate::record::Topic::from(t), p)
    }

    fn opened(w: &BTreeMap<PartitionKey, PartitionFetch>) -> FetchSession {
        let mut s = FetchSession::new(true);
        let r = s.build(w, 12);
        assert_eq!((r.session_id, r.session_epoch, r.full), (0, 0, true));
        assert_eq!(
            s.handle_response(r.build, 0, 42, &[]),
            SessionOutcome::Accepted
        );
        s
    }

    /// Builds the next request and answers it with `code`, `id`, `named`.
    fn round(
        s: &mut FetchSession,
        w: &BTreeMap<PartitionKey, PartitionFetch>,
        code: i16,
        id: i32,
        named: &[PartitionKey],
    ) -> (SessionRequest, SessionOutcome) {
        let r = s.build(w, 12);
        let outcome = s.handle_response(r.build, code, id, named);
        (r, outcome)
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
        let (r, outcome) = round(&mut s, &w, 0, 42, &[]);
        assert_eq!(outcome, SessionOutcome::Accepted);
        assert!(!r.full);
        assert_eq!((r.session_id, r.session_epoch), (42, 1));
        assert!(r.partitions.is_empty());
        assert!(r.forgotten.is_empty());
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
    fn paused_partition_is_forgotten_and_listed_again_on_resume() {
        let all = wanted(&[("t", 0, 3), ("t", 1, 5)]);
        let mut s = opened(&all);
        let paused = wanted(&[("t", 0, 3)]);
        let (r, _) = round(&mut s, &paused, 0, 42, &[]);
        assert!(r.partitions.is_empty());
        assert_eq!(r.forgotten, vec![key("t", 1)]);
        let (r, _) = round(&mut s, &all, 0, 42, &[]);
        assert_eq!(r.partitions, vec![(key("t", 1), pf(5))]);
        assert!(r.forgotten.is_empty());
    }

    #[test]
    fn max_bytes_leader_epoch_or_log_start_change_is_listed() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let mut changed = w.clone();
        changed.get_mut(&key("t", 0)).unwrap().log_start_offset = 3;
        assert_eq!(s.build(&changed, 12).partitions.len(), 1);
        changed.get_mut(&key("t", 0)).unwrap().max_bytes = 1;
        assert_eq!(s.build(&changed, 12).partitions.len(), 1);
        changed.get_mut(&key("t", 0)).unwrap().current_leader_epoch = 4;
        assert_eq!(s.build(&changed, 12).partitions.len(), 1);
        assert!(s.build(&changed, 12).partitions.is_empty());
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
    fn unknown_session_asks_for_a_new_one() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let (_, outcome) = round(&mut s, &w, 70, 0, &[]);
        assert_eq!(outcome, SessionOutcome::Reset { usable: false });
        let r = s.build(&w, 12);
        assert!(r.full);
        assert_eq!((r.session_id, r.session_epoch), (0, 0));
        assert_eq!(r.partitions.len(), 1);
    }

    #[test]
    fn other_errors_close_the_old_session_and_ask_for_a_new_one() {
        for code in [71i16, 7] {
            let w = wanted(&[("t", 0, 0)]);
            let mut s = opened(&w);
            let (_, outcome) = round(&mut s, &w, code, 0, &[]);
            assert_eq!(outcome, SessionOutcome::Reset { usable: false });
            let r = s.build(&w, 12);
            assert!(r.full);
            assert_eq!((r.session_id, r.session_epoch), (42, 0));
            assert_eq!(r.partitions.len(), 1);
            // The new session replaces the old one.
            assert_eq!(
                s.handle_response(r.build, 0, 43, &[]),
                SessionOutcome::Accepted
            );
            assert_eq!((s.build(&w, 12).session_id, s.session_id()), (43, 43));
        }
    }

    #[test]
    fn sessionless_broker_stays_full() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = FetchSession::new(true);
        let (_, outcome) = round(&mut s, &w, 0, 0, &[]);
        assert_eq!(outcome, SessionOutcome::Accepted);
        assert!(!s.is_open());
        let r = s.build(&w, 12);
        assert!(r.full);
        assert_eq!((r.session_id, r.session_epoch), (0, 0));
    }

    #[test]
    fn broker_closing_the_session_keeps_the_answer() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let (_, outcome) = round(&mut s, &w, 0, 0, &[key("t", 0)]);
        assert_eq!(outcome, SessionOutcome::Reset { usable: true });
        let r = s.build(&w, 12);
        assert_eq!((r.session_id, r.session_epoch, r.full), (0, 0, true));
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
        assert_eq!(
            off.handle_response(r.build, 0, 9, &[]),
            SessionOutcome::Accepted
        );
        assert!(!off.is_open());
    }

    #[test]
    fn dropped_answer_does_not_roll_the_epoch_back() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let first = s.build(&w, 12);
        assert_eq!(first.session_epoch, 1);
        // The answer to epoch 1 is dropped unread: the next is epoch 2.
        let second = s.build(&w, 12);
        assert_eq!(second.session_epoch, 2);
        // A late answer to the first build changes nothing.
        assert_eq!(
            s.handle_response(first.build, 71, 0, &[]),
            SessionOutcome::Accepted
        );
        assert!(s.is_open());
        assert_eq!(
            s.handle_response(second.build, 0, 42, &[]),
            SessionOutcome::Accepted
        );
        assert_eq!(s.build(&w, 12).session_epoch, 3);
    }

    #[test]
    fn hostile_answers_reset_without_panic() {
        let w = wanted(&[("t", 0, 0)]);
        // A partition never asked for.
        let mut s = opened(&w);
        assert_eq!(
            round(&mut s, &w, 0, 42, &[key("x", 3)]).1,
            SessionOutcome::Reset { usable: false }
        );
        assert!(!s.is_open());
        // A session id that changes mid-session.
        let mut s = opened(&w);
        assert_eq!(
            round(&mut s, &w, 0, 43, &[]).1,
            SessionOutcome::Reset { usable: false }
        );
        assert!(s.build(&w, 12).full);
        // A negative session id on a full answer.
        let mut s = FetchSession::new(true);
        assert_eq!(
            round(&mut s, &w, 0, -5, &[]).1,
            SessionOutcome::Reset { usable: true }
        );
        assert!(!s.is_open());
        assert_eq!(s.build(&w, 12).session_id, 0);
    }

    #[test]
    fn close_names_the_session_once() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        assert_eq!(s.close(), Some(42));
        assert_eq!(s.close(), None);
        assert!(s.build(&w, 12).full);
        assert_eq!(FetchSession::new(true).close(), None);
    }

    #[test]
    fn connection_loss_resets() {
        let w = wanted(&[("t", 0, 0)]);
        let mut s = opened(&w);
        let pending = s.build(&w, 12);
        s.reset();
        assert!(!s.is_open());
        // The answer to a request sent before the reset changes nothing.
        assert_eq!(
            s.handle_response(pending.build, 0, 42, &[]),
            SessionOutcome::Accepted
        );
        let r = s.build(&w, 12);
        assert!(r.full);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
    }
}
