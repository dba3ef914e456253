//! Fuzz target `envelope`: the checks live in `pipewarden_fuzz::envelope`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::envelope(data));
