//! Random (RFC 5356 §4.3, type 0x00000003).
//!
//! Every PE is equally likely. A handle resolution for N PEs draws N distinct
//! PEs uniformly without replacement (a partial Fisher-Yates shuffle over the
//! pool's dense member list, O(N)). The policy keeps no per-PE state, so
//! selection changes nothing; the pool user draws from its list the same way.
