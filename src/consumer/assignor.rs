//! Placeholder assignors.
#![allow(missing_docs)]
use crate::protocol::consumer_protocol::{Assignment, Subscription};
use std::collections::BTreeMap;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Range,
    RoundRobin,
    CooperativeSticky,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    Eager,
    Cooperative,
}
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub subscription: Subscription,
}
impl Assignor {
    pub fn name(&self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }
    pub fn from_name(name: &str) -> Option<Assignor> {
        [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        if *self == Assignor::CooperativeSticky {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }
    pub fn assign(
        &self,
        members: &[GroupMember],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out: BTreeMap<String, Assignment> = members
            .iter()
            .map(|m| (m.member_id.clone(), Assignment::default()))
            .collect();
        let mut ids: Vec<&GroupMember> = members.iter().collect();
        ids.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        for (topic, n) in partitions_per_topic {
            let subs: Vec<&&GroupMember> = ids
                .iter()
                .filter(|m| m.subscription.topics.contains(topic))
                .collect();
            if subs.is_empty() {
                continue;
            }
            for p in 0..*n {
                let m = subs[(p as usize) % subs.len()];
                out.get_mut(&m.member_id)
                    .unwrap()
                    .partitions
                    .push((topic.clone(), p));
            }
        }
        out
    }
}
