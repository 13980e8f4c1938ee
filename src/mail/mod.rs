//! Mail: compose a message for a notification, send it over SMTP, and explain failures.
//!
//! [`compose`] builds the message, [`transport`] sends it over pooled SMTP [`session`]s
//! ([`oauth`] supplies its XOAUTH2 tokens), [`wire`] speaks the SMTP dialogue with
//! pipelining and chunking over one connection ([`reply`] parses what the server says), and
//! [`classify`] turns every SMTP failure into a class (retry, pause, give up) plus a hint
//! that names the config key to fix. Delivery order and retries belong to the outbox.

pub mod classify;
pub mod compose;
pub mod digest;
pub mod oauth;
pub mod reply;
pub mod session;
pub mod transport;
pub mod wire;

pub use classify::{Class, Failure};
pub use compose::{Composer, Mail};
pub use session::{IdlePolicy, PoolStatus};
pub use transport::{Accepted, Mailer, Warmer};
