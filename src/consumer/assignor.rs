//! Partition assignors: how the group leader splits the partitions of the
//! subscribed topics among the members of a consumer group.
//!
//! Three strategies, under the protocol names the Java client and
//! librdkafka use, so that a group may mix all three clients:
//!
//! | [`Assignor`] | name | protocol | behaviour |
//! |---|---|---|---|
//! | [`Range`](Assignor::Range) | `range` | eager | per topic, consecutive ranges; the first members get one extra |
//! | [`RoundRobin`](Assignor::RoundRobin) | `roundrobin` | eager | all partitions in order, dealt to the members in turn |
//! | [`CooperativeSticky`](Assignor::CooperativeSticky) | `cooperative-sticky` | cooperative | balanced, keeps partitions where they are, moves in two steps (KIP-429) |
//!
//! Members are ordered as the Java client orders them: static members
//! (those with a group instance id) first, by instance id, then dynamic
//! members by member id. The assignors are pure functions of the members
//! and the partition counts, and deterministic.
//!
//! # Cooperative stickiness
//!
//! With [`Assignor::CooperativeSticky`] a member's previous partitions are
//! the `owned_partitions` of its [`Subscription`], counted only for members
//! whose `generation_id` is the highest in the group (a member of an older
//! generation missed a rebalance, so its claims are stale). A partition
//! claimed by two members of that generation has no owner. Every partition
//! with an owner stays with it unless balance needs it elsewhere.
//!
//! A partition that changes owner is not handed to its new owner while
//! another member still lists it as owned: it is left out of this
//! assignment, the old owner revokes it on seeing it missing, rejoins, and
//! the follow-up rebalance assigns it. No partition is ever consumed by two
//! members at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::consumer_protocol::{Assignment, Subscription};

/// A partition assignment strategy, named as in the Java client and
/// librdkafka.
///
/// ```
/// use std::collections::BTreeMap;
/// use smartkafka::consumer::{Assignor, GroupMember};
/// use smartkafka::protocol::consumer_protocol::Subscription;
///
/// let member = |id: &str| GroupMember {
///     member_id: id.to_string(),
///     group_instance_id: None,
///     subscription: Subscription { topics: vec!["orders".to_string()], ..Default::default() },
/// };
/// let partitions = BTreeMap::from([("orders".to_string(), 3)]);
///
/// let assignor = Assignor::from_name("range").expect("a known assignor");
/// let assignments = assignor.assign(&[member("m-1"), member("m-2")], &partitions);
/// let of = |id: &str| assignments[id].partitions.iter().map(|(_, p)| *p).collect::<Vec<_>>();
/// assert_eq!(of("m-1"), [0, 1]);
/// assert_eq!(of("m-2"), [2]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// Per topic, the members subscribed to it get consecutive ranges of
    /// its partitions; when the count does not divide evenly, the first
    /// members get one more. Eager.
    Range,
    /// Every partition of every subscribed topic, sorted by topic then
    /// partition, dealt to the members in turn, skipping members not
    /// subscribed to the partition's topic. Eager.
    RoundRobin,
    /// Balanced and sticky, with cooperative (incremental) rebalancing.
    ///
    /// Members with the same subscription get partition counts within one
    /// of each other. A member's previous partitions are the
    /// `owned_partitions` of its [`Subscription`], counted only for members
    /// whose `generation_id` is the highest in the group (a member of an
    /// older generation missed a rebalance, so its claims are stale); a
    /// partition claimed by two members of that generation has no owner.
    /// Every partition with an owner stays with it unless balance needs
    /// it elsewhere.
    ///
    /// A partition that changes owner is not handed to its new owner while
    /// another member still lists it as owned: it is left out of this
    /// assignment, the old owner revokes it on seeing it missing and
    /// rejoins, and the follow-up rebalance assigns it (KIP-429). No
    /// partition is ever consumed by two members at once.
    CooperativeSticky,
}

/// How members give up partitions during a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RebalanceProtocol {
    /// Every member revokes all its partitions before joining, and gets a
    /// whole new assignment.
    Eager,
    /// Members keep their partitions while rejoining and revoke only those
    /// the new assignment takes away (KIP-429).
    Cooperative,
}

/// One member of the group, as the leader sees it in the JoinGroup
/// response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// The member's static group instance id (KIP-345), if it has one.
    pub group_instance_id: Option<String>,
    /// The member's decoded subscription.
    pub subscription: Subscription,
}

