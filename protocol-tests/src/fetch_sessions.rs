//! Fetch sessions (KIP-227), as Kafka's `FetchSessionCache` keeps them.
//!
//! Each broker keeps at most a set number of sessions (Kafka's
//! `max.incremental.fetch.session.cache.slots`, 1000 by default; see
//! [`FakeClusterBuilder::fetch_session_cache_slots`]). A session holds, per
//! partition, what the client last asked (offset, leader epoch, maximum
//! bytes) and what it was last told (high watermark, last stable offset,
//! log start offset).
//!
//! How a Fetch is taken, by its session id and epoch:
//! - below v7, or epoch -1: sessionless (a session named with epoch -1 is
//!   closed);
//! - epoch 0: a full request; a session it names is closed, and a new one
//!   is opened with a random non-zero id when there is a free slot or one
//!   can be evicted (the least recently used);
//! - epoch above 0: an incremental request on the session named. An unknown
//!   id answers `FETCH_SESSION_ID_NOT_FOUND`, an epoch other than the one
//!   expected `INVALID_FETCH_SESSION_EPOCH` (the session stays as it was).
//!   Otherwise the partitions listed are added or updated, those forgotten
//!   removed, the epoch moves on, and the answer names only the partitions
//!   with records, an error, or a changed high watermark, last stable
//!   offset or log start offset. Partitions that returned records move to
//!   the end of the session, so that a small response budget reaches every
//!   partition in turn.
//!
//! [`FakeCluster::evict_fetch_sessions`] drops every session on demand, and
//! [`FakeCluster::fetch_session_stats`] counts what happened.
//!
//! [`FakeClusterBuilder::fetch_session_cache_slots`]: crate::FakeClusterBuilder::fetch_session_cache_slots
//! [`FakeCluster::evict_fetch_sessions`]: crate::FakeCluster::evict_fetch_sessions
//! [`FakeCluster::fetch_session_stats`]: crate::FakeCluster::fetch_session_stats

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use indexmap::IndexMap;

/// Kafka's default `max.incremental.fetch.session.cache.slots`.
pub const DEFAULT_CACHE_SLOTS: usize = 1000;

/// `FETCH_SESSION_ID_NOT_FOUND`.
pub(crate) const SESSION_ID_NOT_FOUND: i16 = 70;
/// `INVALID_FETCH_SESSION_EPOCH`.
pub(crate) const INVALID_SESSION_EPOCH: i16 = 71;

/// A partition in a session: its topic (name, or id for Fetch v13+) and
/// index.
pub(crate) type SessionKey = (SessionTopic, i32);

/// How a session's request named a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SessionTopic {
    /// By name (Fetch v7-v12).
    Name(String),
    /// By topic id (Fetch v13+).
    Id(uuid::Uuid),
}

/// What the client asked for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub log_start_offset: i64,
    pub max_bytes: i32,
}

/// What the answer said of one partition, compared with what the session
/// last told the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Told {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl Told {
    /// Nothing told yet: the first answer always names the partition.
    const NOTHING: Told = Told {
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    };
}

#[derive(Debug, Clone, Copy)]
struct CachedPartition {
    asked: Asked,
    told: Told,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    partitions: IndexMap<SessionKey, CachedPartition>,
    /// When it was last used, on the cache's own clock.
    last_used: u64,
}

/// Counters of a cluster's fetch sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchSessionStats {
    /// Sessions opened.
    pub created: u64,
    /// Sessions evicted (to make room, or by
    /// [`FakeCluster::evict_fetch_sessions`](crate::FakeCluster::evict_fetch_sessions)).
    pub evicted: u64,
    /// Sessions closed by their client (epoch -1, or a full request naming
    /// them).
    pub closed: u64,
    /// Full requests that asked for a session (epoch 0).
    pub full_requests: u64,
    /// Incremental requests accepted.
    pub incremental_requests: u64,
    /// Sessionless requests (below v7 or epoch -1).
    pub sessionless_requests: u64,
    /// `FETCH_SESSION_ID_NOT_FOUND` answers.
    pub unknown_session_errors: u64,
    /// `INVALID_FETCH_SESSION_EPOCH` answers.
    pub epoch_errors: u64,
    /// Partitions listed in Fetch requests, over all requests.
    pub partitions_listed: u64,
    /// Partitions incremental requests asked to forget.
    pub partitions_forgotten: u64,
}

