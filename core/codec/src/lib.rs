//! fogg-codec: MQTT 3.1, 3.1.1 and 5.0 control packets.
//!
//! Pure and strict: no I/O, no allocation beyond the decoded packet, and every
//! violation of the specification is reported with the normative rule it breaks
//! and the reason code the server should answer with.
//!
//! * [`decode`] takes bytes from the front of a buffer and yields one packet, or
//!   `Ok(None)` when more bytes are needed. The declared remaining length is
//!   checked against the caller's maximum packet size before any payload is
//!   buffered.
//! * [`encode`] appends a packet to a buffer; [`encoded_len`] tells its size
//!   without writing it (for MQTT 5 Maximum Packet Size checks).
//! * [`topic`] validates topic names and filters.

mod decode;
mod encode;
mod error;
mod properties;
mod reason;
mod spec;
pub mod topic;
mod types;

pub use decode::{decode, peek_packet_type};
pub use encode::{PublishRef, encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use properties::{AckProperties, Properties, id as property_id};
pub use reason::ReasonCode;
pub use types::*;

/// The largest remaining length a four-byte variable byte integer can carry.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
