//! Fuzz ENRP decoding; the body lives in `pool_core::wire::fuzzing` so the
//! proptest suite runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pool_core::wire::fuzzing::enrp_decode(data);
});
