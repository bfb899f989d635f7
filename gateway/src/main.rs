//! The `poolgate` binary.
fn main() {}
