//! Timestamps as Kubernetes writes them: RFC 3339 in UTC with whole seconds.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialised as `2026-11-22T10:04:05Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub DateTime<Utc>);

impl Time {
    /// Truncates to whole seconds, the precision the API carries.
    pub fn from_datetime(at: DateTime<Utc>) -> Time {
        Time(at.trunc_subsecs(0))
    }

    pub fn now() -> Time {
        Time::from_datetime(Utc::now())
    }

    /// This time plus `duration` (saturating at the end of time).
    pub fn plus(self, duration: std::time::Duration) -> Time {
        let delta = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Time::from_datetime(self.0.checked_add_signed(delta).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    /// This time minus `duration` (saturating at the start of time).
    pub fn minus(self, duration: std::time::Duration) -> Time {
        let delta = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Time::from_datetime(self.0.checked_sub_signed(delta).unwrap_or(DateTime::<Utc>::MIN_UTC))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`: the only shape berth writes, and the one it reads most.
const WRITTEN_LEN: usize = 20;
const WRITTEN: &[u8; WRITTEN_LEN] = b"0000-00-00T00:00:00Z";

impl Time {
    /// The text of a time in years 0 to 9999 (all but the synthetic ends of time), written
    /// digit by digit: every stored object carries several timestamps, and chrono's
    /// format strings cost a list of them a sixth of its time.
    fn written(&self) -> Option<[u8; WRITTEN_LEN]> {
        let (date, time) = (self.0.date_naive(), self.0.time());
        let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
        let mut out = *WRITTEN;
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut rest = value;
            for idx in (at..at + digits).rev() {
                out[idx] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        };
        put(0, year, 4);
        put(5, date.month(), 2);
        put(8, date.day(), 2);
        put(11, time.hour(), 2);
        put(14, time.minute(), 2);
        put(17, time.second(), 2);
        Some(out)
    }

    /// Reads exactly the shape [`Time::written`] writes, without chrono's general parser.
    fn read_written(text: &str) -> Option<Time> {
        let bytes = text.as_bytes();
        let fits = bytes.len() == WRITTEN_LEN
            && bytes.iter().zip(WRITTEN).all(|(byte, shape)| if *shape == b'0' { byte.is_ascii_digit() } else { byte == shape });
        if !fits {
            return None;
        }
        let num = |from: usize, to: usize| bytes[from..to].iter().fold(0, |acc, digit| acc * 10 + u32::from(digit - b'0'));
        let date = NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)).ok()?, num(5, 7), num(8, 10))?;
        Some(Time(date.and_hms_opt(num(11, 13), num(14, 16), num(17, 19))?.and_utc()))
    }
}

impl std::str::FromStr for Time {
    type Err = String;

    fn from_str(text: &str) -> Result<Time, String> {
        if let Some(time) = Time::read_written(text) {
            return Ok(time);
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| Time::from_datetime(at.with_timezone(&Utc)))
            .map_err(|err| format!("invalid time {text:?}: {err}"))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.written() {
            Some(text) => f.write_str(std::str::from_utf8(&text).expect("digits and separators are ASCII")),
            None => write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%SZ")),
        }
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.written() {
            Some(text) => serializer.serialize_str(std::str::from_utf8(&text).expect("digits and separators are ASCII")),
            None => serializer.collect_str(self),
        }
    }
}

impl schemars::JsonSchema for Time {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Time".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Time, E> {
                text.parse().map_err(E::custom)
            }
        }
        // Read in place: no string is allocated for a timestamp.
        deserializer.deserialize_str(Text)
    }
}

/// A point in time to the microsecond, as Kubernetes' `MicroTime` writes it
/// (`2026-11-22T10:04:05.123456Z`): audit events carry these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroTime(pub DateTime<Utc>);

impl MicroTime {
    pub fn now() -> MicroTime {
        MicroTime(Utc::now().trunc_subsecs(6))
    }
}

impl fmt::Display for MicroTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for MicroTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MicroTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MicroTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| MicroTime(at.with_timezone(&Utc).trunc_subsecs(6)))
            .map_err(|err| serde::de::Error::custom(format!("invalid time {text:?}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times_keep_six_digits() {
        let parsed: MicroTime = serde_json::from_str("\"2026-11-22T11:04:05.1234567+01:00\"").unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), "\"2026-11-22T10:04:05.123456Z\"");
        let whole: MicroTime = serde_json::from_str("\"2026-11-22T10:04:05Z\"").unwrap();
        assert_eq!(whole.to_string(), "2026-11-22T10:04:05.000000Z");
    }

    #[test]
    fn round_trips_whole_seconds_in_utc() {
        let parsed: Time = serde_json::from_str("\"2026-11-22T11:04:05.123+01:00\"").unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), "\"2026-11-22T10:04:05Z\"");
    }

    #[test]
    fn the_written_shape_reads_and_writes_as_chrono_does() {
        for text in ["2026-11-22T10:04:05Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-29T12:00:00Z"] {
            let fast: Time = text.parse().unwrap();
            let general = Time::from_datetime(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc));
            assert_eq!(fast, general, "{text}");
            assert_eq!(fast.to_string(), text);
            assert_eq!(serde_json::to_string(&fast).unwrap(), format!("\"{text}\""));
        }
        // Out of the written shape's range: chrono's format, not four digits.
        assert_eq!(Time(DateTime::<Utc>::MAX_UTC).to_string(), DateTime::<Utc>::MAX_UTC.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        for wrong in ["2026-02-30T10:04:05Z", "2026-11-22T24:04:05Z", "2026-11-22T10:04Z", "+026-11-22T10:04:05Z"] {
            assert!(wrong.parse::<Time>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn rejects_text_that_is_not_a_time() {
        let err = serde_json::from_str::<Time>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("invalid time \"yesterday\""), "{err}");
    }
}
