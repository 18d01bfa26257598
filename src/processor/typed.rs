//! Typed records: [`Typed`] decodes keys and values with
//! [`Deserializer`]s and hands them to a [`TypedProcessor`]. A record that
//! does not decode fails with [`ProcessError::deserialization`], which
//! sends it to the dead-letter topic (error kind `deserialization`)
//! without retrying it; the partition goes on with the next record.

use std::future::Future;

use super::{ProcessError, Processor};
use crate::consumer::ConsumedRecord;
use crate::serialization::Deserializer;

/// A record with its key and value decoded.
#[derive(Debug)]
#[non_exhaustive]
pub struct TypedRecord<'a, K, V> {
    /// The decoded key; `None` for a keyless record.
    pub key: Option<K>,
    /// The decoded value; `None` for a null value (a tombstone).
    pub value: Option<V>,
    /// The record as read: topic, partition, offset, timestamp, headers.
    pub raw: &'a ConsumedRecord,
}

/// A [`Processor`] of decoded records: as [`Processor`], with the key and
/// value decoded first. Wrap one in [`Typed`] to run it.
///
/// ```
/// use smartkafka::processor::{ProcessError, TypedProcessor, TypedRecord};
///
/// struct Greeter;
///
/// impl TypedProcessor for Greeter {
///     type Key = String;
///     type Value = String;
///
///     async fn process(&self, record: &TypedRecord<'_, String, String>) -> Result<(), ProcessError> {
///         println!("hello {:?} from {:?}", record.value, record.key);
///         Ok(())
///     }
/// }
/// ```
pub trait TypedProcessor: Send + Sync + 'static {
    /// The type keys decode to.
    type Key: Send + Sync + 'static;
    /// The type values decode to.
    type Value: Send + Sync + 'static;

    /// Processes one decoded record; see [`Processor::process`].
    fn process(
        &self,
        record: &TypedRecord<'_, Self::Key, Self::Value>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// See [`Processor::on_started`].
    fn on_started(&self, topics: &[String]) {
        let _ = topics;
    }

    /// See [`Processor::on_assigned`].
    fn on_assigned(&self, partitions: &[(String, i32)]) {
        let _ = partitions;
    }

    /// See [`Processor::on_revoked`].
    fn on_revoked(&self, partitions: &[(String, i32)]) {
        let _ = partitions;
    }

    /// See [`Processor::on_partition_end`].
    fn on_partition_end(&self, topic: &str, partition: i32) {
        let _ = (topic, partition);
    }

    /// See [`Processor::on_stopping`].
    fn on_stopping(&self) {}
}

/// Runs a [`TypedProcessor`] as a [`Processor`], decoding keys with `KD`
/// and values with `VD`.
///
/// ```
/// use smartkafka::processor::{ProcessError, Typed, TypedProcessor, TypedRecord};
/// use smartkafka::serialization::Utf8;
///
/// struct Lengths;
/// impl TypedProcessor for Lengths {
///     type Key = String;
///     type Value = String;
///     async fn process(&self, r: &TypedRecord<'_, String, String>) -> Result<(), ProcessError> {
///         println!("{}", r.value.as_deref().map_or(0, str::len));
///         Ok(())
///     }
/// }
/// let processor = Typed::new(Utf8, Utf8, Lengths);
/// # let _ = processor;
/// ```
pub struct Typed<KD, VD, P> {
    keys: KD,
    values: VD,
    inner: P,
}

impl<KD, VD, P> Typed<KD, VD, P> {
    /// `inner`, fed keys decoded by `keys` and values decoded by `values`.
    pub fn new(keys: KD, values: VD, inner: P) -> Self {
        Typed {
            keys,
            values,
            inner,
        }
    }

    /// The wrapped processor.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<KD, VD, P> Processor for Typed<KD, VD, P>
where
    P: TypedProcessor,
    KD: Deserializer<P::Key> + 'static,
    VD: Deserializer<P::Value> + 'static,
{
    async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
        let key = match record.key.as_deref() {
            Some(bytes) => Some(
                self.keys
                    .deserialize(bytes)
                    .map_err(|e| ProcessError::deserialization(format!("key: {e}")))?,
            ),
            None => None,
        };
        let value = match record.value.as_deref() {
            Some(bytes) => Some(
                self.values
                    .deserialize(bytes)
                    .map_err(|e| ProcessError::deserialization(format!("value: {e}")))?,
            ),
            None => None,
        };
        let typed = TypedRecord {
            key,
            value,
            raw: record,
        };
        self.inner.process(&typed).await
    }

    fn on_started(&self, topics: &[String]) {
        self.inner.on_started(topics);
    }

    fn on_assigned(&self, partitions: &[(String, i32)]) {
        self.inner.on_assigned(partitions);
    }

    fn on_revoked(&self, partitions: &[(String, i32)]) {
        self.inner.on_revoked(partitions);
    }

    fn on_partition_end(&self, topic: &str, partition: i32) {
        self.inner.on_partition_end(topic, partition);
    }

    fn on_stopping(&self) {
        self.inner.on_stopping();
    }
}
