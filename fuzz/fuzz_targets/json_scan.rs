//! Fuzz target `json_scan`: the checks live in `pipewarden_fuzz::json_scan`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::json_scan(data));
