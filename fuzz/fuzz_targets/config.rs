//! Fuzz target `config`: the checks live in `pipewarden_fuzz::config`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::config(data));
