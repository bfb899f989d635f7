//! ENRP messages (RFC 5353 §2.2): registrar ↔ registrar.
//!
//! Header: type (8) | flags (8) | length (16) | sending server id (32) |
//! receiving server id (32, 0 when not addressed to one server), then
//! message-specific fields and parameters.

use super::error::WireError;
use super::param::{decode_list, Cursor, OperationError, PRef, PoolElement, ServerInfo};
use super::{begin_tlv, end_tlv, split_message, Ctx, Decoded, Fields, MAX_SERVERS, MAX_TABLE_PES};
use crate::types::{PoolHandle, RegistrarId};

/// ENRP message type codes (RFC 5353 §2.2).
pub mod types {
    /// ENRP_PRESENCE.
    pub const PRESENCE: u8 = 0x01;
    /// ENRP_HANDLE_TABLE_REQUEST.
    pub const HANDLE_TABLE_REQUEST: u8 = 0x02;
    /// ENRP_HANDLE_TABLE_RESPONSE.
    pub const HANDLE_TABLE_RESPONSE: u8 = 0x03;
    /// ENRP_HANDLE_UPDATE.
    pub const HANDLE_UPDATE: u8 = 0x04;
    /// ENRP_LIST_REQUEST.
    pub const LIST_REQUEST: u8 = 0x05;
    /// ENRP_LIST_RESPONSE.
    pub const LIST_RESPONSE: u8 = 0x06;
    /// ENRP_INIT_TAKEOVER.
    pub const INIT_TAKEOVER: u8 = 0x07;
    /// ENRP_INIT_TAKEOVER_ACK.
    pub const INIT_TAKEOVER_ACK: u8 = 0x08;
    /// ENRP_TAKEOVER_SERVER.
    pub const TAKEOVER_SERVER: u8 = 0x09;
    /// ENRP_ERROR.
    pub const ERROR: u8 = 0x0a;
}

/// R flag of ENRP_PRESENCE: reply required.
pub const FLAG_REPLY_REQUIRED: u8 = 0x01;
/// W flag of ENRP_HANDLE_TABLE_REQUEST: own children only.
pub const FLAG_OWN_CHILDREN_ONLY: u8 = 0x01;
/// R flag of ENRP_HANDLE_TABLE_RESPONSE and ENRP_LIST_RESPONSE: reject.
pub const FLAG_REJECT: u8 = 0x01;
/// M flag of ENRP_HANDLE_TABLE_RESPONSE: more to send.
pub const FLAG_MORE_TO_SEND: u8 = 0x02;

/// Update action of ENRP_HANDLE_UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateAction {
    /// 0x0000 ADD_PE: add or update the element.
    AddPe,
    /// 0x0001 DEL_PE: remove the element.
    DelPe,
}

/// One pool of a handle table response: its handle and elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolEntry {
    /// Pool handle.
    pub pool_handle: PoolHandle,
    /// Elements, at least one.
    pub elements: Vec<PoolElement>,
}

/// An ENRP message: the common server ids plus the type-specific body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EnrpMessage {
    /// Sending server's id.
    pub sender: RegistrarId,
    /// Receiving server's id (0 if unknown / broadcast).
    pub receiver: RegistrarId,
    /// The message proper.
    pub body: EnrpBody,
}

/// Type-specific part of an ENRP message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EnrpBody {
    /// Heartbeat with the sender's handlespace checksum.
    Presence {
        /// R flag: the receiver must answer with its own presence.
        reply_required: bool,
        /// PE checksum parameter of the sender's own PEs.
        checksum: u16,
        /// Server information of the sender (optional).
        server_info: Option<ServerInfo>,
    },
    /// Ask for a copy of the handlespace.
    HandleTableRequest {
        /// W flag: only the PEs the receiver is home registrar of.
        own_children_only: bool,
    },
    /// (Part of) the handlespace.
    HandleTableResponse {
        /// R flag: request rejected.
        reject: bool,
        /// M flag: more follows, ask again.
        more_to_send: bool,
        /// Pools with their elements (at most [`MAX_TABLE_PES`] elements total).
        pools: Vec<PoolEntry>,
    },
    /// One element added/updated or removed.
    HandleUpdate {
        /// Add or delete.
        action: UpdateAction,
        /// Pool.
        pool_handle: PoolHandle,
        /// Element.
        element: PoolElement,
    },
    /// Ask for the list of known registrars.
    ListRequest,
    /// The list of known registrars.
    ListResponse {
        /// R flag: request rejected.
        reject: bool,
        /// Known registrars (at most [`MAX_SERVERS`]).
        servers: Vec<ServerInfo>,
    },
    /// Announce the takeover of a dead registrar's PEs.
    InitTakeover {
        /// The registrar to be taken over.
        target: RegistrarId,
    },
    /// Agree to a takeover.
    InitTakeoverAck {
        /// The registrar to be taken over.
        target: RegistrarId,
    },
    /// The takeover happened.
    TakeoverServer {
        /// The registrar taken over.
        target: RegistrarId,
    },
    /// Error report.
    Error(OperationError),
}

