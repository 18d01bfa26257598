//! TLS and SASL against the fake cluster's secured listeners: records sent
//! over each mechanism are read back from the broker's log, and each kind
//! of refusal (wrong password, mechanism not enabled, untrusted, expired or
//! wrong-host certificate) fails `build()`/`connect()` at once with a fatal
//! error that names the cause and never the password.

use std::time::Duration;

use tokio::time::Instant;

use protocol_tests::FakeCluster;
use smartkafka::consumer::{PartitionReader, ReaderConfig, StartOffset};
use std::sync::Arc;

use smartkafka::security::{
    OAuthToken, SaslConfig, TlsConfig, TokenFuture, TokenProvider, UnsecuredJwsProvider,
};
use smartkafka::{AdminClient, ClientConfig, ErrorKind, Producer, Record};

const PASSWORD: &str = "alice-secret";

async fn produce_and_read_back(
    cluster: &FakeCluster,
    tls: Option<TlsConfig>,
    sasl: Option<SaslConfig>,
) {
    const RECORDS: usize = 100_000;
    let mut builder = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .max_block(Duration::from_secs(10));
    if let Some(tls) = tls.clone() {
        builder = builder.tls(tls);
    }
    if let Some(sasl) = sasl.clone() {
        builder = builder.sasl(sasl);
    }
    let producer = builder.build().await.expect("producer");
    for i in 0..RECORDS {
        let _delivery = producer
            .try_send(
                Record::new("events")
                    .partition((i % 3) as i32)
                    .value(format!("r{i}")),
            )
            .expect("accepted");
    }
    producer.flush().await.expect("flushed");
    producer.close(Duration::from_secs(5)).await.unwrap();
    let mut stored = Vec::new();
    for p in 0..3 {
        stored.extend(cluster.records("events", p));
    }
    assert_eq!(stored.len(), RECORDS, "records in the log");
    let mut values: Vec<String> = stored
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), RECORDS, "no duplicates");

    // The reader and the admin client go through the same layer.
    let mut client = ClientConfig::new(&cluster.bootstrap_servers());
    if let Some(tls) = tls {
        client = client.tls(tls);
    }
    if let Some(sasl) = sasl {
        client = client.sasl(sasl);
    }
    let admin = AdminClient::connect(client.clone()).await.expect("admin");
    let ends = admin
        .list_offsets("events", smartkafka::OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(ends.values().sum::<i64>(), RECORDS as i64);
    let mut reader_config = ReaderConfig::new(&cluster.bootstrap_servers());
    reader_config.client = client;
    let mut reader = PartitionReader::connect(reader_config)
        .await
        .expect("reader");
    reader
        .assign(&[("events", 0, StartOffset::Earliest)])
        .await
        .unwrap();
    let expected = cluster.records("events", 0).len();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while read < expected && Instant::now() < deadline {
        read += reader.poll(Duration::from_millis(200)).await.unwrap().len();
    }
    assert_eq!(read, expected, "partition 0 read back");
}

fn trust(cluster: &FakeCluster) -> TlsConfig {
    TlsConfig::new().ca_pem(cluster.tls_ca_pem().expect("a TLS cluster"))
}

async fn sasl_cluster(mechanisms: &[&str], tls: bool) -> FakeCluster {
    let mut builder = FakeCluster::builder()
        .brokers(2)
        .topic("events", 3)
        .sasl(mechanisms)
        .sasl_user("alice", PASSWORD);
    if tls {
        builder = builder.tls();
    }
    builder.build().await
}

#[tokio::test]
async fn every_mechanism_carries_records_over_sasl_plaintext() {
    for (mechanism, sasl) in [
        ("PLAIN", SaslConfig::plain("alice", PASSWORD)),
        ("SCRAM-SHA-256", SaslConfig::scram_sha256("alice", PASSWORD)),
        ("SCRAM-SHA-512", SaslConfig::scram_sha512("alice", PASSWORD)),
    ] {
        let cluster = sasl_cluster(&[mechanism], false).await;
        produce_and_read_back(&cluster, None, Some(sasl)).await;
    }
}

#[tokio::test]
async fn scram_over_tls_and_mutual_tls_carry_records() {
    let cluster = sasl_cluster(&["SCRAM-SHA-512"], true).await;
    produce_and_read_back(
        &cluster,
        Some(trust(&cluster)),
        Some(SaslConfig::scram_sha512("alice", PASSWORD)),
    )
    .await;

    let mtls = FakeCluster::builder()
        .topic("events", 3)
        .require_client_cert()
        .build()
        .await;
    let tls = trust(&mtls).client_cert_pem(
        mtls.client_cert_pem().unwrap(),
        mtls.client_key_pem().unwrap(),
    );
    produce_and_read_back(&mtls, Some(tls), None).await;
}