impl Assignor {
    /// Every assignor, in the order of [`Assignor`]'s variants.
    pub const ALL: [Assignor; 3] = [
        Assignor::Range,
        Assignor::RoundRobin,
        Assignor::CooperativeSticky,
    ];

    /// The protocol name the Java client and librdkafka use for this
    /// assignor: `"range"`, `"roundrobin"` or `"cooperative-sticky"`.
    ///
    /// ```
    /// use smartkafka::consumer::Assignor;
    /// assert_eq!(Assignor::CooperativeSticky.name(), "cooperative-sticky");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor with protocol name `name`, or `None` for a name this
    /// client does not implement.
    ///
    /// ```
    /// use smartkafka::consumer::Assignor;
    /// assert_eq!(Assignor::from_name("roundrobin"), Some(Assignor::RoundRobin));
    /// assert_eq!(Assignor::from_name("sticky"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether members using this assignor rebalance eagerly or
    /// cooperatively.
    ///
    /// ```
    /// use smartkafka::consumer::{Assignor, RebalanceProtocol};
    /// assert_eq!(Assignor::Range.rebalance_protocol(), RebalanceProtocol::Eager);
    /// ```
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        match self {
            Assignor::Range | Assignor::RoundRobin => RebalanceProtocol::Eager,
            Assignor::CooperativeSticky => RebalanceProtocol::Cooperative,
        }
    }

    /// Assigns the partitions of the subscribed topics to `members`.
    ///
    /// `partitions_per_topic` gives each known topic's partition count;
    /// topics a member subscribes to that are not in it are skipped. Every
    /// member gets an entry, empty if nothing is assigned to it, with its
    /// partitions sorted by topic then partition and no user data. Member
    /// ids are unique in a group; should one repeat, its first occurrence
    /// is used and the others are ignored.
    pub fn assign(
        &self,
        members: &[GroupMember],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let group = Group::new(members, partitions_per_topic);
        let per_member = match self {
            Assignor::Range => group.range(),
            Assignor::RoundRobin => group.round_robin(),
            Assignor::CooperativeSticky => group.sticky_plan().assigned(),
        };
        group
            .members
            .iter()
            .zip(per_member)
            .map(|(member, mut partitions)| {
                partitions.sort_unstable();
                let partitions = partitions
                    .into_iter()
                    .map(|i| {
                        let (topic, partition) = group.partitions[i];
                        (topic.to_string(), partition)
                    })
                    .collect();
                (
                    member.member_id.clone(),
                    Assignment {
                        partitions,
                        user_data: None,
                    },
                )
            })
            .collect()
    }
}

