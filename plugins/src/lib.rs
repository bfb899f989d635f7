//! Session-state plugins per legacy protocol.
