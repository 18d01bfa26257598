//! The fake cluster's TLS and SASL listeners, checked with an independent
//! client: librdkafka (through rust-rdkafka, built with OpenSSL) produces
//! and reads its records back over TLS, mutual TLS, SASL_PLAINTEXT with
//! PLAIN, and SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512; a wrong
//! password, a missing client certificate, an untrusted CA, an expired
//! certificate and one for another host get nothing,
//! and librdkafka reports the wrong password as an authentication error.
//! With a session lifetime set, librdkafka re-authenticates its open
//! connections (KIP-368) and keeps producing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::{FakeCluster, FakeClusterBuilder};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How many records each round trip produces and reads back.
const RECORDS: usize = 50;

/// A cluster with one topic `events` and two users.
fn cluster() -> FakeClusterBuilder {
    FakeCluster::builder()
        .topic("events", 1)
        .sasl_user("alice", "alice-secret")
        .sasl_user("bob", "bob-secret")
}

/// Client settings for `cluster` with the given extra properties.
fn config(cluster: &FakeCluster, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", cluster.bootstrap_servers());
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
}

/// Produces [`RECORDS`] records with `settings`, checks them in the
/// cluster's log, then reads them back with a consumer.
async fn round_trip(cluster: &FakeCluster, settings: &[(&str, &str)]) {
    let producer: FutureProducer = config(cluster, settings)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("events").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let stored = cluster.records("events", 0);
    assert_eq!(stored.len(), RECORDS);
    assert_eq!(
        stored[RECORDS - 1].value.as_deref(),
        Some(format!("v{}", RECORDS - 1).as_bytes())
    );

    let consumer: BaseConsumer = config(cluster, settings)
        .set("group.id", "readers")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("events", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while read.len() < RECORDS && tokio::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                read.push(m.payload().unwrap().to_vec());
            }
        }
        read
    })
    .await
    .unwrap();
    assert_eq!(read.len(), RECORDS, "records read back");
    assert_eq!(read[0], b"v0");
}

/// Keeps the errors librdkafka reports.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<(KafkaError, String)>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push((error, reason.to_string()));
    }
}

