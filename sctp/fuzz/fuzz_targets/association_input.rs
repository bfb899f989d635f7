//! Fuzz target: arbitrary packets into an established association (body shared with
//! proptest in `sctp::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sctp::fuzzing::association_input(data);
});
