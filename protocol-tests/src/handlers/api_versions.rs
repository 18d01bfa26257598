//! ApiVersions: advertises the broker's [`ApiVersionTable`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

use super::Ctx;
use crate::versions::ApiVersionTable;

/// An ApiVersions response listing `table` with `error_code`.
pub(super) fn response(table: &ApiVersionTable, error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            table
                .entries()
                .map(|(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
}

/// Whether `name` is a valid client software name or version (KIP-511).
fn valid_software_field(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

/// Answers an ApiVersions request at a supported version.
pub(super) fn handle(ctx: &Ctx<'_>, request: ApiVersionsRequest) -> ApiVersionsResponse {
    let table = ctx
        .shared
        .state()
        .broker(ctx.broker_id)
        .map(|b| b.versions.clone())
        .unwrap_or_default();
    if ctx.version >= 3
        && !(valid_software_field(request.client_software_name.as_str())
            && valid_software_field(request.client_software_version.as_str()))
    {
        return response(&table, ResponseError::InvalidRequest.code());
    }
    response(&table, 0)
}
