//! Placeholder: ConsumerProtocol subscription and assignment.
#![allow(missing_docs)]
use crate::error::Error;
use bytes::{Buf, BufMut};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as ATp;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as STp;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    pub owned_partitions: Vec<(String, i32)>,
    pub generation_id: i32,
    pub rack_id: Option<String>,
}
impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            topics: vec![],
            user_data: None,
            owned_partitions: vec![],
            generation_id: -1,
            rack_id: None,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub partitions: Vec<(String, i32)>,
    pub user_data: Option<Bytes>,
}

fn group(parts: &[(String, i32)]) -> std::collections::BTreeMap<String, Vec<i32>> {
    let mut m: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for (t, p) in parts {
        m.entry(t.clone()).or_default().push(*p);
    }
    m
}
impl Subscription {
    pub fn encode(&self) -> Bytes {
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = self
            .topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect();
        s.user_data = self.user_data.clone();
        s.owned_partitions = group(&self.owned_partitions)
            .into_iter()
            .map(|(t, ps)| {
                STp::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect();
        s.generation_id = self.generation_id;
        s.rack_id = self.rack_id.clone().map(StrBytes::from_string);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        s.encode(&mut buf, 3).expect("encode");
        buf.freeze()
    }
    pub fn decode(bytes: &[u8]) -> Result<Subscription, Error> {
        let mut b = Bytes::copy_from_slice(bytes);
        if b.len() < 2 {
            return Err(Error::protocol("short subscription"));
        }
        let v = b.get_i16().min(3);
        let s = ConsumerProtocolSubscription::decode(&mut b, v)
            .map_err(|e| Error::protocol(e.to_string()))?;
        Ok(Subscription {
            topics: s.topics.iter().map(|t| t.to_string()).collect(),
            user_data: s.user_data,
            owned_partitions: s
                .owned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| (tp.topic.0.to_string(), *p))
                })
                .collect(),
            generation_id: s.generation_id,
            rack_id: s.rack_id.map(|r| r.to_string()),
        })
    }
}
impl Assignment {
    pub fn encode(&self) -> Bytes {
        let mut a = ConsumerProtocolAssignment::default();
        a.assigned_partitions = group(&self.partitions)
            .into_iter()
            .map(|(t, ps)| {
                ATp::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect();
        a.user_data = self.user_data.clone();
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        a.encode(&mut buf, 3).expect("encode");
        buf.freeze()
    }
    pub fn decode(bytes: &[u8]) -> Result<Assignment, Error> {
        let mut b = Bytes::copy_from_slice(bytes);
        if b.is_empty() {
            return Ok(Assignment::default());
        }
        if b.len() < 2 {
            return Err(Error::protocol("short assignment"));
        }
        let v = b.get_i16().min(3);
        let a = ConsumerProtocolAssignment::decode(&mut b, v)
            .map_err(|e| Error::protocol(e.to_string()))?;
        Ok(Assignment {
            partitions: a
                .assigned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| (tp.topic.0.to_string(), *p))
                })
                .collect(),
            user_data: a.user_data,
        })
    }
}
