//! A broker in its own process, shared by the bench binaries: the hidden
//! `--serve mock|fake` mode that runs the librdkafka mock cluster or the fake
//! cluster of `protocol-tests`, and [`Spawned`], which starts this same
//! binary in that mode and stops it when dropped.
//!
//! A binary that uses this module accepts `--serve`, `--brokers`, `--topic`,
//! `--partitions` and `--tls` (the flags [`Spawned::start`] passes) and calls
//! [`serve`] when `--serve` is given.

use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;

/// Which broker to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Broker {
    /// The librdkafka mock cluster.
    Mock,
    /// smartkafka's fake cluster (`protocol-tests`).
    Fake,
}

impl Broker {
    /// The value of `--serve` / `--spawn` for this broker.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Mock => "mock",
            Broker::Fake => "fake",
        }
    }
}

/// What the served cluster holds.
#[derive(Debug, Clone)]
pub struct ServeSpec {
    /// Brokers in the cluster.
    pub brokers: usize,
    /// The topic created at start (with `topics` above 1, the prefix of
    /// the topics' names: see [`topic_names`]).
    pub topic: String,
    /// How many topics are created.
    pub topics: usize,
    /// Partitions of each topic.
    pub partitions: i32,
    /// A TLS listener (fake cluster only).
    pub tls: bool,
}

/// The topics a run uses: `topic` alone, or `topic-0` to `topic-{n-1}`.
pub fn topic_names(topic: &str, topics: usize) -> Vec<String> {
    if topics <= 1 {
        vec![topic.to_string()]
    } else {
        (0..topics).map(|i| format!("{topic}-{i}")).collect()
    }
}

/// The hidden `--serve` mode: the broker in its own process. Prints the
/// bootstrap address (and, with TLS, the authority's PEM file) and serves
/// until standard input closes.
pub fn serve(broker: Broker, spec: &ServeSpec) {
    let stop = || {
        // Runs until the parent closes our stdin (or kills us).
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    };
    let announce = |bootstrap: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{bootstrap}");
        let _ = out.flush();
    };
    match broker {
        Broker::Mock => {
            let cluster = rdkafka::mocking::MockCluster::new(spec.brokers as i32)
                .expect("librdkafka mock cluster");
            for topic in topic_names(&spec.topic, spec.topics) {
                cluster
                    .create_topic(&topic, spec.partitions, 1)
                    .expect("create the topic on the mock cluster");
            }
            announce(&cluster.bootstrap_servers());
            stop();
        }
        Broker::Fake => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let mut builder = protocol_tests::FakeCluster::builder().brokers(spec.brokers);
            for topic in topic_names(&spec.topic, spec.topics) {
                builder = builder.topic(&topic, spec.partitions);
            }
            if spec.tls {
                builder = builder.tls();
            }
            let cluster = runtime.block_on(builder.build());
            announce(&cluster.bootstrap_servers());
            // With TLS, the second line names the authority's PEM file.
            let ca_file = cluster.tls_ca_pem().map(|pem| {
                let path = std::env::temp_dir().join(format!("perf-ca-{}.pem", std::process::id()));
                std::fs::write(&path, pem).expect("writing the CA file");
                announce(&path.display().to_string());
                path
            });
            stop();
            drop(cluster);
            if let Some(path) = ca_file {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A broker child process; closing its stdin stops it.
pub struct Spawned {
    child: Child,
    /// The cluster's bootstrap address.
    pub bootstrap: String,
    /// The authority's PEM file, for a TLS broker.
    pub ca_file: Option<String>,
}

impl Spawned {
    /// Starts this binary in its `--serve` mode and waits for the address.
    pub fn start(
        broker: Broker,
        spec: &ServeSpec,
    ) -> Result<Spawned, Box<dyn std::error::Error + Send + Sync>> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--serve", broker.name()])
            .args(["--brokers", &spec.brokers.to_string()])
            .args(["--topic", &spec.topic])
            .args(["--topics", &spec.topics.to_string()])
            .args(["--partitions", &spec.partitions.to_string()])
            .args(spec.tls.then_some("--tls"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the broker")?;
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let bootstrap = line.trim().to_owned();
        if bootstrap.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the broker process exited without an address".into());
        }
        let ca_file = if spec.tls {
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            Some(line.trim().to_owned()).filter(|path| !path.is_empty())
        } else {
            None
        };
        Ok(Spawned {
            child,
            bootstrap,
            ca_file,
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
