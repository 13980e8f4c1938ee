//! MQTT: the one broker connection and the seam every source plugs into.
//!
//! [`connection`] owns the client (connect, subscribe on every ConnAck, back off on errors,
//! never give up); [`broker`] is the embedded broker used when `mqtt.url` is unset. Each
//! message is handed to the [`Decoder`] whose topic filters match it; decoders (camera
//! formats in [`crate::sources`], control and discovery topics elsewhere) are pure
//! translators, so adding a camera family means adding a decoder, not touching the
//! connection.

mod address;
pub(crate) mod broker;
pub(crate) mod connection;

pub use address::BrokerAddress;
pub use connection::{
    certificate_refused, client_options, run, MqttLinks, MqttSettings, HINT_CERTIFICATE,
};

use crate::event::{Control, Event};

/// A message snapmail itself publishes (state, discovery, availability).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// One MQTT message as a decoder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// Set when the broker replays a stored message on subscribe.
    pub retained: bool,
}

/// What a decoder made of a message.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Event(Box<Event>),
    /// A command for the policy stage.
    Control(Control),
    /// Not an event worth a decision (heartbeats, false positives, …), with the reason.
    Ignored(String),
    /// A payload this source cannot read at all (broken JSON, wrong types, not a picture):
    /// something upstream is misconfigured, so the user hears about it, with the reason.
    Malformed(String),
}

/// Translates the messages of one source kind into events.
pub trait Decoder: Send {
    /// The source kind, e.g. `frigate_events`.
    fn kind(&self) -> &'static str;
    /// MQTT topic filters to subscribe to.
    fn topics(&self) -> Vec<String>;
    fn decode(&mut self, msg: Message<'_>) -> Decoded;
}

/// Whether `topic` matches one of `filters` (MQTT `+`/`#` wildcards).
pub fn matches_any(topic: &str, filters: &[String]) -> bool {
    filters.iter().any(|f| rumqttc::matches(topic, f))
}
