//! Fuzz target: the packet decoder (body shared with proptest in `sctp::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sctp::fuzzing::packet_decode(data);
});
