//! Fuzz target: an arbitrary records buffer through the record batch reader,
//! with decompression under a small cap, touching every batch, record and
//! header field. The logic lives in `fuzz/src/record_batch_reader.rs`,
//! shared with the corpus replay test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/record_batch_reader.rs");

fuzz_target!(|data: &[u8]| {
    run(data);
});