/// The group as the assignors see it: members in assignment order, and
/// every partition of a topic someone subscribes to, numbered in
/// (topic, partition) order.
struct Group<'a> {
    members: Vec<&'a GroupMember>,
    /// For each member, the known topics it subscribes to.
    topics: Vec<BTreeSet<&'a str>>,
    /// Every partition of a subscribed known topic, sorted.
    partitions: Vec<(&'a str, i32)>,
    /// Partition number of each (topic, partition).
    index: BTreeMap<(&'a str, i32), usize>,
    /// For each partition, the number of its topic among the subscribed
    /// known topics (in name order).
    topic_of: Vec<usize>,
    /// For each member and topic number, whether it subscribes to it.
    subscribed: Vec<Vec<bool>>,
}

impl<'a> Group<'a> {
    fn new(members: &'a [GroupMember], partitions_per_topic: &'a BTreeMap<String, i32>) -> Self {
        let mut seen = BTreeSet::new();
        let mut members: Vec<&GroupMember> = members
            .iter()
            .filter(|m| seen.insert(m.member_id.as_str()))
            .collect();
        // Static members first by instance id, then dynamic ones by member
        // id, as the Java client sorts them.
        members.sort_by(|a, b| {
            (
                a.group_instance_id.is_none(),
                &a.group_instance_id,
                &a.member_id,
            )
                .cmp(&(
                    b.group_instance_id.is_none(),
                    &b.group_instance_id,
                    &b.member_id,
                ))
        });
        let topics: Vec<BTreeSet<&str>> = members
            .iter()
            .map(|m| {
                m.subscription
                    .topics
                    .iter()
                    .filter_map(|t| partitions_per_topic.get_key_value(t.as_str()))
                    .map(|(t, _)| t.as_str())
                    .collect()
            })
            .collect();
        let all_topics: Vec<&str> = topics
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .collect();
        let mut partitions = Vec::new();
        let mut topic_of = Vec::new();
        for (number, &topic) in all_topics.iter().enumerate() {
            let count = partitions_per_topic.get(topic).copied().unwrap_or(0);
            for p in 0..count.max(0) {
                partitions.push((topic, p));
                topic_of.push(number);
            }
        }
        let index = partitions
            .iter()
            .enumerate()
            .map(|(i, &tp)| (tp, i))
            .collect();
        let subscribed = topics
            .iter()
            .map(|mine| all_topics.iter().map(|t| mine.contains(t)).collect())
            .collect();
        Group {
            members,
            topics,
            partitions,
            index,
            topic_of,
            subscribed,
        }
    }

    fn subscribes(&self, member: usize, partition: usize) -> bool {
        match (self.subscribed.get(member), self.topic_of.get(partition)) {
            (Some(topics), Some(&topic)) => topics.get(topic).copied().unwrap_or(false),
            _ => false,
        }
    }

    /// Per topic, consecutive ranges to its subscribers in member order.
    fn range(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.members.len()];
        let mut start = 0;
        while let Some(&(topic, _)) = self.partitions.get(start) {
            let count = self.partitions[start..]
                .iter()
                .take_while(|(t, _)| *t == topic)
                .count();
            let subscribers: Vec<usize> = (0..self.members.len())
                .filter(|&m| self.topics[m].contains(topic))
                .collect();
            // A topic is listed only if someone subscribes to it.
            let per_member = count / subscribers.len().max(1);
            let extra = count % subscribers.len().max(1);
            let mut next = start;
            for (k, &m) in subscribers.iter().enumerate() {
                let len = per_member + usize::from(k < extra);
                out[m].extend(next..next + len);
                next += len;
            }
            start += count;
        }
        out
    }

    /// All partitions in order, dealt in turn to the members subscribed to
    /// their topic.
    fn round_robin(&self) -> Vec<Vec<usize>> {
        let n = self.members.len();
        let mut out = vec![Vec::new(); n];
        let mut turn = 0;
        for partition in 0..self.partitions.len() {
            // Someone subscribes to every listed partition's topic, so this
            // finds a member within one round.
            for _ in 0..n {
                let member = turn;
                turn = (turn + 1) % n;
                if self.subscribes(member, partition) {
                    out[member].push(partition);
                    break;
                }
            }
        }
        out
    }

    /// The cooperative sticky assignment: the balanced target, and the
    /// partitions of it withheld because another member still owns them.
    fn sticky_plan(&self) -> StickyPlan {
        let n = self.members.len();
        let max_generation = self
            .members
            .iter()
            .map(|m| m.subscription.generation_id)
            .max()
            .unwrap_or(i32::MIN);

        // Who lists each partition as owned (any generation), and who
        // validly claims it (highest generation, still subscribed).
        let mut listed_by: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.partitions.len()];
        let mut claimed_by: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.partitions.len()];
        for (m, member) in self.members.iter().enumerate() {
            let current = member.subscription.generation_id == max_generation;
            for (topic, partition) in &member.subscription.owned_partitions {
                if let Some(&p) = self.index.get(&(topic.as_str(), *partition)) {
                    listed_by[p].insert(m);
                    if current && self.subscribes(m, p) {
                        claimed_by[p].insert(m);
                    }
                }
            }
        }
        let previous_owner: Vec<Option<usize>> = claimed_by
            .iter()
            .map(|claims| match claims.len() {
                1 => claims.first().copied(),
                _ => None,
            })
            .collect();

        // Owned partitions stay; the rest go, fewest candidates first, to
        // the least loaded member that subscribes to them.
        let topic_count = self.subscribed.first().map_or(0, Vec::len);
        let mut target: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        // How many partitions of each topic each member holds in `target`.
        let mut held: Vec<Vec<usize>> = vec![vec![0; topic_count]; n];
        let mut unowned = Vec::new();
        for (p, owner) in previous_owner.iter().enumerate() {
            match owner {
                Some(m) => {
                    target[*m].insert(p);
                    held[*m][self.topic_of[p]] += 1;
                }
                None => unowned.push(p),
            }
        }
        let candidates =
            |p: usize| -> Vec<usize> { (0..n).filter(|&m| self.subscribes(m, p)).collect() };
        let mut unowned: Vec<(usize, usize)> = unowned
            .into_iter()
            .map(|p| (candidates(p).len(), p))
            .collect();
        unowned.sort_unstable();
        for (_, p) in unowned {
            if let Some(m) = candidates(p)
                .into_iter()
                .min_by_key(|&m| (target[m].len(), m))
            {
                target[m].insert(p);
                held[m][self.topic_of[p]] += 1;
            }
        }

        // Move partitions from a member to one holding at least two fewer
        // that can take them, until no such move is left. Each move lowers
        // the sum of squared loads, so this ends; members with the same
        // subscription end up within one partition of each other.
        loop {
            let mut by_load: Vec<usize> = (0..n).collect();
            by_load.sort_unstable_by_key(|&m| (target[m].len(), m));
            let mut chosen = None;
            'search: for &from in by_load.iter().rev() {
                for &to in &by_load {
                    if target[to].len() + 2 > target[from].len() {
                        break;
                    }
                    let can_take =
                        (0..topic_count).any(|t| held[from][t] > 0 && self.subscribed[to][t]);
                    if !can_take {
                        continue;
                    }
                    // Prefer giving a partition back to its previous
                    // owner, then one `from` did not own before.
                    let pick = target[from]
                        .iter()
                        .copied()
                        .filter(|&p| self.subscribes(to, p))
                        .min_by_key(|&p| {
                            (
                                previous_owner[p] != Some(to),
                                previous_owner[p] == Some(from),
                                p,
                            )
                        });
                    if let Some(p) = pick {
                        chosen = Some((from, to, p));
                        break 'search;
                    }
                }
            }
            match chosen {
                Some((from, to, p)) => {
                    target[from].remove(&p);
                    target[to].insert(p);
                    held[from][self.topic_of[p]] -= 1;
                    held[to][self.topic_of[p]] += 1;
                }
                None => break,
            }
        }

        // KIP-429: a partition changing owner waits while someone else
        // still lists it as owned.
        let mut withheld = BTreeSet::new();
        for (m, partitions) in target.iter().enumerate() {
            for &p in partitions {
                if previous_owner[p] != Some(m) && listed_by[p].iter().any(|&x| x != m) {
                    withheld.insert(p);
                }
            }
        }
        StickyPlan { target, withheld }
    }
}

