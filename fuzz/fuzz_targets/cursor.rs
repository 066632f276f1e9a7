//! libFuzzer target `cursor`: see `hakiri_fuzz::cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::cursor(data));
