//! Operations: the health and metrics listener, and Home Assistant MQTT discovery.

pub(crate) mod discovery;
mod discovery_state;
pub(crate) mod http;
