//! Operations: the health and metrics listener, and Home Assistant MQTT discovery.

pub mod discovery;
pub mod http;
