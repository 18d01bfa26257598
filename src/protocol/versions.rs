//! API version negotiation.
//!
//! Each broker advertises, per API, the range of versions it understands
//! (ApiVersions). This client has its own range per API: the versions whose
//! wire format it can encode and whose responses its bounded-decoding guard
//! knows. For each API the connection uses the highest version in both ranges;
//! the result is remembered per connection in [`NegotiatedVersions`].

use std::collections::BTreeMap;
use std::fmt;

/// The Kafka API keys (Produce, Fetch, Metadata, ...), re-exported from
/// `kafka_protocol` so callers of [`NegotiatedVersions`] need not depend on it.
pub use kafka_protocol::messages::ApiKey;

use crate::error::{Error, ErrorKind};

/// An inclusive range of API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// The lowest version.
    pub min: i16,
    /// The highest version.
    pub max: i16,
}

impl VersionRange {
    /// The range `min..=max`.
    pub const fn new(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    /// The versions in both ranges, or `None` when they do not overlap.
    pub fn intersect(self, other: VersionRange) -> Option<VersionRange> {
        let min = self.min.max(other.min);
        let max = self.max.min(other.max);
        (min <= max).then_some(VersionRange { min, max })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}..=v{}", self.min, self.max)
    }
}

/// The versions this client speaks, per API.
///
/// The upper bounds are deliberate:
/// - Produce stops at v11 and Fetch at v12: later versions address topics by
///   id instead of name.
/// - InitProducerId stops at v5 (v6 adds two-phase-commit fields), EndTxn at
///   v4 and TxnOffsetCommit at v4 (v5 is the transactions-v2 protocol).
/// - JoinGroup stops at v5 and SyncGroup at v3, the versions librdkafka
///   uses: the later ones only add the flexible encoding and fields the
///   classic consumer does not need (KIP-848's `skip_assignment`), and
///   librdkafka's mock broker misreads their flexible arrays. LeaveGroup
///   stops at v2: only dynamic members leave (a static member keeps its
///   place, as in the Java client), which v3's batch of members with
///   instance ids adds nothing to, and librdkafka's mock broker advertises
///   v3 and v4 but reads every version with the v2 layout.
/// - RecordBatch v2 needs Produce v3 and Fetch v4 at least.
pub const CLIENT_VERSIONS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, VersionRange::new(3, 11)),
    (ApiKey::Fetch, VersionRange::new(4, 12)),
    (ApiKey::ListOffsets, VersionRange::new(1, 9)),
    (ApiKey::Metadata, VersionRange::new(1, 12)),
    (ApiKey::OffsetCommit, VersionRange::new(2, 9)),
    (ApiKey::OffsetFetch, VersionRange::new(1, 9)),
    (ApiKey::FindCoordinator, VersionRange::new(0, 6)),
    (ApiKey::JoinGroup, VersionRange::new(0, 5)),
    (ApiKey::SyncGroup, VersionRange::new(0, 3)),
    (ApiKey::Heartbeat, VersionRange::new(0, 4)),
    (ApiKey::LeaveGroup, VersionRange::new(0, 2)),
    (ApiKey::SaslHandshake, VersionRange::new(0, 1)),
    (ApiKey::ApiVersions, VersionRange::new(0, 3)),
    (ApiKey::CreateTopics, VersionRange::new(2, 7)),
    (ApiKey::DeleteTopics, VersionRange::new(1, 6)),
    (ApiKey::InitProducerId, VersionRange::new(0, 5)),
    (ApiKey::AddPartitionsToTxn, VersionRange::new(0, 3)),
    (ApiKey::AddOffsetsToTxn, VersionRange::new(0, 3)),
    (ApiKey::EndTxn, VersionRange::new(0, 4)),
    (ApiKey::TxnOffsetCommit, VersionRange::new(0, 4)),
    (ApiKey::SaslAuthenticate, VersionRange::new(0, 2)),
];

/// This client's version range for `api`, limited to the versions the
/// bounded-decoding guard covers. `None` if the client never sends `api`.
pub fn client_range(api: ApiKey) -> Option<VersionRange> {
    let (_, range) = CLIENT_VERSIONS.iter().find(|(k, _)| *k == api)?;
    let guarded: Vec<i16> = (range.min..=range.max)
        .filter(|v| super::guard::is_guarded(api, *v))
        .collect();
    Some(VersionRange::new(*guarded.first()?, *guarded.last()?))
}

/// The versions chosen for one broker connection.
///
/// ```
/// use smartkafka::protocol::{ApiKey, NegotiatedVersions, VersionRange};
/// let broker = [(ApiKey::Produce, VersionRange::new(0, 9)), (ApiKey::Metadata, VersionRange::new(0, 20))];
/// let v = NegotiatedVersions::negotiate(broker.iter().map(|(k, r)| (*k as i16, *r)));
/// assert_eq!(v.get(ApiKey::Produce), Some(9)); // the broker's ceiling
/// assert_eq!(v.get(ApiKey::Fetch), None); // the broker did not advertise it
/// assert!(v.require(ApiKey::Fetch).is_err());
/// // Debug names the APIs: NegotiatedVersions { chosen: {Produce: 9, Metadata: 12}, ... }
/// assert!(format!("{v:?}").contains("Produce: 9"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    chosen: BTreeMap<i16, i16>,
    advertised: BTreeMap<i16, VersionRange>,
}

