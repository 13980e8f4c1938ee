//! Small value types that appear in the configuration: ports, durations, address lists.
//!
//! Each one deserializes from the forms a user writes in YAML *and* from the plain strings
//! that environment variables carry, and its error message says what is allowed.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A TCP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number (1-65535)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(Port(p)),
                    _ => Err(E::custom(format!("{v} is not a port number (1-65535)"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("{v} is not a port number (1-65535)"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{v:?} is not a port number (1-65535)"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

/// A duration written as `30s`, `10m`, `1h`, `1h 30m` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 10m or 1h")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration::secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v).map(HumanDuration::secs).map_err(|_| {
                    E::custom(format!("{v} is not a duration (use e.g. 30s, 10m, 1h)"))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                let t = v.trim();
                if let Ok(n) = t.parse::<u64>() {
                    return Ok(HumanDuration::secs(n));
                }
                humantime::parse_duration(t)
                    .map(HumanDuration)
                    .map_err(|_| {
                        E::custom(format!("{v:?} is not a duration (use e.g. 30s, 10m, 1h)"))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings written as a YAML list or as one comma-separated string
/// (`SNAPMAIL__SMTP__TO="a@x.com, b@y.com"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl Serialize for StringList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings or one comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.push(s.to_owned());
                    }
                }
                Ok(StringList(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StringList, E> {
                Ok(StringList::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserialize one of a fixed set of words (case-insensitive); the error lists them.
pub fn choice<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    options: &[(&str, T)],
    help: &str,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    let wanted = s.trim().to_ascii_lowercase();
    options
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, v)| *v)
        .ok_or_else(|| de::Error::custom(format!("{s:?} is not allowed; {help}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as DeError, StrDeserializer, U64Deserializer};
    use serde::de::IntoDeserializer;

    fn port_str(s: &str) -> Result<Port, DeError> {
        let d: StrDeserializer<DeError> = s.into_deserializer();
        Port::deserialize(d)
    }

    #[test]
    fn ports_from_strings_and_numbers() {
        assert_eq!(port_str("587").unwrap(), Port(587));
        let d: U64Deserializer<DeError> = 465u64.into_deserializer();
        assert_eq!(Port::deserialize(d).unwrap(), Port(465));
        assert_eq!(
            port_str("abc").unwrap_err().to_string(),
            "\"abc\" is not a port number (1-65535)"
        );
        assert!(port_str("0").is_err());
        assert!(port_str("70000").is_err());
    }

    #[test]
    fn durations() {
        let p = |s: &str| {
            let d: StrDeserializer<DeError> = s.into_deserializer();
            HumanDuration::deserialize(d)
        };
        assert_eq!(p("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(p("10m").unwrap().0, Duration::from_secs(600));
        assert_eq!(p("1h").unwrap().0, Duration::from_secs(3600));
        assert_eq!(p("45").unwrap().0, Duration::from_secs(45));
        assert!(p("soon")
            .unwrap_err()
            .to_string()
            .contains("is not a duration"));
    }

    #[test]
    fn lists_from_comma_strings() {
        let d: StrDeserializer<DeError> = "a@x.com, b@y.com,".into_deserializer();
        assert_eq!(
            StringList::deserialize(d).unwrap().0,
            vec!["a@x.com".to_string(), "b@y.com".to_string()]
        );
    }
}
