//! A scripted cluster for reader tests: brokers that answer ApiVersions,
//! Metadata and ListOffsets for one partition of one topic, and Fetch with
//! whatever the test's script returns, so a test controls the Fetch bytes
//! and fields exactly (malformed batches, preferred read replicas).
//!
//! Every Fetch is recorded: which broker got it, at which offset, with
//! which rack id.
//!
//! [`one_connection_broker`] is the hostile-input variant: it answers the
//! client's ApiVersions correctly, then answers Metadata with whatever bytes
//! the test gives it (malformed frames, lying lengths).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, ListOffsetsResponse,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use smartkafka::consumer::{PartitionReader, ReaderConfig, StartOffset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The one topic the cluster has; it has one partition, 0.
pub const TOPIC: &str = "scripted";

/// The versions the brokers answer.
const VERSIONS: [(ApiKey, i16, i16); 4] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
];

/// One Fetch a broker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSeen {
    /// The broker that got it.
    pub broker: i32,
    /// The fetch offset of partition 0.
    pub offset: i64,
    /// The rack id sent.
    pub rack: String,
}

/// What a broker answers for partition 0 of a Fetch: given the broker id,
/// the fetch offset and the rack id.
pub type FetchScript = Arc<dyn Fn(i32, i64, &str) -> PartitionData + Send + Sync>;

/// A running scripted cluster.
pub struct ScriptedCluster {
    /// `host:port` of every broker, comma-separated.
    pub bootstrap: String,
    fetches: Arc<Mutex<Vec<FetchSeen>>>,
}

impl ScriptedCluster {
    /// Starts `brokers` brokers (ids from 0); partition 0 is led by
    /// `leader` and replicated on all.
    pub async fn start(brokers: i32, leader: i32, script: FetchScript) -> ScriptedCluster {
        let mut listeners = Vec::new();
        for _ in 0..brokers {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let ports: Vec<i32> = listeners
            .iter()
            .map(|l| i32::from(l.local_addr().unwrap().port()))
            .collect();
        let fetches = Arc::new(Mutex::new(Vec::new()));
        for (id, listener) in listeners.into_iter().enumerate() {
            let broker = Broker {
                id: id as i32,
                leader,
                ports: ports.clone(),
                script: Arc::clone(&script),
                fetches: Arc::clone(&fetches),
            };
            let broker = Arc::new(broker);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(Arc::clone(&broker).serve(stream));
                }
            });
        }
        ScriptedCluster {
            bootstrap: ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            fetches,
        }
    }

    /// Every Fetch received so far, in arrival order.
    pub fn fetches(&self) -> Vec<FetchSeen> {
        self.fetches.lock().unwrap().clone()
    }
}

/// A partition reader with `config` (polls waiting at most 50 ms),
/// assigned partition 0 of [`TOPIC`] from the earliest offset.
pub async fn assigned_reader(config: ReaderConfig) -> PartitionReader {
    let mut reader = PartitionReader::connect(config.max_wait(Duration::from_millis(50)))
        .await
        .unwrap();
    reader
        .assign(&[(TOPIC, 0, StartOffset::Earliest)])
        .await
        .unwrap();
    reader
}

/// Partition 0's answer carrying `records`, with watermarks at `end`.
pub fn partition_data(records: Bytes, end: i64) -> PartitionData {
    PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(end)
        .with_last_stable_offset(end)
        .with_log_start_offset(0)
        .with_records(Some(records))
}

/// The batches of `log` (each with its last offset) from the one holding
/// `offset` on, as a broker serves them.
pub fn serve_log(log: &[(i64, Bytes)], offset: i64) -> Bytes {
    let mut records = BytesMut::new();
    for (_, batch) in log.iter().filter(|(last, _)| *last >= offset) {
        records.extend_from_slice(batch);
    }
    records.freeze()
}

struct Broker {
    id: i32,
    leader: i32,
    ports: Vec<i32>,
    script: FetchScript,
    fetches: Arc<Mutex<Vec<FetchSeen>>>,
}

impl Broker {
    async fn serve(self: Arc<Self>, mut stream: TcpStream) {
        loop {
            let Some(body) = read_frame(&mut stream).await else {
                return;
            };
            let response = self.answer(Bytes::from(body));
            let mut frame = BytesMut::with_capacity(response.len() + 4);
            frame.put_u32(response.len() as u32);
            frame.extend_from_slice(&response);
            if stream.write_all(&frame).await.is_err() {
                return;
            }
        }
    }

