//! A processor for tests of the processor runner: it records every call
//! (what it saw, when, whether it failed), fails as a rule says, can sleep
//! a random while per record, and counts how many calls ran at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smartkafka::consumer::ConsumedRecord;
use smartkafka::processor::{ProcessError, Processor};
use tokio::time::Instant;

/// One call of `process`, as the processor saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub ok: bool,
    pub at: Instant,
}

/// Decides a call's outcome from the value and how often it was seen.
pub type Rule = Arc<dyn Fn(&str, usize) -> Result<(), ProcessError> + Send + Sync>;

/// A processor that records every call and fails as its rule says.
#[derive(Clone)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub rule: Rule,
    pub max_sleep_ms: u64,
    pub running: Arc<AtomicUsize>,
    pub most_running: Arc<AtomicUsize>,
    pub assigned: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Recorder {
    pub fn new(
        rule: impl Fn(&str, usize) -> Result<(), ProcessError> + Send + Sync + 'static,
    ) -> Self {
        Recorder {
            calls: Arc::default(),
            rule: Arc::new(rule),
            max_sleep_ms: 0,
            running: Arc::default(),
            most_running: Arc::default(),
            assigned: Arc::default(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Processor for Recorder {
    async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        let value =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).to_string();
        if self.max_sleep_ms > 0 {
            let ms = rand::random_range(0..self.max_sleep_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let seen = self
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.value == value)
            .count();
        let result = (self.rule)(&value, seen);
        self.calls.lock().unwrap().push(Call {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).to_string()),
            value,
            ok: result.is_ok(),
            at: Instant::now(),
        });
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn on_assigned(&self, partitions: &[(String, i32)]) {
        self.assigned
            .lock()
            .unwrap()
            .push((Instant::now(), partitions.len()));
    }
}
