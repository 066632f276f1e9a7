//! libFuzzer target `protocol`: see `hakiri_fuzz::protocol`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::protocol(data));
