//! The NATS JetStream side of the service: the streams of the inbound and outbound contracts
//! (design sections 4 and 6), the CloudEvents envelope, publishing with de-duplication ids,
//! durable pull consumers and the dead-letter stream.
//!
//! # Layout
//! - [`connect`]: connect to NATS, retrying while it starts, with errors that say where.
//! - [`streams`]: the four streams and their settings, created or updated on start.
//! - [`cloudevent`]: the CloudEvents 1.0 envelope, parsed with errors naming the attribute.
//! - [`publish`]: publishing with `Nats-Msg-Id`, so a republished message is stored once.
//! - [`consumer`]: durable pull consumers with explicit ack; fetch, ack and nak.
//! - [`consume`]: the one consume loop (fetch, parse, handle, settle, back-off) that the
//!   rule worker and the notifier plug a [`consume::Handler`] into.
//! - [`dead_letter`]: the inbound boundary (unstorable text refused, CPR numbers masked,
//!   known institutions only), and poison messages to `FOLLOWUPS_DLQ`, unchanged, with the
//!   reason; a failure settled by its kind (nak, or dead letter when retrying cannot help).
//! - [`purge`]: deleting the messages that hold an erased person's data from a stream.
//! - [`notify`]: the live delivery subjects `followups.notify.<institution>.<user|team>.<id>`.

pub mod cloudevent;
pub mod connect;
pub mod consume;
pub mod consumer;
pub mod dead_letter;
pub mod notify;
pub mod publish;
pub mod purge;
pub mod streams;

pub use cloudevent::{CloudEvent, EnvelopeError, MAX_MESSAGE_BYTES};
pub use connect::{connect, ConnectError};
pub use consumer::{durable, redelivery_delay, ConsumerError};
pub use dead_letter::{
    dead_letter, parse_inbound, reject, settle_failure, DeadLetter, Failure, Rejected,
};
pub use publish::{publish_event, PublishError};
pub use purge::{holds_token, names, purge_matching, scan_matching, PurgeError};
pub use streams::{ensure_streams, StreamError, Streams};

/// The JetStream context type, re-exported so callers need not name async-nats for it.
pub type JetStream = async_nats::jetstream::Context;
