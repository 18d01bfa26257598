//! The producer's view of the cluster: brokers, and per topic its partitions'
//! leaders and leader epochs, plus when to ask for fresh metadata.
//!
//! Leader epochs never go backwards: a Metadata response from a broker that
//! has not caught up yet (it reports an older epoch for a partition) does not
//! replace the newer leader we already know.
//!
//! ```text
//!            request_refresh() / max age passed / unknown topic
//!   Fresh ───────────────────────────────────────────────────► Wanted
//!     ▲                                                          │ poll: request goes out
//!     │ response (apply)                                         ▼
//!     └──────────────────────────────────────────────────── InFlight
//!                        failure: Wanted again after retry_backoff
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::topic_table::{TopicSlot, TopicTable};
use crate::metadata::ClusterMetadata;
use crate::protocol::KafkaCode;
use crate::record::Topic;

/// A metadata request to make: the topics, and the broker to ask
/// (`None`: any bootstrap server).
pub(crate) type MetadataAsk = (Vec<String>, Option<(i32, String)>);

/// One partition's leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leadership {
    pub(crate) leader: Option<i32>,
    pub(crate) epoch: Option<i32>,
}

/// What is known about one topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicInfo {
    /// Per partition (index = partition id).
    pub(crate) partitions: Vec<Leadership>,
    /// Partitions with a leader, ascending.
    pub(crate) available: Vec<i32>,
    /// The last topic-level error reported.
    pub(crate) error: Option<KafkaCode>,
}

impl TopicInfo {
    fn rebuild_available(&mut self) {
        self.available = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.leader.is_some())
            .filter_map(|(i, _)| i32::try_from(i).ok())
            .collect();
    }

    /// The leader of `partition`, if known.
    pub(crate) fn leader(&self, partition: i32) -> Option<i32> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
            .and_then(|p| p.leader)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    Fresh,
    Wanted,
    InFlight(u64),
}

/// The metadata cache and its refresh schedule.
#[derive(Debug)]
pub(crate) struct MetadataCache {
    brokers: BTreeMap<i32, String>,
    /// By name; the engine's queues are keyed by these very names (see
    /// [`key`](Self::key)), so its lookups compare pointers, not bytes,
    /// and a record's topic is found by its slot (see
    /// [`topic_at`](Self::topic_at)).
    topics: TopicTable<TopicInfo>,
    /// Every topic this producer has been asked to send to.
    interest: BTreeSet<String>,
    /// The topics the request in flight (or the last one) asked for.
    asked: BTreeSet<String>,
    state: FetchState,
    last_refresh: Option<Instant>,
    not_before: Option<Instant>,
    max_age: Duration,
    backoff: Duration,
    next_node: usize,
}

impl MetadataCache {
    pub(crate) fn new(max_age: Duration, backoff: Duration) -> MetadataCache {
        MetadataCache {
            brokers: BTreeMap::new(),
            topics: TopicTable::default(),
            interest: BTreeSet::new(),
            asked: BTreeSet::new(),
            state: FetchState::Wanted,
            last_refresh: None,
            not_before: None,
            max_age,
            backoff,
            next_node: 0,
        }
    }

