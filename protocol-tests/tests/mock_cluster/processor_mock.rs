//! The processor runner against librdkafka's mock cluster, whose group
//! coordinator and log we did not write: the shared scenarios of
//! `support::processor_runs` (dead-letter topic, retry topic, undecodable
//! records, key order across a crash), and after a graceful shutdown
//! nothing is left to read from the group's commits. Topics and committed
//! offsets are read back with rust-rdkafka.

use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use smartkafka::consumer::Assignor;
use smartkafka::processor::ProcessorRunner;
use tokio::time::Instant;

use crate::support::processor_runs::{self as runs, Peer};
use crate::support::recorder::Recorder;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

fn cluster(topics: &[(&str, i32)]) -> Mock {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    for (topic, partitions) in topics {
        cluster
            .create_topic(topic, *partitions, 1)
            .expect("create the topic");
    }
    cluster
}

impl Peer for Mock {
    fn bootstrap(&self) -> String {
        self.bootstrap_servers()
    }

    /// The mock's shortest session timeout.
    fn session(&self) -> Duration {
        Duration::from_secs(6)
    }

    /// Read with rust-rdkafka: the group's committed offsets and the
    /// partitions' high watermarks.
    async fn committed_and_ends(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Vec<(i64, i64)> {
        let bootstrap = self.bootstrap_servers();
        let (group, topic) = (group.to_string(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let reader: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .create()
                .unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let committed = reader
                .committed_offsets(tpl, Duration::from_secs(5))
                .unwrap();
            (0..partitions)
                .map(|p| {
                    let (_, end) = reader
                        .fetch_watermarks(&topic, p, Duration::from_secs(5))
                        .unwrap();
                    let offset = committed
                        .find_partition(&topic, p)
                        .and_then(|e| e.offset().to_raw())
                        .filter(|o| *o >= 0)
                        .unwrap_or(-1);
                    (offset, end)
                })
                .collect()
        })
        .await
        .expect("reader")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_reach_the_dead_letter_topic_with_their_headers_and_all_is_committed() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(runs::DEAD_LETTER_TOPICS);
    runs::failing_records_reach_the_dead_letter_topic(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_once_succeeds_from_the_retry_topic_after_its_delay() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(runs::RETRY_TOPICS);
    runs::a_record_failing_once_succeeds_from_the_retry_topic(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_dead_lettered_and_its_partition_goes_on() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(runs::UNDECODABLE_TOPICS);
    runs::an_undecodable_record_is_dead_lettered(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_in_order_under_concurrency_and_a_crash_loses_nothing() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(runs::ORDERED_TOPICS);
    // The second run's member joins once the crashed one has expired.
    let session = cluster.session();
    runs::keys_stay_in_order_across_a_crash(&cluster, session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_shutdown_a_librdkafka_reader_finds_nothing_left() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(&[("jobs", 2), ("jobs.dlt", 1)]);
    let producer = runs::producer(&cluster.bootstrap_servers()).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..100)
        .map(|i| (Some(format!("k{}", i % 7)), format!("job-{i}").into_bytes()))
        .collect();
    runs::write(&producer, "jobs", &records).await;
    let processor = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        runs::consumer(
            &cluster.bootstrap_servers(),
            "graceful",
            Duration::from_secs(10),
            Assignor::Range,
        )
        .await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["jobs"])
    .max_concurrency(4)
    .commit_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(runs::until(stats, |s| s.processed == 100)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(summary.processed, 100);
    runs::assert_committed_to_end(&cluster, "graceful", "jobs", 2).await;

    // A librdkafka reader starting from the group's commits finds
    // nothing left. (That the member left the group is checked against
    // the fake cluster: the mock answers LeaveGroup v3 without its members
    // array, which our consumer refuses, so the mock keeps the member
    // until its session expires.)
    let bootstrap = cluster.bootstrap_servers();
    let read = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "graceful")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("jobs", p, rdkafka::Offset::Stored)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut read = 0;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
                read += 1;
            }
        }
        read
    })
    .await
    .unwrap();
    assert_eq!(read, 0, "nothing left to process twice");
}
