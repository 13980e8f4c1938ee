//! Sources: MQTT messages in, normalized [`Event`]s out.
//!
//! [`mqtt`] owns the broker connection (connect, subscribe on every ConnAck, back off on
//! errors, never give up). Each message is handed to the [`Decoder`] whose topic filters
//! match it; decoders are pure translators from one wire format to [`Event`], so adding a
//! camera family means adding a decoder, not touching the connection.

pub mod broker;
pub mod frigate;
pub mod mqtt;

use crate::config::Config;
use crate::event::Event;

/// A message snapmail itself publishes (state, discovery, availability).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The decoders for every configured source.
pub fn decoders(config: &Config) -> Vec<Box<dyn Decoder>> {
    vec![Box::new(frigate::FrigateEvents::new(
        &config.frigate.topic_prefix,
        &config.frigate.url,
    ))]
}

/// One MQTT message as a decoder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// Set when the broker replays a stored message on subscribe.
    pub retained: bool,
}

/// A command on snapmail's own control topics (arm/disarm/snooze).
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// `None`: every camera (`<prefix>/all/...`).
    pub camera: Option<String>,
    pub action: ControlAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ControlAction {
    /// `ON` arms the camera, `OFF` disarms it (and cancels a snooze either way).
    Arm(bool),
    /// Mail nothing for this long; zero cancels a snooze.
    Snooze(std::time::Duration),
}

/// What the MQTT task hands to the policy stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Event(Box<Event>),
    Control(Control),
}

/// What a decoder made of a message.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Event(Box<Event>),
    /// A command for the policy stage.
    Control(Control),
    /// Not an event worth a decision (heartbeats, false positives, …), with the reason.
    Ignored(String),
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
