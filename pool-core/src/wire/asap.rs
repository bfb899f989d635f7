//! ASAP messages (RFC 5352 §2.2): pool elements ↔ registrars and pool
//! users ↔ registrars / pool elements.
//!
//! Header: type (8) | flags (8) | length (16, includes the header), then
//! parameters in the order the RFC lists them.

use super::auth::RegistrationAuth;
use super::error::WireError;
use super::param::{decode_list, Cursor, OperationError, PRef, PoolElement, SelectionPolicy};
use super::{
    begin_tlv, end_tlv, split_message, Ctx, Decoded, Fields, MAX_ADDRESSES, MAX_RESOLUTION_PES,
};
use crate::types::{PeId, PoolHandle, RegistrarId, Transport};

/// ASAP message type codes (RFC 5352 §2.2).
pub mod types {
    /// ASAP_REGISTRATION.
    pub const REGISTRATION: u8 = 0x01;
    /// ASAP_DEREGISTRATION.
    pub const DEREGISTRATION: u8 = 0x02;
    /// ASAP_REGISTRATION_RESPONSE.
    pub const REGISTRATION_RESPONSE: u8 = 0x03;
    /// ASAP_DEREGISTRATION_RESPONSE.
    pub const DEREGISTRATION_RESPONSE: u8 = 0x04;
    /// ASAP_HANDLE_RESOLUTION.
    pub const HANDLE_RESOLUTION: u8 = 0x05;
    /// ASAP_HANDLE_RESOLUTION_RESPONSE.
    pub const HANDLE_RESOLUTION_RESPONSE: u8 = 0x06;
    /// ASAP_ENDPOINT_KEEP_ALIVE.
    pub const ENDPOINT_KEEP_ALIVE: u8 = 0x07;
    /// ASAP_ENDPOINT_KEEP_ALIVE_ACK.
    pub const ENDPOINT_KEEP_ALIVE_ACK: u8 = 0x08;
    /// ASAP_ENDPOINT_UNREACHABLE.
    pub const ENDPOINT_UNREACHABLE: u8 = 0x09;
    /// ASAP_SERVER_ANNOUNCE.
    pub const SERVER_ANNOUNCE: u8 = 0x0a;
    /// ASAP_COOKIE.
    pub const COOKIE: u8 = 0x0b;
    /// ASAP_COOKIE_ECHO.
    pub const COOKIE_ECHO: u8 = 0x0c;
    /// ASAP_BUSINESS_CARD.
    pub const BUSINESS_CARD: u8 = 0x0d;
    /// ASAP_ERROR.
    pub const ERROR: u8 = 0x0e;
}

/// R (reject) flag of ASAP_REGISTRATION_RESPONSE.
pub const FLAG_REJECT: u8 = 0x01;
/// H (home) flag of ASAP_ENDPOINT_KEEP_ALIVE: the sender asks to become the
/// PE's home registrar.
pub const FLAG_HOME: u8 = 0x01;
/// Low flag bit of ASAP_HANDLE_RESOLUTION_RESPONSE (see the module docs of
/// [`super`]).
pub const FLAG_ACCEPT_UPDATES: u8 = 0x01;

