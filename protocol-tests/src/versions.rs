//! Advertised API version ranges.
//!
//! Each fake broker owns an [`ApiVersionTable`]: the APIs it answers in
//! ApiVersions and the version range of each. Requests for an API or a version
//! outside the table close the connection, as a real broker does; ApiVersions
//! itself answers `UNSUPPORTED_VERSION` instead.

use std::collections::BTreeMap;

use kafka_protocol::messages::ApiKey;

/// The APIs the fake cluster implements, in the order they are advertised.
pub const IMPLEMENTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
];

/// The API keys and version ranges one broker advertises.
///
/// The default table holds every API the fake cluster implements, each with the
/// full range kafka-protocol can decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, (i16, i16)>,
}

/// The versions of `key` the fake cluster can decode and answer.
///
/// kafka-protocol 0.18 lists OffsetFetch and OffsetCommit v10 (topic ids) but
/// cannot decode their topic entries, and InitProducerId v6 while its request
/// type stops at v5, so those are capped to what decodes. The transactional
/// APIs stop before transactions v2 (KIP-890 part 2): AddPartitionsToTxn at
/// v3 (v4+ is the broker-to-broker batched form), EndTxn and TxnOffsetCommit
/// at v4 (v5 is transactions v2); AddOffsetsToTxn goes to its v4.
fn implemented_range(key: ApiKey) -> (i16, i16) {
    let range = key.valid_versions();
    let max = match key {
        ApiKey::OffsetFetch | ApiKey::OffsetCommit => range.max.min(9),
        ApiKey::InitProducerId => range.max.min(5),
        ApiKey::AddPartitionsToTxn => range.max.min(3),
        ApiKey::EndTxn | ApiKey::TxnOffsetCommit => range.max.min(4),
        _ => range.max,
    };
    (range.min, max)
}

impl Default for ApiVersionTable {
    fn default() -> Self {
        let ranges = IMPLEMENTED_APIS
            .iter()
            .map(|key| (*key as i16, implemented_range(*key)))
            .collect();
        Self { ranges }
    }
}

impl ApiVersionTable {
    /// Sets the advertised range of `key` to `min..=max`, clamped to what the
    /// fake cluster can decode. Adds the key back if it had been removed.
    pub fn set(&mut self, key: ApiKey, min: i16, max: i16) {
        let (valid_min, valid_max) = implemented_range(key);
        let min = min.max(valid_min);
        let max = max.min(valid_max);
        self.ranges.insert(key as i16, (min, max));
    }

    /// Lowers the advertised maximum version of `key` (no-op if `key` is absent).
    pub fn set_max(&mut self, key: ApiKey, max: i16) {
        if let Some(range) = self.ranges.get_mut(&(key as i16)) {
            range.1 = max.max(range.0);
        }
    }

    /// Stops advertising (and answering) `key`.
    pub fn remove(&mut self, key: ApiKey) {
        self.ranges.remove(&(key as i16));
    }

    /// The advertised range of `key`, if the key is advertised.
    pub fn range(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(key as i16)).copied()
    }

    /// Whether `version` of `key` is advertised.
    pub fn supports(&self, key: ApiKey, version: i16) -> bool {
        self.range(key)
            .is_some_and(|(min, max)| (min..=max).contains(&version))
    }

    /// Every advertised `(api key, min, max)`, ordered by key.
    pub fn entries(&self) -> impl Iterator<Item = (i16, i16, i16)> + '_ {
        self.ranges.iter().map(|(k, (min, max))| (*k, *min, *max))
    }
}
