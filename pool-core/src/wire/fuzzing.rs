//! Fuzz bodies, shared by the cargo-fuzz targets in `pool-core/fuzz` and by
//! the proptest suite (so CI exercises them without a nightly toolchain).
//!
//! Each body decodes arbitrary bytes; whatever decodes must re-encode, and
//! the re-encoding must decode to the same value and re-encode to the same
//! bytes (the encoding of a decoded value is canonical). Any violation panics,
//! which is what a fuzzer reports.

use super::{AsapMessage, EnrpMessage};

/// Fuzz body for ASAP decoding. Returns whether the input decoded.
pub fn asap_decode(data: &[u8]) -> bool {
    let Ok(decoded) = AsapMessage::decode_reporting(data) else {
        return false;
    };
    let msg = decoded.message;
    let bytes = msg
        .to_bytes()
        .expect("a decoded ASAP message must re-encode");
    assert!(bytes.len() <= data.len(), "re-encoding grew the message");
    let again = AsapMessage::decode(&bytes).expect("a re-encoded ASAP message must decode");
    assert_eq!(again, msg, "ASAP decode∘encode is not the identity");
    assert_eq!(
        again.to_bytes().ok(),
        Some(bytes),
        "ASAP encoding is not canonical"
    );
    true
}

/// Fuzz body for ENRP decoding. Returns whether the input decoded.
pub fn enrp_decode(data: &[u8]) -> bool {
    let Ok(decoded) = EnrpMessage::decode_reporting(data) else {
        return false;
    };
    let msg = decoded.message;
    let bytes = msg
        .to_bytes()
        .expect("a decoded ENRP message must re-encode");
    assert!(bytes.len() <= data.len(), "re-encoding grew the message");
    let again = EnrpMessage::decode(&bytes).expect("a re-encoded ENRP message must decode");
    assert_eq!(again, msg, "ENRP decode∘encode is not the identity");
    assert_eq!(
        again.to_bytes().ok(),
        Some(bytes),
        "ENRP encoding is not canonical"
    );
    true
}
