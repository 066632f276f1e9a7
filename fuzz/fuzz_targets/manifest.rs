//! libFuzzer target `manifest`: see `hakiri_fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::manifest(data));