impl EnrpMessage {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        match &self.body {
            EnrpBody::Presence { .. } => types::PRESENCE,
            EnrpBody::HandleTableRequest { .. } => types::HANDLE_TABLE_REQUEST,
            EnrpBody::HandleTableResponse { .. } => types::HANDLE_TABLE_RESPONSE,
            EnrpBody::HandleUpdate { .. } => types::HANDLE_UPDATE,
            EnrpBody::ListRequest => types::LIST_REQUEST,
            EnrpBody::ListResponse { .. } => types::LIST_RESPONSE,
            EnrpBody::InitTakeover { .. } => types::INIT_TAKEOVER,
            EnrpBody::InitTakeoverAck { .. } => types::INIT_TAKEOVER_ACK,
            EnrpBody::TakeoverServer { .. } => types::TAKEOVER_SERVER,
            EnrpBody::Error(_) => types::ERROR,
        }
    }

    fn flags(&self) -> u8 {
        match &self.body {
            EnrpBody::Presence { reply_required, .. } => flag(*reply_required, FLAG_REPLY_REQUIRED),
            EnrpBody::HandleTableRequest { own_children_only } => {
                flag(*own_children_only, FLAG_OWN_CHILDREN_ONLY)
            }
            EnrpBody::HandleTableResponse {
                reject,
                more_to_send,
                ..
            } => flag(*reject, FLAG_REJECT) | flag(*more_to_send, FLAG_MORE_TO_SEND),
            EnrpBody::ListResponse { reject, .. } => flag(*reject, FLAG_REJECT),
            _ => 0,
        }
    }

    /// Append the encoded message to `buf`. On error `buf` may hold a
    /// partial message; truncate it to its previous length if you reuse it.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let start = begin_tlv(buf, [self.type_code(), self.flags()]);
        buf.extend_from_slice(&self.sender.to_be_bytes());
        buf.extend_from_slice(&self.receiver.to_be_bytes());
        match &self.body {
            EnrpBody::Presence {
                checksum,
                server_info,
                ..
            } => {
                PRef::PeChecksum(*checksum).encode(buf)?;
                if let Some(s) = server_info {
                    PRef::ServerInfo(s).encode(buf)?;
                }
            }
            EnrpBody::HandleTableRequest { .. } | EnrpBody::ListRequest => {}
            EnrpBody::HandleTableResponse { pools, .. } => {
                let total: usize = pools.iter().map(|p| p.elements.len()).sum();
                if total > MAX_TABLE_PES {
                    return Err(WireError::TooMany {
                        what: "pool elements",
                        limit: MAX_TABLE_PES,
                    });
                }
                for pool in pools {
                    if pool.elements.is_empty() {
                        return Err(WireError::MissingParameter("pool element"));
                    }
                    PRef::PoolHandle(&pool.pool_handle).encode(buf)?;
                    for pe in &pool.elements {
                        PRef::PoolElement(pe).encode(buf)?;
                    }
                }
            }
            EnrpBody::HandleUpdate {
                action,
                pool_handle,
                element,
            } => {
                let a: u16 = match action {
                    UpdateAction::AddPe => 0,
                    UpdateAction::DelPe => 1,
                };
                buf.extend_from_slice(&a.to_be_bytes());
                buf.extend_from_slice(&[0, 0]);
                PRef::PoolHandle(pool_handle).encode(buf)?;
                PRef::PoolElement(element).encode(buf)?;
            }
            EnrpBody::ListResponse { servers, .. } => {
                if servers.len() > MAX_SERVERS {
                    return Err(WireError::TooMany {
                        what: "servers",
                        limit: MAX_SERVERS,
                    });
                }
                for s in servers {
                    PRef::ServerInfo(s).encode(buf)?;
                }
            }
            EnrpBody::InitTakeover { target }
            | EnrpBody::InitTakeoverAck { target }
            | EnrpBody::TakeoverServer { target } => buf.extend_from_slice(&target.to_be_bytes()),
            EnrpBody::Error(e) => PRef::OperationError(e).encode(buf)?,
        }
        end_tlv(buf, start)
    }

    /// Encode into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = Vec::with_capacity(128);
        self.encode(&mut buf)?;
        Ok(buf)
    }

    /// Decode one message filling `buf` exactly; skip-and-report parameters
    /// are dropped (use [`EnrpMessage::decode_reporting`] to get them).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        Self::decode_reporting(buf).map(|d| d.message)
    }

    /// Decode one message filling `buf` exactly, returning the
    /// skip-and-report parameters too.
    pub fn decode_reporting(buf: &[u8]) -> Result<Decoded<Self>, WireError> {
        let (ty, flags, body) = split_message(buf)?;
        if !(types::PRESENCE..=types::ERROR).contains(&ty) {
            return Err(WireError::UnknownMessageType(ty));
        }
        let mut f = Fields::new(body);
        let sender = f.u32()?;
        let receiver = f.u32()?;
        let mut ctx = Ctx::default();
        let body = match ty {
            types::HANDLE_TABLE_REQUEST | types::LIST_REQUEST => {
                // No parameters defined; anything but skippable unknown ones is an error.
                Cursor::new(decode_list(f.rest(), &mut ctx, 1)?).finish()?;
                if ty == types::LIST_REQUEST {
                    EnrpBody::ListRequest
                } else {
                    EnrpBody::HandleTableRequest {
                        own_children_only: flags & FLAG_OWN_CHILDREN_ONLY != 0,
                    }
                }
            }
            types::INIT_TAKEOVER | types::INIT_TAKEOVER_ACK | types::TAKEOVER_SERVER => {
                let target = f.u32()?;
                Cursor::new(decode_list(f.rest(), &mut ctx, 1)?).finish()?;
                match ty {
                    types::INIT_TAKEOVER => EnrpBody::InitTakeover { target },
                    types::INIT_TAKEOVER_ACK => EnrpBody::InitTakeoverAck { target },
                    _ => EnrpBody::TakeoverServer { target },
                }
            }
            types::HANDLE_UPDATE => {
                let action = match f.u16()? {
                    0 => UpdateAction::AddPe,
                    1 => UpdateAction::DelPe,
                    _ => return Err(WireError::InvalidValue("handle update action")),
                };
                let _reserved = f.u16()?;
                let mut c = Cursor::new(decode_list(f.rest(), &mut ctx, 1)?);
                let body = EnrpBody::HandleUpdate {
                    action,
                    pool_handle: c.pool_handle()?,
                    element: c.pool_element()?,
                };
                c.finish()?;
                body
            }
            types::PRESENCE => {
                let mut c = Cursor::new(decode_list(f.rest(), &mut ctx, 1)?);
                let checksum = c.opt_checksum().ok_or_else(|| c.missing("PE checksum"))?;
                let body = EnrpBody::Presence {
                    reply_required: flags & FLAG_REPLY_REQUIRED != 0,
                    checksum,
                    server_info: c.opt_server_info(),
                };
                c.finish()?;
                body
            }
            types::HANDLE_TABLE_RESPONSE => {
                let mut c = Cursor::new(decode_list(f.rest(), &mut ctx, 1)?);
                let mut pools = Vec::new();
                let mut total = 0usize;
                while !c.is_empty() {
                    let pool_handle = c.pool_handle()?;
                    let elements = c.pool_elements(MAX_TABLE_PES - total)?;
                    if elements.is_empty() {
                        return Err(c.missing("pool element"));
                    }
                    total += elements.len();
                    pools.push(PoolEntry {
                        pool_handle,
                        elements,
                    });
                }
                EnrpBody::HandleTableResponse {
                    reject: flags & FLAG_REJECT != 0,
                    more_to_send: flags & FLAG_MORE_TO_SEND != 0,
                    pools,
                }
            }
            types::LIST_RESPONSE => {
                let mut c = Cursor::new(decode_list(f.rest(), &mut ctx, 1)?);
                let mut servers = Vec::new();
                while let Some(s) = c.opt_server_info() {
                    if servers.len() == MAX_SERVERS {
                        return Err(WireError::TooMany {
                            what: "servers",
                            limit: MAX_SERVERS,
                        });
                    }
                    servers.push(s);
                }
                c.finish()?;
                EnrpBody::ListResponse {
                    reject: flags & FLAG_REJECT != 0,
                    servers,
                }
            }
            _ => {
                let mut c = Cursor::new(decode_list(f.rest(), &mut ctx, 1)?);
                let e = c.error()?;
                c.finish()?;
                EnrpBody::Error(e)
            }
        };
        Ok(Decoded {
            message: EnrpMessage {
                sender,
                receiver,
                body,
            },
            unrecognized: ctx.reports,
        })
    }
}

fn flag(on: bool, bit: u8) -> u8 {
    if on {
        bit
    } else {
        0
    }
}
