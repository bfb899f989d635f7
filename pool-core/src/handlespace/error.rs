//! Why the handlespace refuses a registration or a lookup.

use crate::types::{TransportProtocol, TransportUse};

/// RFC 5354 §3.10 operation error cause codes that handlespace errors map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationErrorCause {
    /// 0x3 Invalid Values.
    InvalidValues,
    /// 0x5 Inconsistent Pooling Policy.
    InconsistentPoolingPolicy,
    /// 0x6 Lack of Resources.
    LackOfResources,
    /// 0x7 Inconsistent Transport Type.
    InconsistentTransportType,
    /// 0x8 Inconsistent Data/Control Configuration.
    InconsistentDataControlConfiguration,
    /// 0x9 Unknown Pool Handle.
    UnknownPoolHandle,
}

impl OperationErrorCause {
    /// The 16-bit cause code carried in an Operation Error parameter.
    pub fn code(self) -> u16 {
        match self {
            Self::InvalidValues => 0x3,
            Self::InconsistentPoolingPolicy => 0x5,
            Self::LackOfResources => 0x6,
            Self::InconsistentTransportType => 0x7,
            Self::InconsistentDataControlConfiguration => 0x8,
            Self::UnknownPoolHandle => 0x9,
        }
    }
}

/// A registration or lookup the handlespace refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlespaceError {
    /// The PE's policy type differs from the pool's (every PE of a pool uses one policy).
    #[error(
        "inconsistent pooling policy: pool uses type {pool:#010x}, PE asks for {element:#010x}"
    )]
    InconsistentPolicy {
        /// The pool's policy type code.
        pool: u32,
        /// The registering PE's policy type code.
        element: u32,
    },
    /// The PE's user transport protocol differs from the pool's.
    #[error("inconsistent transport type: pool uses {pool:?}, PE offers {element:?}")]
    InconsistentTransport {
        /// The pool's transport protocol.
        pool: TransportProtocol,
        /// The registering PE's transport protocol.
        element: TransportProtocol,
    },
    /// The PE's data/control use of its transport differs from the pool's.
    #[error("inconsistent data/control configuration: pool uses {pool:?}, PE offers {element:?}")]
    InconsistentDataControl {
        /// The pool's transport use.
        pool: TransportUse,
        /// The registering PE's transport use.
        element: TransportUse,
    },
    /// The registration is malformed (no user transport, a transport without address, ...).
    #[error("invalid registration: {0}")]
    InvalidRegistration(&'static str),
    /// The handlespace already holds its maximum number of pools.
    #[error("too many pools (limit {limit})")]
    TooManyPools {
        /// The configured limit.
        limit: usize,
    },
    /// The pool already holds its maximum number of PEs.
    #[error("pool is full (limit {limit} PEs)")]
    PoolFull {
        /// The configured limit.
        limit: usize,
    },
    /// The handlespace already holds its maximum number of PEs.
    #[error("too many pool elements (limit {limit})")]
    TooManyElements {
        /// The configured limit.
        limit: usize,
    },
    /// No pool with this handle exists.
    #[error("unknown pool handle")]
    UnknownPoolHandle,
}

impl HandlespaceError {
    /// The RFC 5354 operation error cause to report to the peer.
    pub fn cause(&self) -> OperationErrorCause {
        match self {
            Self::InconsistentPolicy { .. } => OperationErrorCause::InconsistentPoolingPolicy,
            Self::InconsistentTransport { .. } => OperationErrorCause::InconsistentTransportType,
            Self::InconsistentDataControl { .. } => {
                OperationErrorCause::InconsistentDataControlConfiguration
            }
            Self::InvalidRegistration(_) => OperationErrorCause::InvalidValues,
            Self::TooManyPools { .. } | Self::PoolFull { .. } | Self::TooManyElements { .. } => {
                OperationErrorCause::LackOfResources
            }
            Self::UnknownPoolHandle => OperationErrorCause::UnknownPoolHandle,
        }
    }
}
