//! Mail: compose a message for a notification, send it over SMTP, and explain failures.
//!
//! [`stage`] is the pipeline stage: it composes each notification ([`compose`]) or digest
//! ([`digest`]) for its camera's recipients ([`settings`]) and hands it to the outbox.
//! [`transport`] sends over pooled SMTP [`session`]s ([`oauth`] supplies its XOAUTH2
//! tokens), [`wire`] speaks the SMTP dialogue with pipelining and chunking over one
//! connection ([`reply`] parses what the server says), and [`classify`] turns every SMTP
//! failure into a class (retry, pause, give up) plus a hint that names the config key to
//! fix. Delivery order and retries belong to the outbox.

pub mod classify;
mod compose;
mod digest;
pub mod oauth;
mod reply;
mod session;
mod settings;
pub(crate) mod stage;
pub(crate) mod transport;
mod wire;

pub use classify::{Class, Failure};
pub use compose::{Composer, Mail};
pub use session::{IdlePolicy, PoolStatus};
pub use settings::Settings;
pub use transport::{Accepted, Mailer, Warmer};