/// How one Fetch is to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Sessionless, or a full request: answer every partition listed;
    /// `open` says whether to open a session for it afterwards.
    Full { open: bool },
    /// An incremental request on `session`: answer from these partitions
    /// (the whole session, in its order), naming only those with news.
    Incremental {
        session: i32,
        partitions: Vec<(SessionKey, Asked, Told)>,
    },
    /// Answer with this top-level error and nothing else.
    Error(i16),
}

/// The fetch sessions of every broker of a cluster.
#[derive(Debug)]
pub(crate) struct FetchSessionCache {
    slots: usize,
    brokers: HashMap<i32, HashMap<i32, Session>>,
    clock: u64,
    random: RandomState,
    stats: FetchSessionStats,
}

impl Default for FetchSessionCache {
    fn default() -> Self {
        Self {
            slots: DEFAULT_CACHE_SLOTS,
            brokers: HashMap::new(),
            clock: 0,
            random: RandomState::new(),
            stats: FetchSessionStats::default(),
        }
    }
}

impl FetchSessionCache {
    /// Sets how many sessions each broker keeps (0: none, every answer is
    /// sessionless).
    pub fn set_slots(&mut self, slots: usize) {
        self.slots = slots;
    }

    /// The counters so far.
    pub fn stats(&self) -> FetchSessionStats {
        self.stats
    }

    /// How many sessions are open over all brokers.
    pub fn len(&self) -> usize {
        self.brokers.values().map(HashMap::len).sum()
    }

    /// Drops every session of every broker; returns how many there were.
    pub fn evict_all(&mut self) -> usize {
        let n = self.len();
        self.brokers.clear();
        self.stats.evicted += n as u64;
        n
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Takes in a Fetch's session fields and partition lists, and says how
    /// to answer it. `listed` and `forgotten` use the request's own topic
    /// naming.
    pub fn plan(
        &mut self,
        broker: i32,
        version: i16,
        session_id: i32,
        epoch: i32,
        listed: &[(SessionKey, Asked)],
        forgotten: &[SessionKey],
    ) -> Plan {
        self.stats.partitions_listed += listed.len() as u64;
        let now = self.tick();
        let sessions = self.brokers.entry(broker).or_default();
        if version < 7 || epoch < 0 {
            if version >= 7 && session_id != 0 && sessions.remove(&session_id).is_some() {
                self.stats.closed += 1;
            }
            self.stats.sessionless_requests += 1;
            return Plan::Full { open: false };
        }
        if epoch == 0 {
            if session_id != 0 && sessions.remove(&session_id).is_some() {
                self.stats.closed += 1;
            }
            self.stats.full_requests += 1;
            return Plan::Full {
                open: self.slots > 0,
            };
        }
        let Some(session) = sessions.get_mut(&session_id) else {
            self.stats.unknown_session_errors += 1;
            return Plan::Error(SESSION_ID_NOT_FOUND);
        };
        if session.epoch != epoch {
            self.stats.epoch_errors += 1;
            return Plan::Error(INVALID_SESSION_EPOCH);
        }
        for (key, asked) in listed {
            match session.partitions.get_mut(key) {
                Some(cached) => cached.asked = *asked,
                None => {
                    session.partitions.insert(
                        key.clone(),
                        CachedPartition {
                            asked: *asked,
                            told: Told::NOTHING,
                        },
                    );
                }
            }
        }
        for key in forgotten {
            session.partitions.shift_remove(key);
        }
        self.stats.partitions_forgotten += forgotten.len() as u64;
        session.epoch = next_epoch(epoch);
        session.last_used = now;
        self.stats.incremental_requests += 1;
        Plan::Incremental {
            session: session_id,
            partitions: session
                .partitions
                .iter()
                .map(|(k, c)| (k.clone(), c.asked, c.told))
                .collect(),
        }
    }

    /// Opens a session for a full request on `broker` that listed
    /// `partitions` and was answered with `told`; returns its id, or 0 when
    /// no slot is free.
    pub fn open(
        &mut self,
        broker: i32,
        partitions: &[(SessionKey, Asked)],
        told: &HashMap<SessionKey, Told>,
    ) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        let now = self.tick();
        let slots = self.slots;
        let sessions = self.brokers.entry(broker).or_default();
        if sessions.len() >= slots {
            // Evict the least recently used.
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
            {
                sessions.remove(&oldest);
                self.stats.evicted += 1;
            }
        }
        let id = loop {
            let mut hasher = self.random.build_hasher();
            hasher.write_u64(now);
            hasher.write_usize(sessions.len());
            let id = (hasher.finish() as i32) & i32::MAX;
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
            self.clock += 1;
        };
        let partitions = partitions
            .iter()
            .map(|(key, asked)| {
                (
                    key.clone(),
                    CachedPartition {
                        asked: *asked,
                        told: told.get(key).copied().unwrap_or(Told::NOTHING),
                    },
                )
            })
            .collect();
        sessions.insert(
            id,
            Session {
                epoch: 1,
                partitions,
                last_used: now,
            },
        );
        self.stats.created += 1;
        id
    }

