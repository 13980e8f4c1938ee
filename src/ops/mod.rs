//! Operations: health and Prometheus metrics over HTTP.

pub mod http;
pub mod metrics;

pub use metrics::metrics;