    fn answer(&self, mut body: Bytes) -> BytesMut {
        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
        let version = i16::from_be_bytes([body[2], body[3]]);
        let header = RequestHeader::decode(&mut body, key.request_header_version(version)).unwrap();
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        let topic = || TopicName(StrBytes::from_static_str(TOPIC));
        match key {
            ApiKey::ApiVersions => ApiVersionsResponse::default()
                .with_api_keys(
                    VERSIONS
                        .iter()
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*k as i16)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect(),
                )
                .encode(&mut out, version),
            ApiKey::Metadata => {
                let ids: Vec<BrokerId> = (0..self.ports.len() as i32).map(BrokerId).collect();
                MetadataResponse::default()
                    .with_brokers(
                        self.ports
                            .iter()
                            .enumerate()
                            .map(|(id, port)| {
                                MetadataResponseBroker::default()
                                    .with_node_id(BrokerId(id as i32))
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(*port)
                            })
                            .collect(),
                    )
                    .with_controller_id(BrokerId(0))
                    .with_topics(vec![
                        MetadataResponseTopic::default()
                            .with_name(Some(topic()))
                            .with_partitions(vec![
                                MetadataResponsePartition::default()
                                    .with_partition_index(0)
                                    .with_leader_id(BrokerId(self.leader))
                                    .with_leader_epoch(0)
                                    .with_replica_nodes(ids.clone())
                                    .with_isr_nodes(ids),
                            ]),
                    ])
                    .encode(&mut out, version)
            }
            ApiKey::ListOffsets => ListOffsetsResponse::default()
                .with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(0)
                                .with_offset(0)
                                .with_timestamp(-1),
                        ]),
                ])
                .encode(&mut out, version),
            ApiKey::Fetch => {
                let request = FetchRequest::decode(&mut body, version).unwrap();
                let offset = request.topics[0].partitions[0].fetch_offset;
                let rack = request.rack_id.to_string();
                self.fetches.lock().unwrap().push(FetchSeen {
                    broker: self.id,
                    offset,
                    rack: rack.clone(),
                });
                FetchResponse::default()
                    .with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(topic())
                            .with_partitions(vec![(self.script)(self.id, offset, &rack)]),
                    ])
                    .encode(&mut out, version)
            }
            other => panic!("unexpected request {other:?}"),
        }
        .unwrap();
        out
    }
}

/// Reads one size-prefixed frame; `None` once the connection ends.
async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

// ---------------------------------------------------------------------------
// A one-connection broker for hostile Metadata answers
// ---------------------------------------------------------------------------

/// What [`one_connection_broker`] sends in answer to the Metadata request.
#[derive(Clone)]
pub enum Answer {
    /// Raw bytes written as they are (prefix included), then the socket closes.
    Raw(Vec<u8>),
    /// A framed response with this correlation id offset and body.
    Framed {
        correlation_delta: i32,
        body: Vec<u8>,
    },
}

/// Reads one request and returns its API key, version and correlation id.
async fn read_request(stream: &mut TcpStream) -> Option<(i16, i16, i32)> {
    let body = read_frame(stream).await?;
    let api = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    Some((api, version, correlation))
}

/// A one-connection broker: a correct ApiVersions answer advertising
/// Metadata up to `metadata_max`, then `answer` to the next request.
pub async fn one_connection_broker(metadata_max: i16, answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let Some((_, version, correlation)) = read_request(&mut stream).await else {
            return;
        };
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(3),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_max_version(metadata_max),
        ]);
        let mut body = BytesMut::new();
        body.put_i32(correlation);
        response.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.unwrap();
        let Some((_, _, correlation)) = read_request(&mut stream).await else {
            return;
        };
        let bytes = match answer {
            Answer::Raw(bytes) => bytes,
            Answer::Framed {
                correlation_delta,
                body,
            } => {
                let mut frame = BytesMut::new();
                frame.put_i32(body.len() as i32 + 4);
                frame.put_i32(correlation + correlation_delta);
                frame.extend_from_slice(&body);
                frame.to_vec()
            }
        };
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    addr
}
