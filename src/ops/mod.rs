//! Operations: the health and metrics listener, and Home Assistant MQTT discovery.

pub(crate) mod discovery;
pub(crate) mod http;