/// The outcome of the cooperative sticky assignor before the KIP-429 rule
/// is applied, and the partitions the rule holds back.
struct StickyPlan {
    /// The balanced, sticky assignment the group converges to, per member.
    target: Vec<BTreeSet<usize>>,
    /// Partitions of `target` not handed out yet: they change owner and
    /// another member still owns them.
    withheld: BTreeSet<usize>,
}

impl StickyPlan {
    /// What members get now: the target without the withheld partitions.
    fn assigned(&self) -> Vec<Vec<usize>> {
        self.target
            .iter()
            .map(|ps| {
                ps.iter()
                    .copied()
                    .filter(|p| !self.withheld.contains(p))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> GroupMember {
        GroupMember {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                ..Subscription::default()
            },
        }
    }

    fn owning(mut m: GroupMember, generation: i32, owned: &[(&str, i32)]) -> GroupMember {
        m.subscription.generation_id = generation;
        m.subscription.owned_partitions = owned.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        m
    }

    fn topics(counts: &[(&str, i32)]) -> BTreeMap<String, i32> {
        counts.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    fn of(out: &BTreeMap<String, Assignment>, id: &str) -> Vec<(String, i32)> {
        out[id].partitions.clone()
    }

    /// Every partition of a topic someone subscribes to, sorted.
    fn expected_partitions(
        members: &[GroupMember],
        ppt: &BTreeMap<String, i32>,
    ) -> BTreeSet<(String, i32)> {
        let mut all = BTreeSet::new();
        for (topic, &count) in ppt {
            if members
                .iter()
                .any(|m| m.subscription.topics.contains(topic))
            {
                all.extend((0..count).map(|p| (topic.clone(), p)));
            }
        }
        all
    }

    /// Checks that no partition goes to two members or to a member not
    /// subscribed to its topic, that every member has an entry, and
    /// returns the partitions assigned.
    fn check_valid(
        out: &BTreeMap<String, Assignment>,
        members: &[GroupMember],
        ppt: &BTreeMap<String, i32>,
    ) -> Result<BTreeSet<(String, i32)>, TestCaseError> {
        let mut seen = BTreeSet::new();
        for m in members {
            let assignment = out.get(&m.member_id);
            prop_assert!(assignment.is_some(), "no entry for {}", m.member_id);
        }
        prop_assert_eq!(out.len(), members.len());
        let expected = expected_partitions(members, ppt);
        for (id, assignment) in out {
            let m = members
                .iter()
                .find(|m| &m.member_id == id)
                .expect("a member");
            for (topic, p) in &assignment.partitions {
                prop_assert!(m.subscription.topics.contains(topic), "{id} got {topic}");
                prop_assert!(expected.contains(&(topic.clone(), *p)), "{topic}-{p}");
                prop_assert!(seen.insert((topic.clone(), *p)), "{topic}-{p} twice");
            }
        }
        Ok(seen)
    }

    fn counts_of(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values().map(|a| a.partitions.len()).collect()
    }

    fn spread(counts: impl IntoIterator<Item = usize>) -> usize {
        let counts: Vec<usize> = counts.into_iter().collect();
        counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
    }

    /// The known topics a member subscribes to.
    fn effective(m: &GroupMember, ppt: &BTreeMap<String, i32>) -> BTreeSet<String> {
        m.subscription
            .topics
            .iter()
            .filter(|t| ppt.contains_key(*t))
            .cloned()
            .collect()
    }

    /// Members with the same known topics hold within one partition of
    /// each other.
    fn check_balanced_among_equals(
        out: &BTreeMap<String, Assignment>,
        members: &[GroupMember],
        ppt: &BTreeMap<String, i32>,
    ) -> Result<(), TestCaseError> {
        for a in members {
            for b in members {
                if effective(a, ppt) == effective(b, ppt) {
                    let (x, y) = (
                        out[&a.member_id].partitions.len(),
                        out[&b.member_id].partitions.len(),
                    );
                    prop_assert!(
                        x.abs_diff(y) <= 1,
                        "{} has {x}, {} has {y}",
                        a.member_id,
                        b.member_id
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn names_round_trip_and_protocols() {
        for assignor in Assignor::ALL {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::Range.name(), "range");
        assert_eq!(Assignor::RoundRobin.name(), "roundrobin");
        assert_eq!(Assignor::from_name("Range"), None);
        assert_eq!(
            Assignor::RoundRobin.rebalance_protocol(),
            RebalanceProtocol::Eager
        );
        assert_eq!(
            Assignor::CooperativeSticky.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        // The example of the Java client's RangeAssignor documentation.
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let out = Assignor::Range.assign(&members, &topics(&[("t0", 3), ("t1", 3)]));
        assert_eq!(
            of(&out, "c0"),
            [tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]
        );
        assert_eq!(of(&out, "c1"), [tp("t0", 2), tp("t1", 2)]);
    }

    #[test]
    fn range_puts_static_members_first_by_instance_id() {
        let mut late = member("a-dynamic", &["t"]);
        late.group_instance_id = None;
        let mut z = member("z", &["t"]);
        z.group_instance_id = Some("instance-2".to_string());
        let mut y = member("y", &["t"]);
        y.group_instance_id = Some("instance-1".to_string());
        let out = Assignor::Range.assign(&[late, z, y], &topics(&[("t", 5)]));
        assert_eq!(of(&out, "y"), [tp("t", 0), tp("t", 1)]);
        assert_eq!(of(&out, "z"), [tp("t", 2), tp("t", 3)]);
        assert_eq!(of(&out, "a-dynamic"), [tp("t", 4)]);
    }

    #[test]
    fn round_robin_deals_partitions_in_turn() {
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let out = Assignor::RoundRobin.assign(&members, &topics(&[("t0", 3), ("t1", 3)]));
        assert_eq!(of(&out, "c0"), [tp("t0", 0), tp("t0", 2), tp("t1", 1)]);
        assert_eq!(of(&out, "c1"), [tp("t0", 1), tp("t1", 0), tp("t1", 2)]);
    }

    #[test]
    fn round_robin_skips_members_not_subscribed() {
        // The unequal-subscription example of the Java RoundRobinAssignor.
        let members = [
            member("c0", &["t0"]),
            member("c1", &["t0", "t1"]),
            member("c2", &["t0", "t1", "t2"]),
        ];
        let out =
            Assignor::RoundRobin.assign(&members, &topics(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        assert_eq!(of(&out, "c0"), [tp("t0", 0)]);
        assert_eq!(of(&out, "c1"), [tp("t1", 0)]);
        assert_eq!(
            of(&out, "c2"),
            [tp("t1", 1), tp("t2", 0), tp("t2", 1), tp("t2", 2)]
        );
    }

    #[test]
    fn unknown_topics_are_skipped_and_every_member_has_an_entry() {
        let members = [member("a", &["known"]), member("b", &["unknown"])];
        for assignor in Assignor::ALL {
            let out = assignor.assign(&members, &topics(&[("known", 2), ("other", 4)]));
            assert_eq!(
                of(&out, "a"),
                [tp("known", 0), tp("known", 1)],
                "{assignor:?}"
            );
            assert!(of(&out, "b").is_empty(), "{assignor:?}");
        }
        assert!(Assignor::Range.assign(&[], &topics(&[("t", 3)])).is_empty());
    }

    #[test]
    fn a_repeated_member_id_counts_once() {
        let members = [
            member("a", &["t"]),
            member("a", &["t"]),
            member("b", &["t"]),
        ];
        for assignor in Assignor::ALL {
            let out = assignor.assign(&members, &topics(&[("t", 4)]));
            assert_eq!(out.len(), 2, "{assignor:?}");
            assert_eq!(counts_of(&out), [2, 2], "{assignor:?}");
        }
    }

    #[test]
    fn sticky_keeps_owners_and_withholds_what_moves_to_a_new_member() {
        let ppt = topics(&[("t", 4)]);
        let old = owning(
            member("a", &["t"]),
            3,
            &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
        );
        let members = [old, member("b", &["t"])];
        let out = Assignor::CooperativeSticky.assign(&members, &ppt);
        // Balance gives b two partitions, but a still owns them: a keeps
        // the other two, b waits for the follow-up rebalance.
        assert_eq!(out["a"].partitions.len(), 2);
        assert!(of(&out, "b").is_empty());

        // a revoked what it lost and rejoins with what it kept.
        let kept: Vec<(&str, i32)> = out["a"]
            .partitions
            .iter()
            .map(|(t, p)| (t.as_str(), *p))
            .collect();
        let members = [
            owning(member("a", &["t"]), 4, &kept),
            owning(member("b", &["t"]), 4, &[]),
        ];
        let next = Assignor::CooperativeSticky.assign(&members, &ppt);
        assert_eq!(next["a"], out["a"]);
        assert_eq!(next["b"].partitions.len(), 2);
    }

    #[test]
    fn sticky_leaves_a_partition_claimed_twice_in_one_generation_unassigned() {
        let ppt = topics(&[("t", 2)]);
        let members = [
            owning(member("a", &["t"]), 5, &[("t", 0)]),
            owning(member("b", &["t"]), 5, &[("t", 0), ("t", 1)]),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &ppt);
        // t-1 stays with b; t-0 has no owner, and whoever it goes to, the
        // other member still lists it.
        assert_eq!(of(&out, "b"), [tp("t", 1)]);
        assert!(of(&out, "a").is_empty());
    }

    #[test]
    fn sticky_prefers_the_claim_of_the_later_generation() {
        let ppt = topics(&[("t", 2)]);
        let members = [
            owning(member("a", &["t"]), 4, &[("t", 0)]),
            owning(member("b", &["t"]), 5, &[("t", 0)]),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &ppt);
        // b owns t-0 (a's claim is stale, a revokes it); t-1 was nobody's,
        // so a gets it at once.
        assert_eq!(of(&out, "b"), [tp("t", 0)]);
        assert_eq!(of(&out, "a"), [tp("t", 1)]);
    }

    #[test]
    fn sticky_withholds_a_partition_whose_owner_unsubscribed() {
        let ppt = topics(&[("t", 2), ("u", 2)]);
        let members = [
            owning(member("a", &["u"]), 2, &[("t", 0), ("t", 1), ("u", 0)]),
            owning(member("b", &["t"]), 2, &[]),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &ppt);
        // a no longer subscribes to t but still consumes it until it
        // revokes: b gets t's partitions in the follow-up rebalance. u-1
        // was nobody's and goes to a at once.
        assert_eq!(of(&out, "a"), [tp("u", 0), tp("u", 1)]);
        assert!(of(&out, "b").is_empty());

        let members = [
            owning(member("a", &["u"]), 3, &[("u", 0), ("u", 1)]),
            owning(member("b", &["t"]), 3, &[]),
        ];
        let next = Assignor::CooperativeSticky.assign(&members, &ppt);
        assert_eq!(next["a"], out["a"]);
        assert_eq!(of(&next, "b"), [tp("t", 0), tp("t", 1)]);
    }

    fn member_strategy() -> impl Strategy<Value = (Vec<GroupMember>, BTreeMap<String, i32>)> {
        let ppt = proptest::collection::vec(0..9i32, 1..4).prop_map(|counts| {
            counts
                .into_iter()
                .enumerate()
                .map(|(i, n)| (format!("t{i}"), n))
                .collect::<BTreeMap<_, _>>()
        });
        let member = (
            proptest::collection::btree_set(
                prop_oneof![Just("t0"), Just("t1"), Just("t2"), Just("gone")],
                0..4,
            ),
            proptest::option::of(0..4u8),
        );
        (proptest::collection::vec(member, 1..7), ppt).prop_map(|(specs, ppt)| {
            let members = specs
                .into_iter()
                .enumerate()
                .map(|(i, (topics, instance))| GroupMember {
                    // Ids out of order so sorting matters.
                    member_id: format!("m{}", (i * 7) % 10),
                    group_instance_id: instance.map(|n| format!("i{n}-{i}")),
                    subscription: Subscription {
                        topics: topics.into_iter().map(String::from).collect(),
                        ..Subscription::default()
                    },
                })
                .collect();
            (members, ppt)
        })
    }

    /// Members with random ownership claims at random generations, some
    /// claims overlapping, some for partitions that do not exist.
    fn owned_strategy() -> impl Strategy<Value = (Vec<GroupMember>, BTreeMap<String, i32>)> {
        member_strategy().prop_flat_map(|(members, ppt)| {
            let n = members.len();
            let claims = proptest::collection::vec(
                (
                    proptest::collection::vec(
                        (prop_oneof![Just("t0"), Just("t1"), Just("t2")], 0..10i32),
                        0..6,
                    ),
                    1..4i32,
                ),
                n,
            );
            (Just(members), Just(ppt), claims).prop_map(|(mut members, ppt, claims)| {
                for (m, (owned, generation)) in members.iter_mut().zip(claims) {
                    m.subscription.owned_partitions =
                        owned.into_iter().map(|(t, p)| (t.to_string(), p)).collect();
                    m.subscription.generation_id = generation;
                }
                (members, ppt)
            })
        })
    }

    /// Members that all subscribe to every topic.
    fn equal_strategy() -> impl Strategy<Value = (Vec<GroupMember>, BTreeMap<String, i32>)> {
        member_strategy().prop_map(|(mut members, ppt)| {
            for m in &mut members {
                m.subscription.topics = ppt.keys().cloned().collect();
            }
            (members, ppt)
        })
    }

    /// The members after applying `out`: each owns what it got, at
    /// `generation`.
    fn after(
        members: &[GroupMember],
        out: &BTreeMap<String, Assignment>,
        generation: i32,
    ) -> Vec<GroupMember> {
        members
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.subscription.owned_partitions = out[&m.member_id].partitions.clone();
                m.subscription.generation_id = generation;
                m
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn range_and_round_robin_assign_every_partition_once((members, ppt) in member_strategy()) {
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let out = assignor.assign(&members, &ppt);
                let assigned = check_valid(&out, &members, &ppt)?;
                prop_assert_eq!(assigned, expected_partitions(&members, &ppt));
            }
        }

        #[test]
        fn range_balances_each_topic((members, ppt) in member_strategy()) {
            let out = Assignor::Range.assign(&members, &ppt);
            for topic in ppt.keys() {
                let counts = members
                    .iter()
                    .filter(|m| m.subscription.topics.contains(topic))
                    .map(|m| out[&m.member_id].partitions.iter().filter(|(t, _)| t == topic).count());
                prop_assert!(spread(counts) <= 1, "{topic}");
            }
        }

        #[test]
        fn round_robin_and_sticky_balance_equal_subscriptions((members, ppt) in equal_strategy()) {
            for assignor in [Assignor::RoundRobin, Assignor::CooperativeSticky] {
                let out = assignor.assign(&members, &ppt);
                prop_assert!(spread(counts_of(&out)) <= 1, "{:?}", assignor);
            }
        }

        #[test]
        fn output_depends_on_neither_order_nor_run((members, ppt) in owned_strategy()) {
            let mut reversed = members.clone();
            reversed.reverse();
            for assignor in Assignor::ALL {
                let out = assignor.assign(&members, &ppt);
                prop_assert_eq!(&out, &assignor.assign(&members, &ppt));
                prop_assert_eq!(&out, &assignor.assign(&reversed, &ppt));
            }
        }

        #[test]
        fn sticky_without_owners_assigns_everything_balanced((members, ppt) in member_strategy()) {
            let out = Assignor::CooperativeSticky.assign(&members, &ppt);
            let assigned = check_valid(&out, &members, &ppt)?;
            prop_assert_eq!(assigned, expected_partitions(&members, &ppt));
            check_balanced_among_equals(&out, &members, &ppt)?;
        }

        #[test]
        fn sticky_withholds_exactly_the_partitions_still_owned_elsewhere(
            (members, ppt) in owned_strategy()
        ) {
            let group = Group::new(&members, &ppt);
            let plan = group.sticky_plan();
            // The target covers everything, balanced.
            let target: BTreeMap<String, Assignment> = group
                .members
                .iter()
                .zip(&plan.target)
                .map(|(m, ps)| {
                    let partitions = ps.iter().map(|&p| {
                        let (t, n) = group.partitions[p];
                        (t.to_string(), n)
                    }).collect();
                    (m.member_id.clone(), Assignment { partitions, user_data: None })
                })
                .collect();
            let covered = check_valid(&target, &members, &ppt)?;
            prop_assert_eq!(&covered, &expected_partitions(&members, &ppt));
            check_balanced_among_equals(&target, &members, &ppt)?;

            // What is handed out is the target without the withheld
            // partitions, and a partition is withheld exactly when it goes
            // to a member that is not its valid previous owner while
            // another member lists it.
            let out = Assignor::CooperativeSticky.assign(&members, &ppt);
            check_valid(&out, &members, &ppt)?;
            let max_generation = members.iter().map(|m| m.subscription.generation_id).max();
            for (id, assignment) in &target {
                for tp in &assignment.partitions {
                    let listers: Vec<&GroupMember> = members
                        .iter()
                        .filter(|m| m.subscription.owned_partitions.contains(tp))
                        .collect();
                    let valid: Vec<&&GroupMember> = listers
                        .iter()
                        .filter(|m| Some(m.subscription.generation_id) == max_generation)
                        .filter(|m| m.subscription.topics.contains(&tp.0))
                        .collect();
                    let kept = valid.len() == 1 && &valid[0].member_id == id;
                    let elsewhere = listers.iter().any(|m| &m.member_id != id);
                    let handed_out = out[id].partitions.contains(tp);
                    prop_assert_eq!(handed_out, kept || !elsewhere, "{}-{} to {}", tp.0, tp.1, id);
                }
            }
        }

        #[test]
        fn sticky_keeps_partitions_in_place_when_a_member_leaves(
            (members, ppt) in equal_strategy(),
            leaver in any::<prop::sample::Index>(),
        ) {
            prop_assume!(members.len() >= 2);
            let first = Assignor::CooperativeSticky.assign(&members, &ppt);
            let mut members = after(&members, &first, 1);
            let left = members.remove(leaver.index(members.len()));
            let second = Assignor::CooperativeSticky.assign(&members, &ppt);
            for m in &members {
                let now = &second[&m.member_id].partitions;
                for tp in &first[&m.member_id].partitions {
                    prop_assert!(now.contains(tp), "{} lost {}-{}", m.member_id, tp.0, tp.1);
                }
            }
            // Nobody else owned the leaver's partitions: all handed out.
            for tp in &first[&left.member_id].partitions {
                prop_assert!(second.values().any(|a| a.partitions.contains(tp)));
            }
            prop_assert!(spread(counts_of(&second)) <= 1);
        }

        #[test]
        fn sticky_converges_in_one_follow_up_rebalance((members, ppt) in owned_strategy()) {
            let mut members = members;
            for m in &mut members {
                m.subscription.topics = ppt.keys().cloned().collect();
            }
            let first = Assignor::CooperativeSticky.assign(&members, &ppt);
            let members = after(&members, &first, 9);
            let second = Assignor::CooperativeSticky.assign(&members, &ppt);
            let assigned = check_valid(&second, &members, &ppt)?;
            prop_assert_eq!(assigned, expected_partitions(&members, &ppt));
            prop_assert!(spread(counts_of(&second)) <= 1);
            for m in &members {
                for tp in &first[&m.member_id].partitions {
                    prop_assert!(second[&m.member_id].partitions.contains(tp));
                }
            }
        }
    }
}
