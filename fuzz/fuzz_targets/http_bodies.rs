#![no_main]
gpt_fuzz::cap_allocations!();
libfuzzer_sys::fuzz_target!(|data: &[u8]| gpt_fuzz::http_bodies(data));
