//! snapmail: camera events from MQTT in, resized snapshots out by mail.
//!
//! The crate is a pipeline of stages, wired in [`pipeline`]:
//!
//! - [`sources`] — MQTT topics → one normalized [`event::Event`]
//! - [`policy`] — de-duplication and per-camera rate limits
//! - [`snapshot`] — fetch, decode, resize the picture
//! - [`mail`] — compose, send, classify SMTP errors
//! - [`outbox`] — the durable queue between composing and sending
//!
//! [`ops`] serves `/healthz` and `/metrics`. [`config`] holds the user-facing configuration contract; [`secret`] keeps passwords out
//! of every log line.

pub mod addon;
mod backoff;
pub mod config;
pub mod errors;
pub mod event;
pub mod mail;
mod metrics;
pub mod mqtt;
mod ops;
mod outbox;
pub mod pipeline;
pub mod plan;
mod policy;
mod secret;
pub mod snapshot;
pub mod sources;
pub mod tls;
mod xml;
