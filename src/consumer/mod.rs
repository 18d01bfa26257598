//! Reading from Kafka: what a consumer knows about its group, which a
//! transactional producer needs to commit offsets in a transaction.
//!
//! The full group consumer comes later; this module holds the pieces the
//! producer side already depends on.

mod group_metadata;

pub use group_metadata::{ConsumerGroupMetadata, OffsetToCommit};