    /// Tests: a topic with partitions, by name.
    #[cfg(test)]
    pub(crate) fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name).filter(|t| !t.partitions.is_empty())
    }

    /// The topic with partitions in `slot` (from [`key`](Self::key)), and
    /// the cache's own name for it: found without a search by name.
    pub(crate) fn topic_at(&self, slot: TopicSlot) -> Option<(&Topic, &TopicInfo)> {
        self.topics
            .at(slot)
            .filter(|(_, t)| !t.partitions.is_empty())
    }

    /// The cache's own shared name for a topic it holds, and its slot (which
    /// stays good: the cache never forgets a topic).
    pub(crate) fn key(&self, name: &str) -> Option<(&Topic, TopicSlot)> {
        self.topics.find(name).map(|(key, slot, _)| (key, slot))
    }

    /// Topics with partitions.
    pub(crate) fn known_topics(&self) -> impl Iterator<Item = &str> {
        self.topics
            .iter()
            .filter(|(_, _, t)| !t.partitions.is_empty())
            .map(|(name, _, _)| name.as_str())
    }

    pub(crate) fn broker_address(&self, id: i32) -> Option<&str> {
        self.brokers.get(&id).map(String::as_str)
    }

    /// Notes a topic to include in every refresh; asks for a refresh when
    /// the topic is new.
    pub(crate) fn add_interest(&mut self, topic: &str) {
        if !self.interest.contains(topic) {
            self.interest.insert(topic.to_string());
            self.request_refresh();
        }
    }

    /// Asks for a refresh as soon as the backoff allows.
    pub(crate) fn request_refresh(&mut self) {
        if self.state == FetchState::Fresh {
            self.state = FetchState::Wanted;
        }
    }

    /// When the cache wants to act next (a refresh becoming due).
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match self.state {
            FetchState::InFlight(_) => None,
            FetchState::Wanted => Some(self.not_before.unwrap_or(now)),
            FetchState::Fresh => self.last_refresh.map(|t| t + self.max_age),
        }
    }

    /// If a refresh is due at `now`, marks it in flight as `id` and returns
    /// the topics to ask for and a broker to ask (`None`: any bootstrap
    /// server).
    pub(crate) fn poll_request(&mut self, now: Instant, id: u64) -> Option<MetadataAsk> {
        if self.state == FetchState::Fresh
            && self.last_refresh.is_some_and(|t| now >= t + self.max_age)
        {
            self.state = FetchState::Wanted;
        }
        if self.state != FetchState::Wanted || self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        self.state = FetchState::InFlight(id);
        let node = self.pick_broker();
        self.asked = self.interest.clone();
        Some((self.interest.iter().cloned().collect(), node))
    }

    /// A known broker for a request any broker can answer (rotating), or
    /// `None` to use the bootstrap servers.
    pub(crate) fn pick_broker(&mut self) -> Option<(i32, String)> {
        if self.brokers.is_empty() {
            return None;
        }
        let i = self.next_node % self.brokers.len();
        self.next_node = self.next_node.wrapping_add(1);
        self.brokers
            .iter()
            .nth(i)
            .map(|(id, addr)| (*id, addr.clone()))
    }

    /// Whether `id` is the refresh in flight.
    pub(crate) fn is_in_flight(&self, id: u64) -> bool {
        self.state == FetchState::InFlight(id)
    }

    /// A refresh failed: try again after the backoff, from another broker.
    pub(crate) fn fail(&mut self, now: Instant) {
        self.state = FetchState::Wanted;
        self.not_before = Some(now + self.backoff);
    }

    /// Applies a Metadata response. When anything we wait for is still
    /// missing, another refresh is scheduled after the backoff.
    pub(crate) fn apply(&mut self, now: Instant, metadata: &ClusterMetadata) {
        if !metadata.brokers.is_empty() {
            self.brokers = metadata
                .brokers
                .iter()
                .map(|b| (b.id, b.address()))
                .collect();
        }
        self.topics.add_missing(
            metadata.topics.keys().map(String::as_str),
            TopicInfo::default,
        );
        for (name, topic) in &metadata.topics {
            let Some(entry) = self.topics.get_mut(name.as_str()) else {
                continue;
            };
            entry.error = topic.error;
            if topic.error.is_some() && topic.partitions.is_empty() {
                continue;
            }
            let count = topic
                .partitions
                .iter()
                .map(|p| usize::try_from(p.id).map_or(0, |i| i + 1))
                .max()
                .unwrap_or(0);
            if entry.partitions.len() < count {
                entry.partitions.resize(
                    count,
                    Leadership {
                        leader: None,
                        epoch: None,
                    },
                );
            }
            for p in &topic.partitions {
                let Ok(i) = usize::try_from(p.id) else {
                    continue;
                };
                let Some(slot) = entry.partitions.get_mut(i) else {
                    continue;
                };
                // Never go back to an older leader epoch.
                if let (Some(old), Some(new)) = (slot.epoch, p.leader_epoch)
                    && new < old
                {
                    continue;
                }
                *slot = Leadership {
                    leader: p.leader,
                    epoch: p.leader_epoch.or(slot.epoch),
                };
            }
            entry.rebuild_available();
        }
        self.last_refresh = Some(now);
        self.not_before = None;
        // Unknown topics are retried after the backoff; partitions without a
        // leader only while records wait for them (see `want_leader`).
        // A topic that was not in the request (interest added while it was
        // in flight) is asked for at once.
        let mut missing = self.interest.iter().filter(|t| {
            self.topics
                .get(t.as_str())
                .is_none_or(|info| info.partitions.is_empty())
        });
        let mut any_missing = false;
        let mut asked_and_missing = false;
        for topic in missing.by_ref() {
            any_missing = true;
            asked_and_missing |= self.asked.contains(topic);
        }
        self.state = if any_missing {
            FetchState::Wanted
        } else {
            FetchState::Fresh
        };
        if asked_and_missing {
            self.not_before = Some(now + self.backoff);
        }
    }

    /// Records wait for a partition without a leader: refresh, at most once
    /// per backoff.
    pub(crate) fn want_leader(&mut self) {
        if self.state == FetchState::Fresh {
            self.state = FetchState::Wanted;
            self.not_before = self.last_refresh.map(|t| t + self.backoff);
        }
    }

    /// Forgets the leader of a partition (after NOT_LEADER and the like)
    /// until the next refresh says otherwise, and asks for that refresh.
    /// Applies a KIP-951 leader hint from a Produce error response: the
    /// broker names the partition's current leader and its epoch, and, for a
    /// broker we may not know yet, its address. The hint is taken only when
    /// its epoch is newer than the one known (epochs never go backwards) and
    /// the new leader's address is known; then no metadata round trip is
    /// needed. Returns whether the hint was taken.
    pub(crate) fn apply_leader_hint(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        epoch: i32,
        endpoint: Option<String>,
    ) -> bool {
        if leader < 0 || epoch < 0 {
            return false;
        }
        let Some(info) = self.topics.get_mut(topic) else {
            return false;
        };
        let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| info.partitions.get_mut(p))
        else {
            return false;
        };
        if slot.epoch.is_some_and(|known| epoch <= known) {
            return false;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = self.brokers.entry(leader) {
            match endpoint {
                Some(address) => {
                    slot.insert(address);
                }
                None => return false,
            }
        }
        *slot = Leadership {
            leader: Some(leader),
            epoch: Some(epoch),
        };
        info.rebuild_available();
        true
    }

    pub(crate) fn invalidate(&mut self, topic: &str, partition: i32) {
        if let Some(info) = self.topics.get_mut(topic)
            && let Some(slot) = usize::try_from(partition)
                .ok()
                .and_then(|p| info.partitions.get_mut(p))
        {
            slot.leader = None;
            info.rebuild_available();
        }
        self.request_refresh();
    }
}