impl NegotiatedVersions {
    /// Chooses, for every API this client speaks, the highest version both
    /// sides support, from the broker's advertised `(api key, range)` list.
    pub fn negotiate(advertised: impl IntoIterator<Item = (i16, VersionRange)>) -> Self {
        let advertised: BTreeMap<i16, VersionRange> = advertised.into_iter().collect();
        let mut chosen = BTreeMap::new();
        for (api, _) in CLIENT_VERSIONS {
            let key = *api as i16;
            let (Some(ours), Some(theirs)) = (client_range(*api), advertised.get(&key)) else {
                continue;
            };
            if let Some(common) = ours.intersect(*theirs) {
                // Highest common version the guard covers.
                if let Some(v) = (common.min..=common.max)
                    .rev()
                    .find(|v| super::guard::is_guarded(*api, *v))
                {
                    chosen.insert(key, v);
                }
            }
        }
        NegotiatedVersions { chosen, advertised }
    }

    /// The version to use for `api`, if both sides have one in common.
    pub fn get(&self, api: ApiKey) -> Option<i16> {
        self.chosen.get(&(api as i16)).copied()
    }

    /// The version to use for `api`, or an [`ErrorKind::UnsupportedApi`] error
    /// saying what the broker offers and what this client needs.
    pub fn require(&self, api: ApiKey) -> Result<i16, Error> {
        self.get(api).ok_or_else(|| {
            let ours =
                client_range(api).map_or_else(|| "no version".to_string(), |r| r.to_string());
            let message = match self.advertised(api) {
                Some(theirs) => {
                    format!("the broker supports {api:?} {theirs}, this client needs {ours}")
                }
                None => format!("the broker does not support {api:?} (this client needs {ours})"),
            };
            Error::new(ErrorKind::UnsupportedApi, message)
        })
    }

    /// The range the broker advertised for `api`.
    pub fn advertised(&self, api: ApiKey) -> Option<VersionRange> {
        self.advertised.get(&(api as i16)).copied()
    }

    /// Every `(api, version)` chosen, in API key order.
    pub fn iter(&self) -> impl Iterator<Item = (ApiKey, i16)> + '_ {
        self.chosen
            .iter()
            .filter_map(|(k, v)| ApiKey::try_from(*k).ok().map(|k| (k, *v)))
    }
}

/// An API key printed by name (`Produce`), or by number when this client
/// does not know it.
struct ApiName(i16);

impl fmt::Debug for ApiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ApiKey::try_from(self.0) {
            Ok(api) => write!(f, "{api:?}"),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

/// A version range printed as `v0..=v9` in Debug output.
struct RangeName(VersionRange);

impl fmt::Debug for RangeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for NegotiatedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Chosen<'a>(&'a BTreeMap<i16, i16>);
        impl fmt::Debug for Chosen<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| (ApiName(*k), *v)))
                    .finish()
            }
        }
        struct Advertised<'a>(&'a BTreeMap<i16, VersionRange>);
        impl fmt::Debug for Advertised<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, r)| (ApiName(*k), RangeName(*r))))
                    .finish()
            }
        }
        f.debug_struct("NegotiatedVersions")
            .field("chosen", &Chosen(&self.chosen))
            .field("advertised", &Advertised(&self.advertised))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_apis_instead_of_printing_their_keys() {
        let v = NegotiatedVersions::negotiate([
            (ApiKey::Produce as i16, VersionRange::new(0, 7)),
            (ApiKey::Metadata as i16, VersionRange::new(0, 12)),
            (-7, VersionRange::new(0, 1)),
        ]);
        assert_eq!(
            format!("{v:?}"),
            "NegotiatedVersions { chosen: {Produce: 7, Metadata: 12}, \
             advertised: {-7: v0..=v1, Produce: v0..=v7, Metadata: v0..=v12} }"
        );
    }

    #[test]
    fn client_ranges_stay_inside_what_kafka_protocol_encodes() {
        for (api, range) in CLIENT_VERSIONS {
            let kp = api.valid_versions();
            assert!(range.min >= kp.min && range.max <= kp.max, "{api:?}");
        }
    }

    #[test]
    fn the_highest_common_version_wins_and_missing_apis_are_clear_errors() {
        let v = NegotiatedVersions::negotiate([
            (ApiKey::Produce as i16, VersionRange::new(0, 7)),
            (ApiKey::Fetch as i16, VersionRange::new(0, 100)),
            (ApiKey::InitProducerId as i16, VersionRange::new(7, 9)),
        ]);
        assert_eq!(v.get(ApiKey::Produce), Some(7));
        assert_eq!(
            v.get(ApiKey::Fetch),
            client_range(ApiKey::Fetch).map(|r| r.max)
        );
        let err = v.require(ApiKey::InitProducerId).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::UnsupportedApi);
        assert!(err.to_string().contains("v7..=v9"), "{err}");
        let err = v.require(ApiKey::Metadata).unwrap_err();
        assert!(err.to_string().contains("does not support"), "{err}");
    }
}