/// `build()` must fail at once (well within `max_block`), fatally, with
/// `kind`, a message holding `needle`, and never the password.
async fn build_fails(client: ClientConfig, kind: ErrorKind, needle: &str) {
    let started = Instant::now();
    let mut config = smartkafka::ProducerConfig::new("unused:1").max_block(Duration::from_secs(30));
    config.client = client.clone();
    let err = Producer::new(config).await.expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), &kind, "{err}");
    assert!(err.is_fatal() && !err.is_retriable(), "{err}");
    assert!(err.to_string().contains(needle), "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    let err = AdminClient::connect(client).await.expect_err("refused");
    assert_eq!(err.kind(), &kind, "{err}");
}

#[tokio::test]
async fn wrong_credentials_and_disabled_mechanisms_fail_at_once() {
    let cluster = sasl_cluster(&["PLAIN", "SCRAM-SHA-256"], false).await;
    let client = |sasl| ClientConfig::new(&cluster.bootstrap_servers()).sasl(sasl);
    build_fails(
        client(SaslConfig::plain("alice", "wrong")),
        ErrorKind::Authentication,
        "Invalid username or password",
    )
    .await;
    build_fails(
        client(SaslConfig::scram_sha256("mallory", PASSWORD)),
        ErrorKind::Authentication,
        "Invalid username or password",
    )
    .await;
    build_fails(
        client(SaslConfig::scram_sha512("alice", PASSWORD)),
        ErrorKind::Authentication,
        "[\"PLAIN\", \"SCRAM-SHA-256\"]",
    )
    .await;
}

#[tokio::test]
async fn certificates_that_do_not_verify_fail_at_once_naming_why() {
    // Trusting only the public roots: the cluster's CA is unknown.
    let cluster = FakeCluster::builder()
        .topic("events", 1)
        .tls()
        .build()
        .await;
    let client = ClientConfig::new(&cluster.bootstrap_servers());
    build_fails(
        client.clone().tls(TlsConfig::new().webpki_roots()),
        ErrorKind::Tls,
        "unknown issuer",
    )
    .await;

    let expired = FakeCluster::builder().tls_expired().build().await;
    build_fails(
        ClientConfig::new(&expired.bootstrap_servers()).tls(trust(&expired)),
        ErrorKind::Tls,
        "expired",
    )
    .await;

    let elsewhere = FakeCluster::builder()
        .topic("events", 3)
        .tls_server_names(&["kafka.example.com"])
        .build()
        .await;
    build_fails(
        ClientConfig::new(&elsewhere.bootstrap_servers()).tls(trust(&elsewhere)),
        ErrorKind::Tls,
        "wrong host",
    )
    .await;
    // Without the host name check the chain still verifies, and records flow.
    produce_and_read_back(
        &elsewhere,
        Some(trust(&elsewhere).verify_hostname(false)),
        None,
    )
    .await;
}

#[tokio::test]
async fn missing_trust_files_are_configuration_errors() {
    let client =
        ClientConfig::new("localhost:9093").tls(TlsConfig::new().ca_file("/nonexistent/ca.pem"));
    let err = AdminClient::connect(client).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config { field: "tls" }, "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

/// A provider whose identity service is down.
struct Unavailable;

impl TokenProvider for Unavailable {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async {
            Err::<OAuthToken, _>(smartkafka::Error::authentication(
                "identity provider unreachable",
            ))
        })
    }
}

#[tokio::test]
async fn oauthbearer_tokens_carry_records_and_bad_ones_fail_at_once() {
    let cluster = sasl_cluster(&["OAUTHBEARER", "PLAIN"], true).await;
    let provider = Arc::new(UnsecuredJwsProvider::new("alice"));
    produce_and_read_back(
        &cluster,
        Some(trust(&cluster)),
        Some(SaslConfig::oauthbearer(provider)),
    )
    .await;

    let client = |sasl| {
        ClientConfig::new(&cluster.bootstrap_servers())
            .tls(trust(&cluster))
            .sasl(sasl)
    };
    let expired = UnsecuredJwsProvider::new("alice").lifetime(Duration::ZERO);
    build_fails(
        client(SaslConfig::oauthbearer(Arc::new(expired))),
        ErrorKind::Authentication,
        "invalid_token",
    )
    .await;
    build_fails(
        client(SaslConfig::oauthbearer(Arc::new(Unavailable))),
        ErrorKind::Authentication,
        "identity provider unreachable",
    )
    .await;
}

/// The session lifetime the re-authentication tests give the brokers.
const SESSION: Duration = Duration::from_millis(1500);

async fn short_session_cluster(mechanism: &str) -> FakeCluster {
    FakeCluster::builder()
        .topic("events", 3)
        .sasl(&[mechanism])
        .sasl_user("alice", PASSWORD)
        .sasl_session_lifetime(SESSION)
        .build()
        .await
}

