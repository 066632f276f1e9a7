//! libFuzzer target `json_schema`: see `hakiri_fuzz::json_schema`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hakiri_fuzz::json_schema(data));
