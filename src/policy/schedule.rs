//! Named time windows (`schedules.<name>`): weekdays plus a local start and end time in
//! one time zone.
//!
//! A window is judged on the civil (wall-clock) time jiff derives from the instant and the
//! zone's rules, so DST changes need no special arithmetic: on the spring-forward night a
//! window 22:00–06:00 is simply one hour shorter, on the fall-back night one hour longer.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::{ConfigError, ScheduleConfig};

/// One parsed window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Indexed by `Weekday::to_monday_zero_offset`: the days the window *starts* on.
    days: [bool; 7],
    from: Time,
    to: Time,
}

impl Window {
    /// Parse `schedules.<name>`; the error names the key and what is allowed.
    pub fn parse(name: &str, c: &ScheduleConfig) -> Result<Window, ConfigError> {
        let key = format!("schedules.{name}");
        let time = |field: &str, v: &str| {
            parse_hhmm(v).ok_or_else(|| {
                ConfigError::invalid(format!(
                    "{key}.{field}: {v:?} is not a time of day; use HH:MM, e.g. 22:30"
                ))
            })
        };
        let mut days = [c.days.0.is_empty(); 7];
        for d in &c.days.0 {
            let set: &[Weekday] = match d.trim().to_ascii_lowercase().as_str() {
                "mon" | "monday" => &[Weekday::Monday],
                "tue" | "tuesday" => &[Weekday::Tuesday],
                "wed" | "wednesday" => &[Weekday::Wednesday],
                "thu" | "thursday" => &[Weekday::Thursday],
                "fri" | "friday" => &[Weekday::Friday],
                "sat" | "saturday" => &[Weekday::Saturday],
                "sun" | "sunday" => &[Weekday::Sunday],
                "weekdays" => &[
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Thursday,
                    Weekday::Friday,
                ],
                "weekends" => &[Weekday::Saturday, Weekday::Sunday],
                "daily" | "all" => &[
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Thursday,
                    Weekday::Friday,
                    Weekday::Saturday,
                    Weekday::Sunday,
                ],
                _ => {
                    return Err(ConfigError::invalid(format!(
                        "{key}.days: {d:?} is not a day; use mon, tue, wed, thu, fri, sat, sun, weekdays or weekends"
                    )))
                }
            };
            for w in set {
                days[w.to_monday_zero_offset() as usize] = true;
            }
        }
        Ok(Window {
            days,
            from: time("from", &c.from)?,
            to: time("to", &c.to)?,
        })
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days[day.to_monday_zero_offset() as usize]
    }

    /// Whether local wall-clock `weekday` + `time` lies inside the window.
    pub fn contains_civil(&self, weekday: Weekday, time: Time) -> bool {
        if self.from == self.to {
            // 00:00–00:00: the whole of each listed day.
            return self.starts_on(weekday);
        }
        if self.from < self.to {
            self.starts_on(weekday) && time >= self.from && time < self.to
        } else {
            // Past midnight: the evening part belongs to today, the morning part to the
            // window that started yesterday.
            (self.starts_on(weekday) && time >= self.from)
                || (self.starts_on(weekday.previous()) && time < self.to)
        }
    }
}

fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    if h == 24 && m == 0 {
        return Some(Time::MAX);
    }
    Time::new(h, m, 0, 0).ok()
}

/// Every configured window, and the zone they are read in.
#[derive(Debug, Clone)]
pub struct Schedules {
    tz: TimeZone,
    windows: BTreeMap<String, Window>,
}

impl Schedules {
    pub fn new(tz: TimeZone, windows: BTreeMap<String, Window>) -> Schedules {
        Schedules { tz, windows }
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn has(&self, name: &str) -> bool {
        self.windows.contains_key(name)
    }

    /// The first of `names` whose window contains `at`.
    pub fn first_containing<'a>(&self, names: &'a [String], at: Timestamp) -> Option<&'a str> {
        let local = at.to_zoned(self.tz.clone());
        let (day, time) = (local.weekday(), local.time());
        names
            .iter()
            .find(|n| {
                self.windows
                    .get(n.as_str())
                    .is_some_and(|w| w.contains_civil(day, time))
            })
            .map(String::as_str)
    }

    /// `21:03` (or `Mon 21:03` when not today) in the schedule's zone.
    pub fn short_time(&self, at: Timestamp, now: Timestamp) -> String {
        let t = at.to_zoned(self.tz.clone());
        let n = now.to_zoned(self.tz.clone());
        if t.date() == n.date() {
            t.strftime("%H:%M").to_string()
        } else {
            t.strftime("%a %H:%M").to_string()
        }
    }
}

