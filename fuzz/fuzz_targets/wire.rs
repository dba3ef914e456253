//! Fuzz target `wire`: the checks live in `pipewarden_fuzz::wire`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::wire(data));
