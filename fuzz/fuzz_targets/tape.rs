//! Fuzz target `tape`: the checks live in `pipewarden_fuzz::tape`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::tape(data));
