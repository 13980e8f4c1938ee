//! The integration tests, as one binary: the crate, the test support (real Mosquitto
//! brokers, the Gmail-like TLS SMTP server, HTTP servers, test pictures) and every test
//! module are compiled and linked once. Run one module with `cargo test --test integration
//! doctor`, one test by its name.

mod support;

mod addon;
mod architecture;
mod certificates;
mod chaos;
mod container_image;
mod discovery;
mod doctor;
mod e2e_frigate;
mod e2e_policy;
mod e2e_sources;
mod fixtures_mqtt;
mod hostile_input;
mod mail_view;
mod oauth;
mod ops_http;
mod outbox_faults;
mod packaging;
mod properties;
mod secrets;
mod smtp_client;
mod smtp_pipelining;
mod snapshot_fetch;
mod snapshot_image;
mod snapshot_redirects;
mod start_log;
mod support_selftest;