/// An ASAP message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsapMessage {
    /// PE → registrar: register (or re-register / update) a pool element.
    Registration {
        /// Pool to join.
        pool_handle: PoolHandle,
        /// The element.
        element: PoolElement,
        /// poolgate authentication extension (skipped by other registrars).
        auth: Option<RegistrationAuth>,
    },
    /// PE → registrar: leave the pool.
    Deregistration {
        /// Pool.
        pool_handle: PoolHandle,
        /// Element leaving.
        pe_id: PeId,
        /// poolgate authentication extension (skipped by other registrars).
        auth: Option<RegistrationAuth>,
    },
    /// Registrar → PE: answer to a registration.
    RegistrationResponse {
        /// R flag: the registration was rejected.
        reject: bool,
        /// Pool.
        pool_handle: PoolHandle,
        /// Element.
        pe_id: PeId,
        /// Why, when rejected.
        error: Option<OperationError>,
    },
    /// Registrar → PE: answer to a deregistration.
    DeregistrationResponse {
        /// Pool.
        pool_handle: PoolHandle,
        /// Element.
        pe_id: PeId,
        /// Why, on failure.
        error: Option<OperationError>,
    },
    /// PU → registrar: which elements serve this pool?
    HandleResolution {
        /// Pool.
        pool_handle: PoolHandle,
    },
    /// Registrar → PU: the elements (or an error).
    HandleResolutionResponse {
        /// Low flag bit, kept so that it round-trips; not defined by RFC 5352
        /// (see the [`super`] module docs): send `false`, ignore on receipt.
        accept_updates: bool,
        /// Pool.
        pool_handle: PoolHandle,
        /// Overall selection policy of the pool (optional).
        policy: Option<SelectionPolicy>,
        /// Selected elements (at most [`MAX_RESOLUTION_PES`]).
        elements: Vec<PoolElement>,
        /// Error (e.g. unknown pool handle).
        error: Option<OperationError>,
    },
    /// Registrar → PE: are you alive?
    EndpointKeepAlive {
        /// H flag: the sender wants to become the PE's home registrar.
        home: bool,
        /// Sending registrar.
        server_id: RegistrarId,
        /// Pool.
        pool_handle: PoolHandle,
        /// Element asked.
        pe_id: PeId,
    },
    /// PE → registrar: yes.
    EndpointKeepAliveAck {
        /// Pool.
        pool_handle: PoolHandle,
        /// Answering element.
        pe_id: PeId,
    },
    /// PU → registrar: this element did not answer.
    EndpointUnreachable {
        /// Pool.
        pool_handle: PoolHandle,
        /// Unreachable element.
        pe_id: PeId,
    },
    /// Registrar → anyone: here I am.
    ServerAnnounce {
        /// Announcing registrar.
        server_id: RegistrarId,
        /// Its transports (may be empty: use the source address).
        transports: Vec<Transport>,
    },
    /// PE → PU: a state cookie to hold.
    Cookie(Vec<u8>),
    /// PU → new PE: the last cookie, on failover.
    CookieEcho(Vec<u8>),
    /// PE or PU → peer: the pool and elements to fail over to.
    BusinessCard {
        /// Pool.
        pool_handle: PoolHandle,
        /// Elements, at least one.
        elements: Vec<PoolElement>,
    },
    /// Error report.
    Error(OperationError),
}

