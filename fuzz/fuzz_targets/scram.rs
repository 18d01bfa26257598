//! Fuzz target: the client side of a SCRAM exchange fed arbitrary
//! server-first and server-final messages. The logic lives in
//! `fuzz/src/scram.rs`, shared with the corpus replay test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/scram.rs");

fuzz_target!(|data: &[u8]| {
    run(data);
});
