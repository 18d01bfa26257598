//! Fuzz target: arbitrary bytes decoded as a consumer protocol subscription
//! and assignment, then re-encoded and decoded again. The logic lives in
//! `fuzz/src/consumer_protocol.rs`, shared with the corpus replay test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/consumer_protocol.rs");

fuzz_target!(|data: &[u8]| {
    run(data);
});