impl AsapMessage {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        match self {
            AsapMessage::Registration { .. } => types::REGISTRATION,
            AsapMessage::Deregistration { .. } => types::DEREGISTRATION,
            AsapMessage::RegistrationResponse { .. } => types::REGISTRATION_RESPONSE,
            AsapMessage::DeregistrationResponse { .. } => types::DEREGISTRATION_RESPONSE,
            AsapMessage::HandleResolution { .. } => types::HANDLE_RESOLUTION,
            AsapMessage::HandleResolutionResponse { .. } => types::HANDLE_RESOLUTION_RESPONSE,
            AsapMessage::EndpointKeepAlive { .. } => types::ENDPOINT_KEEP_ALIVE,
            AsapMessage::EndpointKeepAliveAck { .. } => types::ENDPOINT_KEEP_ALIVE_ACK,
            AsapMessage::EndpointUnreachable { .. } => types::ENDPOINT_UNREACHABLE,
            AsapMessage::ServerAnnounce { .. } => types::SERVER_ANNOUNCE,
            AsapMessage::Cookie(_) => types::COOKIE,
            AsapMessage::CookieEcho(_) => types::COOKIE_ECHO,
            AsapMessage::BusinessCard { .. } => types::BUSINESS_CARD,
            AsapMessage::Error(_) => types::ERROR,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            AsapMessage::RegistrationResponse { reject: true, .. } => FLAG_REJECT,
            AsapMessage::EndpointKeepAlive { home: true, .. } => FLAG_HOME,
            AsapMessage::HandleResolutionResponse {
                accept_updates: true,
                ..
            } => FLAG_ACCEPT_UPDATES,
            _ => 0,
        }
    }

    /// Append the encoded message to `buf`. On error `buf` may hold a
    /// partial message; truncate it to its previous length if you reuse it.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let start = begin_tlv(buf, [self.type_code(), self.flags()]);
        let ph = |buf: &mut Vec<u8>, h: &PoolHandle| PRef::PoolHandle(h).encode(buf);
        match self {
            AsapMessage::Registration {
                pool_handle,
                element,
                auth,
            } => {
                ph(buf, pool_handle)?;
                PRef::PoolElement(element).encode(buf)?;
                if let Some(a) = auth {
                    PRef::RegistrationAuth(a).encode(buf)?;
                }
            }
            AsapMessage::Deregistration {
                pool_handle,
                pe_id,
                auth,
            } => {
                ph(buf, pool_handle)?;
                PRef::PeId(*pe_id).encode(buf)?;
                if let Some(a) = auth {
                    PRef::RegistrationAuth(a).encode(buf)?;
                }
            }
            AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id }
            | AsapMessage::EndpointUnreachable { pool_handle, pe_id } => {
                ph(buf, pool_handle)?;
                PRef::PeId(*pe_id).encode(buf)?;
            }
            AsapMessage::RegistrationResponse {
                pool_handle,
                pe_id,
                error,
                ..
            }
            | AsapMessage::DeregistrationResponse {
                pool_handle,
                pe_id,
                error,
            } => {
                ph(buf, pool_handle)?;
                PRef::PeId(*pe_id).encode(buf)?;
                if let Some(e) = error {
                    PRef::OperationError(e).encode(buf)?;
                }
            }
            AsapMessage::HandleResolution { pool_handle } => ph(buf, pool_handle)?,
            AsapMessage::HandleResolutionResponse {
                pool_handle,
                policy,
                elements,
                error,
                ..
            } => {
                if elements.len() > MAX_RESOLUTION_PES {
                    return Err(too_many_pes());
                }
                ph(buf, pool_handle)?;
                if let Some(p) = policy {
                    PRef::Policy(p).encode(buf)?;
                }
                for pe in elements {
                    PRef::PoolElement(pe).encode(buf)?;
                }
                if let Some(e) = error {
                    PRef::OperationError(e).encode(buf)?;
                }
            }
            AsapMessage::EndpointKeepAlive {
                server_id,
                pool_handle,
                pe_id,
                ..
            } => {
                buf.extend_from_slice(&server_id.to_be_bytes());
                ph(buf, pool_handle)?;
                PRef::PeId(*pe_id).encode(buf)?;
            }
            AsapMessage::ServerAnnounce {
                server_id,
                transports,
            } => {
                if transports.len() > MAX_ADDRESSES {
                    return Err(WireError::TooMany {
                        what: "server transports",
                        limit: MAX_ADDRESSES,
                    });
                }
                buf.extend_from_slice(&server_id.to_be_bytes());
                for t in transports {
                    PRef::Transport(t).encode(buf)?;
                }
            }
            AsapMessage::Cookie(c) | AsapMessage::CookieEcho(c) => PRef::Cookie(c).encode(buf)?,
            AsapMessage::BusinessCard {
                pool_handle,
                elements,
            } => {
                if elements.is_empty() {
                    return Err(WireError::MissingParameter("pool element"));
                }
                if elements.len() > MAX_RESOLUTION_PES {
                    return Err(too_many_pes());
                }
                ph(buf, pool_handle)?;
                for pe in elements {
                    PRef::PoolElement(pe).encode(buf)?;
                }
            }
            AsapMessage::Error(e) => PRef::OperationError(e).encode(buf)?,
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
    /// are dropped (use [`AsapMessage::decode_reporting`] to get them).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        Self::decode_reporting(buf).map(|d| d.message)
    }

    /// Decode one message filling `buf` exactly, returning the
    /// skip-and-report parameters too.
    pub fn decode_reporting(buf: &[u8]) -> Result<Decoded<Self>, WireError> {
        let (ty, flags, body) = split_message(buf)?;
        let mut ctx = Ctx::default();
        // Two messages start with a fixed 32-bit server identifier.
        let (server_id, params) = match ty {
            types::ENDPOINT_KEEP_ALIVE | types::SERVER_ANNOUNCE => {
                let mut f = Fields::new(body);
                (f.u32()?, f.rest())
            }
            types::REGISTRATION..=types::ERROR => (0, body),
            other => return Err(WireError::UnknownMessageType(other)),
        };
        let mut c = Cursor::new(decode_list(params, &mut ctx, 1)?);
        let message = match ty {
            types::REGISTRATION => {
                let pool_handle = c.pool_handle()?;
                let element = c.pool_element()?;
                let auth = c.opt_auth();
                AsapMessage::Registration {
                    pool_handle,
                    element,
                    auth,
                }
            }
            types::DEREGISTRATION => AsapMessage::Deregistration {
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
                auth: c.opt_auth(),
            },
            types::REGISTRATION_RESPONSE => AsapMessage::RegistrationResponse {
                reject: flags & FLAG_REJECT != 0,
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
                error: c.opt_error(),
            },
            types::DEREGISTRATION_RESPONSE => AsapMessage::DeregistrationResponse {
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
                error: c.opt_error(),
            },
            types::HANDLE_RESOLUTION => AsapMessage::HandleResolution {
                pool_handle: c.pool_handle()?,
            },
            types::HANDLE_RESOLUTION_RESPONSE => AsapMessage::HandleResolutionResponse {
                accept_updates: flags & FLAG_ACCEPT_UPDATES != 0,
                pool_handle: c.pool_handle()?,
                policy: c.opt_policy(),
                elements: c.pool_elements(MAX_RESOLUTION_PES)?,
                error: c.opt_error(),
            },
            types::ENDPOINT_KEEP_ALIVE => AsapMessage::EndpointKeepAlive {
                home: flags & FLAG_HOME != 0,
                server_id,
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
            },
            types::ENDPOINT_KEEP_ALIVE_ACK => AsapMessage::EndpointKeepAliveAck {
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
            },
            types::ENDPOINT_UNREACHABLE => AsapMessage::EndpointUnreachable {
                pool_handle: c.pool_handle()?,
                pe_id: c.pe_id()?,
            },
            types::SERVER_ANNOUNCE => {
                let mut transports = Vec::new();
                while let Some(t) = c.opt_transport() {
                    if transports.len() == MAX_ADDRESSES {
                        return Err(WireError::TooMany {
                            what: "server transports",
                            limit: MAX_ADDRESSES,
                        });
                    }
                    transports.push(t);
                }
                AsapMessage::ServerAnnounce {
                    server_id,
                    transports,
                }
            }
            types::COOKIE => AsapMessage::Cookie(c.cookie()?),
            types::COOKIE_ECHO => AsapMessage::CookieEcho(c.cookie()?),
            types::BUSINESS_CARD => {
                let pool_handle = c.pool_handle()?;
                let elements = c.pool_elements(MAX_RESOLUTION_PES)?;
                if elements.is_empty() {
                    return Err(c.missing("pool element"));
                }
                AsapMessage::BusinessCard {
                    pool_handle,
                    elements,
                }
            }
            _ => AsapMessage::Error(c.error()?),
        };
        c.finish()?;
        Ok(Decoded {
            message,
            unrecognized: ctx.reports,
        })
    }
}

fn too_many_pes() -> WireError {
    WireError::TooMany {
        what: "pool elements",
        limit: MAX_RESOLUTION_PES,
    }
}
