//! snapmail: camera events from MQTT in, resized snapshots out by mail.
//!
//! The crate is a pipeline of stages, started from one [`plan::Plan`] and wired in
//! [`pipeline`]:
//!
//! - [`mqtt`] — the broker connection and the decoder seam; [`sources`] — camera formats →
//!   one normalized [`event::Event`]
//! - `policy` — filters, schedules, dedup, per-camera rate limits, digests
//! - [`snapshot`] — fetch, decode, resize the picture
//! - [`mail`] — compose, send, classify SMTP errors
//! - `outbox` — the durable queue between composing and sending
//!
//! [`config`] is the user-facing configuration contract. `ops` serves `/healthz`, `/metrics`
//! and Home Assistant discovery. `ARCHITECTURE.md` maps the rest.

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
pub mod secret;
pub mod snapshot;
pub mod sources;
mod state_file;
pub mod text;
pub mod tls;
mod xml;