/// The zone named by `timezone`, else `TZ`, else the system's: the configuration decides it
/// once for schedules and for the times mails show.
pub use crate::config::time_zone;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringList;

    fn window(days: &[&str], from: &str, to: &str) -> Window {
        Window::parse(
            "w",
            &ScheduleConfig {
                days: StringList(days.iter().map(|d| d.to_string()).collect()),
                from: from.into(),
                to: to.into(),
            },
        )
        .unwrap()
    }

    fn schedules(w: Window) -> Schedules {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        Schedules::new(tz, BTreeMap::from([("night".to_string(), w)]))
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn inside(s: &Schedules, t: &str) -> bool {
        s.first_containing(&["night".to_string()], at(t)).is_some()
    }

    #[test]
    fn window_across_midnight_belongs_to_the_start_day() {
        // Friday nights only: Fri 22:00 → Sat 06:00 (Berlin, CET = UTC+1 in November).
        let s = schedules(window(&["fri"], "22:00", "06:00"));
        assert!(!inside(&s, "2026-11-20T20:59:59Z")); // Fri 21:59:59
        assert!(inside(&s, "2026-11-20T21:00:00Z")); // Fri 22:00
        assert!(inside(&s, "2026-11-20T23:30:00Z")); // Sat 00:30
        assert!(inside(&s, "2026-11-21T04:59:59Z")); // Sat 05:59:59
        assert!(!inside(&s, "2026-11-21T05:00:00Z")); // Sat 06:00
        assert!(!inside(&s, "2026-11-21T21:30:00Z")); // Sat 22:30: not a Friday
        assert!(!inside(&s, "2026-11-19T23:30:00Z")); // Fri 00:30 belongs to Thursday's night
    }

    #[test]
    fn dst_spring_forward_and_fall_back() {
        let s = schedules(window(&["daily"], "01:30", "03:30"));
        // 2026-03-29: Berlin jumps 02:00 CET → 03:00 CEST (01:00 UTC).
        assert!(inside(&s, "2026-03-29T00:30:00Z")); // 01:30 CET
        assert!(inside(&s, "2026-03-29T00:59:59Z")); // 01:59:59 CET
        assert!(inside(&s, "2026-03-29T01:00:00Z")); // 03:00 CEST
        assert!(inside(&s, "2026-03-29T01:29:59Z")); // 03:29:59 CEST
        assert!(!inside(&s, "2026-03-29T01:30:00Z")); // 03:30 CEST: only 1 h of window
                                                      // 2026-10-25: 03:00 CEST → 02:00 CET (01:00 UTC); 02:xx happens twice.
        assert!(inside(&s, "2026-10-24T23:30:00Z")); // 01:30 CEST
        assert!(inside(&s, "2026-10-25T00:30:00Z")); // 02:30 CEST
        assert!(inside(&s, "2026-10-25T01:30:00Z")); // 02:30 CET (again)
        assert!(inside(&s, "2026-10-25T02:29:59Z")); // 03:29:59 CET
        assert!(!inside(&s, "2026-10-25T02:30:00Z")); // 03:30 CET: 3 h of window
    }

    #[test]
    fn weekdays_and_whole_days() {
        let s = schedules(window(&["weekends"], "00:00", "00:00"));
        assert!(inside(&s, "2026-11-21T12:00:00Z")); // Sat
        assert!(!inside(&s, "2026-11-23T12:00:00Z")); // Mon
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Window::parse(
            "night",
            &ScheduleConfig {
                days: StringList(vec!["funday".into()]),
                from: "22:00".into(),
                to: "6".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config: schedules.night.days"), "{e}");
        let e = Window::parse(
            "night",
            &ScheduleConfig {
                days: StringList::default(),
                from: "25:00".into(),
                to: "06:00".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config: schedules.night.from"), "{e}");
        assert!(time_zone(Some("Mars/Olympus"))
            .unwrap_err()
            .to_string()
            .starts_with("config: timezone:"));
    }
}
