//! See `exercise::sockaddr` (fuzz/exercise.rs), which the stable regression
//! replay in tests/tests/integration/fuzz_regressions.rs runs too.
#![no_main]

#[path = "../exercise.rs"]
#[allow(dead_code)]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::sockaddr(data));
