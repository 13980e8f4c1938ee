//! Operations: health and Prometheus metrics over HTTP, Home Assistant MQTT discovery.

pub mod discovery;
pub mod http;
pub mod metrics;

pub use metrics::metrics;