    /// Records what an incremental answer told: `told` for the partitions
    /// named, and those that returned records (`moved`) go to the end of
    /// the session.
    pub fn answered(
        &mut self,
        broker: i32,
        session_id: i32,
        told: &[(SessionKey, Told)],
        moved: &[SessionKey],
    ) {
        let Some(session) = self
            .brokers
            .get_mut(&broker)
            .and_then(|s| s.get_mut(&session_id))
        else {
            return;
        };
        for (key, t) in told {
            if let Some(cached) = session.partitions.get_mut(key) {
                cached.told = *t;
            }
        }
        for key in moved {
            if let Some(cached) = session.partitions.shift_remove(key) {
                session.partitions.insert(key.clone(), cached);
            }
        }
    }
}

/// The epoch after `epoch`, wrapping from `i32::MAX` to 1.
fn next_epoch(epoch: i32) -> i32 {
    epoch.checked_add(1).filter(|e| *e > 0).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> SessionKey {
        (SessionTopic::Name("t".into()), p)
    }

    fn asked(offset: i64) -> Asked {
        Asked {
            fetch_offset: offset,
            current_leader_epoch: -1,
            log_start_offset: -1,
            max_bytes: 1024,
        }
    }

    fn opened(cache: &mut FetchSessionCache) -> i32 {
        let listed = vec![(key(0), asked(0)), (key(1), asked(0))];
        assert_eq!(
            cache.plan(1, 12, 0, 0, &listed, &[]),
            Plan::Full { open: true }
        );
        cache.open(1, &listed, &HashMap::new())
    }

    #[test]
    fn incremental_updates_the_session_and_moves_the_epoch() {
        let mut cache = FetchSessionCache::default();
        let id = opened(&mut cache);
        assert_ne!(id, 0);
        let Plan::Incremental { partitions, .. } =
            cache.plan(1, 12, id, 1, &[(key(1), asked(5))], &[key(0)])
        else {
            panic!("expected an incremental plan");
        };
        assert_eq!(partitions.len(), 1);
        assert_eq!(partitions[0].1.fetch_offset, 5);
        // The same epoch again is refused.
        assert_eq!(
            cache.plan(1, 12, id, 1, &[], &[]),
            Plan::Error(INVALID_SESSION_EPOCH)
        );
        assert!(matches!(
            cache.plan(1, 12, id, 2, &[], &[]),
            Plan::Incremental { .. }
        ));
        assert_eq!(
            cache.plan(2, 12, id, 3, &[], &[]),
            Plan::Error(SESSION_ID_NOT_FOUND)
        );
    }

    #[test]
    fn full_cache_evicts_the_least_recently_used() {
        let mut cache = FetchSessionCache::default();
        cache.set_slots(2);
        let a = opened(&mut cache);
        let b = opened(&mut cache);
        // Using `a` makes `b` the least recently used.
        assert!(matches!(
            cache.plan(1, 12, a, 1, &[], &[]),
            Plan::Incremental { .. }
        ));
        let c = opened(&mut cache);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.stats().evicted, 1);
        assert_eq!(
            cache.plan(1, 12, b, 1, &[], &[]),
            Plan::Error(SESSION_ID_NOT_FOUND)
        );
        assert!(matches!(
            cache.plan(1, 12, c, 1, &[], &[]),
            Plan::Incremental { .. }
        ));
        assert_eq!(cache.evict_all(), 2);
    }

    #[test]
    fn closing_and_sessionless_requests() {
        let mut cache = FetchSessionCache::default();
        let id = opened(&mut cache);
        assert_eq!(
            cache.plan(1, 12, id, -1, &[], &[]),
            Plan::Full { open: false }
        );
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.plan(1, 6, 0, 0, &[], &[]), Plan::Full { open: false });
        cache.set_slots(0);
        assert_eq!(
            cache.plan(1, 12, 0, 0, &[], &[]),
            Plan::Full { open: false }
        );
        assert_eq!(cache.stats().closed, 1);
        assert_eq!(cache.stats().sessionless_requests, 2);
    }
}
