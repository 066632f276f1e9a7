//! libFuzzer target `archive`: see `hakiri_fuzz::archive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::archive(data));
