//! libFuzzer target `singer`: see `hakiri_fuzz::singer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::singer(data));
