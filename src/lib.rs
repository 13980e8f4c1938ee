//! snapmail library root.
