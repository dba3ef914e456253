//! Fuzz target `traceparent`: the checks live in `pipewarden_fuzz::traceparent`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::traceparent(data));
