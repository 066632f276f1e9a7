//! libFuzzer target `airbyte`: see `hakiri_fuzz::airbyte`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::airbyte(data));
