//! Fuzz target: arbitrary bytes, cut into arbitrary reads, through
//! `FrameDecoder` and a `CorrelationState` with requests pending. The logic
//! lives in `fuzz/src/frame_decoder.rs`, shared with the corpus replay test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/frame_decoder.rs");

fuzz_target!(|data: &[u8]| {
    run(data);
});
