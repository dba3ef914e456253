//! Fuzz target `avro`: the checks live in `pipewarden_fuzz::avro`, shared
//! with the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipewarden_fuzz::avro(data));
