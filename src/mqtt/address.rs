//! Broker URLs: `mqtt://host:1883`, `mqtts://host:8883` (and `tcp://`), parsed with
//! messages that say what to write instead.

/// `mqtt://host:port` or `mqtts://host:port`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(format!(
                "{url:?} is not a broker URL; use mqtt://host:1883 or mqtts://host:8883"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(
                "put the user name and password in mqtt.username / mqtt.password, not in the URL"
                    .into(),
            );
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return Err(format!("{p:?} in {url:?} is not a port number (1-65535)")),
            },
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host name"));
        }
        Ok(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtt://127.0.0.1:1883").unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(
            BrokerAddress::parse("mqtts://broker.lan").unwrap(),
            BrokerAddress {
                host: "broker.lan".into(),
                port: 8883,
                tls: true
            }
        );
        assert!(BrokerAddress::parse("http://x")
            .unwrap_err()
            .contains("mqtt://host:1883"));
        assert!(BrokerAddress::parse("mqtt://u:p@x").is_err());
        assert!(BrokerAddress::parse("mqtt://x:abc").is_err());
    }
}