/// KIP-368: with sessions of 1.5 s, a producer sending without a pause for
/// three lifetimes re-authenticates every connection on the spot: no
/// connection is opened again, no request fails or is retried, and every
/// record is in the log once.
#[tokio::test]
async fn sessions_are_renewed_on_the_same_connections_while_producing() {
    for (mechanism, sasl) in [
        ("PLAIN", SaslConfig::plain("alice", PASSWORD)),
        ("SCRAM-SHA-256", SaslConfig::scram_sha256("alice", PASSWORD)),
    ] {
        let cluster = short_session_cluster(mechanism).await;
        let producer = Producer::builder()
            .bootstrap_servers(&cluster.bootstrap_servers())
            .sasl(sasl)
            .linger(Duration::from_millis(5))
            .build()
            .await
            .expect("producer");
        let mut sent = 0usize;
        let mut deliveries = Vec::new();
        let mut send = |deliveries: &mut Vec<_>| {
            deliveries.push(
                producer
                    .try_send(
                        Record::new("events")
                            .partition((sent % 3) as i32)
                            .value(format!("r{sent}")),
                    )
                    .expect("accepted"),
            );
            sent += 1;
        };
        for _ in 0..3 {
            send(&mut deliveries);
        }
        producer.flush().await.expect("first records");
        let connections = cluster.connections_accepted();
        let authentications = cluster.sasl_authentications();
        assert_eq!(authentications, connections, "one authentication each");

        let started = Instant::now();
        while started.elapsed() < 3 * SESSION {
            for _ in 0..10 {
                send(&mut deliveries);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for delivery in deliveries {
            delivery.await.expect("delivered");
        }
        let stats = producer.stats();
        producer.close(Duration::from_secs(5)).await.unwrap();

        let mut values: Vec<String> = (0..3)
            .flat_map(|p| cluster.records("events", p))
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(values.len(), sent, "{mechanism}: records in the log");
        values.sort();
        values.dedup();
        assert_eq!(values.len(), sent, "{mechanism}: no duplicates");
        assert_eq!(
            cluster.connections_accepted(),
            connections,
            "{mechanism}: no connection opened again"
        );
        assert_eq!(stats.request_failures, 0, "{mechanism}: {stats:?}");
        assert_eq!(stats.retries, 0, "{mechanism}: {stats:?}");
        assert_eq!(stats.errors, 0, "{mechanism}: {stats:?}");
        // Each connection re-authenticated at 85-95% of every lifetime:
        // at least three sessions each within three lifetimes.
        let total = cluster.sasl_authentications();
        assert!(
            total >= 3 * connections,
            "{mechanism}: {total} authentications over {connections} connections"
        );
    }
}

/// KIP-368, refused: once the password changes, the next re-authentication
/// fails and the records waiting on that connection fail at once with the
/// authentication error (not retried until `delivery_timeout`), and none of
/// them is in the log.
#[tokio::test]
async fn a_refused_reauthentication_fails_the_waiting_records_at_once() {
    let cluster = short_session_cluster("SCRAM-SHA-256").await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .sasl(SaslConfig::scram_sha256("alice", PASSWORD))
        .delivery_timeout(Duration::from_secs(120))
        .build()
        .await
        .expect("producer");
    producer
        .send_and_wait(Record::new("events").partition(0).value("before"))
        .await
        .expect("delivered before the change");
    cluster.set_sasl_password("alice", "changed-meanwhile");
    let changed = Instant::now();
    let mut failed = None;
    for i in 0.. {
        let delivery = producer
            .send(
                Record::new("events")
                    .partition(0)
                    .value(format!("after-{i}")),
            )
            .await;
        let outcome = match delivery {
            Ok(delivery) => delivery.await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            failed = Some((format!("after-{i}"), e));
            break;
        }
        assert!(
            changed.elapsed() < 2 * SESSION,
            "records still delivered {:?} after the password changed",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (value, error) = failed.expect("a failure");
    assert_eq!(error.kind(), &ErrorKind::Authentication, "{error}");
    assert!(error.is_fatal());
    // Well before the 120 s delivery timeout: the refusal is not retried.
    assert!(
        changed.elapsed() < Duration::from_secs(30),
        "failed only after {:?}",
        changed.elapsed()
    );
    let _ = producer.close(Duration::from_secs(1)).await;
    let values: Vec<Vec<u8>> = cluster
        .records("events", 0)
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    assert_eq!(values.first().map(Vec::as_slice), Some(&b"before"[..]));
    // Held while the session was renewed, it was never written.
    assert!(!error.possibly_persisted(), "{error:?}");
    assert!(
        !values.contains(&value.into_bytes()),
        "the failed record is in the log"
    );
}
