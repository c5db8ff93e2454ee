//! `hub`: one ordered history of changes to the board, handed to any number of subscribers as
//! a snapshot followed by deltas, resumable after a reconnect, with no slow subscriber holding
//! anyone back.
//!
//! * [`Hub::publish`] numbers a [`Change`] (each number one more than the last), applies it to
//!   the current view, serializes its WebSocket message once, and appends it to a bounded ring
//!   shared by all subscribers. Its cost does not depend on the number of subscribers.
//! * [`Hub::subscribe`] returns a [`Snapshot`] and a [`Subscription`] from one lock hold, so no
//!   change falls between them; [`Subscription::recv`] delivers the following changes in
//!   batches, or a fresh snapshot when the subscriber fell behind its queue bound.
//! * [`Hub::resume`] answers a reconnecting client with exactly the changes it missed while
//!   the ring holds them, and says when it has to start over from a snapshot instead.
//! * [`Hub::watch`] gives a [`Watch`], ready whenever something was published: one task per
//!   server thread can wait on it and wake that thread's subscribers (read with
//!   [`Subscription::try_recv`]) without the publisher waking each of them across threads.
//! * [`ServerMessage`] is the wire format of `GET /ws` as serde types (with feature `ts`, also
//!   as TypeScript declarations, from which the dashboard's types are generated).
//!
//! `docs/hub.md` explains the design and its invariants.
//!
//! The hub owns the wire format of the `/ws` messages: it builds each change's JSON text once,
//! at publish time, and the server's WebSocket handler sends that text as it is. It does no IO
//! and knows nothing of WebSocket connections, HTTP or authentication (framing, heartbeats and
//! closing are the server's); it does not persist its history (a restarted server starts a new one, see [`Hub::new`]),
//! does not check changes against the store (publishers send what the store holds), and does
//! not time out subscribers that stop reading (they cost nothing but their handle). It depends
//! on no workspace crate but `domain`.

mod change;
mod hub;
mod message;
mod subscription;
mod view;
mod watch;

/// The text of a frame: shared bytes (actix-ws sends this type), so cloning copies nothing.
pub use bytestring::ByteString;
pub use change::{Change, PbxLink, SequencedChange};
pub use hub::{Hub, HubConfig, HubMetrics, OutOfSequence};
pub use message::{ServerMessage, Snapshot, render_frame};
pub use subscription::{DEFAULT_MAX_BATCH, Delivery, Resume, Subscription};
pub use watch::Watch;
