//! Sans-IO SCTP engine (RFC 9260) over UDP encapsulation (RFC 6951).
