//! Fuzz target: an (API, version) among the guarded ones and an arbitrary
//! response body, through the bounded-decoding guard and kafka-protocol's
//! decoder. The logic lives in `fuzz/src/response_decode.rs`, shared with
//! the corpus replay test. Run with `-rss_limit_mb=512 -malloc_limit_mb=64`
//! so that an allocation the guard should have prevented is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/response_decode.rs");

fuzz_target!(|data: &[u8]| {
    run(data);
});