/// Asks for metadata with `settings` for up to three seconds; returns
/// whether it came, and the errors reported meanwhile.
async fn metadata(
    cluster: &FakeCluster,
    settings: &[(&str, &str)],
) -> (bool, Vec<(KafkaError, String)>) {
    let errors = Errors::default();
    let producer: FutureProducer<Errors> = config(cluster, settings)
        .create_with_context(errors.clone())
        .unwrap();
    let answered = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some("events"), Duration::from_secs(3))
            .is_ok()
    })
    .await
    .unwrap();
    let reported = errors.0.lock().unwrap().clone();
    (answered, reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_over_tls_produces_and_reads_back() {
    let cluster = cluster().tls().build().await;
    let ca = cluster.tls_ca_pem().unwrap();
    round_trip(
        &cluster,
        &[("security.protocol", "SSL"), ("ssl.ca.pem", ca.as_str())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_over_mutual_tls_produces_and_reads_back() {
    let cluster = cluster().require_client_cert().build().await;
    let ca = cluster.tls_ca_pem().unwrap();
    let cert = cluster.client_cert_pem().unwrap();
    let key = cluster.client_key_pem().unwrap();
    round_trip(
        &cluster,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.pem", ca.as_str()),
            ("ssl.certificate.pem", cert.as_str()),
            ("ssl.key.pem", key.as_str()),
        ],
    )
    .await;

    // Without a client certificate the handshake fails.
    let (answered, _) = metadata(
        &cluster,
        &[("security.protocol", "SSL"), ("ssl.ca.pem", ca.as_str())],
    )
    .await;
    assert!(!answered, "metadata without a client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_refuses_a_broker_whose_ca_it_does_not_trust() {
    let cluster = cluster().tls().build().await;
    let other = cluster_ca_of_another_cluster().await;
    let (answered, errors) = metadata(
        &cluster,
        &[("security.protocol", "SSL"), ("ssl.ca.pem", other.as_str())],
    )
    .await;
    assert!(!answered, "metadata from an untrusted broker");
    assert!(
        errors
            .iter()
            .any(|(e, _)| e.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL)),
        "an SSL error is reported: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_refuses_an_expired_or_wrong_host_certificate() {
    for cluster in [
        cluster().tls_expired().build().await,
        cluster()
            .tls_server_names(&["kafka.example.com"])
            .build()
            .await,
    ] {
        let ca = cluster.tls_ca_pem().unwrap();
        let (answered, errors) = metadata(
            &cluster,
            &[("security.protocol", "SSL"), ("ssl.ca.pem", ca.as_str())],
        )
        .await;
        assert!(
            !answered,
            "metadata over a certificate that does not verify"
        );
        assert!(
            errors
                .iter()
                .any(|(e, _)| e.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL)),
            "an SSL error is reported: {errors:?}"
        );
    }
}

/// The CA of a second, independent cluster.
async fn cluster_ca_of_another_cluster() -> String {
    let other = FakeCluster::builder().tls().build().await;
    let ca = other.tls_ca_pem().unwrap();
    other.shutdown();
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_plain_produces_and_reads_back() {
    let cluster = cluster().sasl(&["PLAIN", "SCRAM-SHA-512"]).build().await;
    round_trip(
        &cluster,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_scram_sha_256_over_tls() {
    let cluster = cluster().tls().sasl(&["SCRAM-SHA-256"]).build().await;
    let ca = cluster.tls_ca_pem().unwrap();
    round_trip(
        &cluster,
        &[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.pem", ca.as_str()),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_scram_sha_512_over_tls() {
    let cluster = cluster()
        .tls()
        .sasl(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
        .build()
        .await;
    let ca = cluster.tls_ca_pem().unwrap();
    round_trip(
        &cluster,
        &[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.pem", ca.as_str()),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "bob"),
            ("sasl.password", "bob-secret"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_with_a_wrong_password_gets_an_authentication_error() {
    let cluster = cluster()
        .tls()
        .sasl(&["PLAIN", "SCRAM-SHA-256"])
        .build()
        .await;
    let ca = cluster.tls_ca_pem().unwrap();
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let (answered, errors) = metadata(
            &cluster,
            &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.pem", ca.as_str()),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", "wrong"),
            ],
        )
        .await;
        assert!(!answered, "{mechanism}: metadata without authenticating");
        assert!(
            errors.iter().any(|(e, reason)| e.rdkafka_error_code()
                == Some(RDKafkaErrorCode::Authentication)
                && reason.contains("Invalid username or password")),
            "{mechanism}: an authentication error with Kafka's message: {errors:?}"
        );
    }
    // Nothing but the SASL exchange was answered.
    assert!(cluster.records("events", 0).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_re_authenticates_when_the_session_lifetime_ends() {
    let cluster = cluster()
        .sasl(&["SCRAM-SHA-256"])
        .sasl_session_lifetime(Duration::from_millis(1500))
        .build()
        .await;
    let errors = Errors::default();
    let producer: FutureProducer<Errors> = config(
        &cluster,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
            ("message.timeout.ms", "10000"),
        ],
    )
    .create_with_context(errors.clone())
    .unwrap();
    let mut connections = 0;
    for round in 0..3 {
        if round == 1 {
            connections = cluster.connections_accepted();
        }
        let value = format!("v{round}");
        producer
            .send(
                FutureRecord::<(), _>::to("events").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert_eq!(cluster.records("events", 0).len(), 3);
    // The same connections went on: re-authenticated, not reopened.
    assert_eq!(cluster.connections_accepted(), connections);
    assert!(
        cluster.sasl_authentications() > connections,
        "{} authentications on {connections} connections",
        cluster.sasl_authentications()
    );
    let reported = errors.0.lock().unwrap().clone();
    assert!(reported.is_empty(), "no error reported: {reported:?}");
}
