//! Support code for integration tests and benchmarks.
