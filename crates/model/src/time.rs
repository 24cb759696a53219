//! Timestamps as Kubernetes writes them: RFC 3339 in UTC with whole seconds.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
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

impl std::str::FromStr for Time {
    type Err = String;

    fn from_str(text: &str) -> Result<Time, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Time::from_datetime(at.with_timezone(&Utc)))
            .map_err(|err| format!("invalid time {text:?}: {err}"))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
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
    fn rejects_text_that_is_not_a_time() {
        let err = serde_json::from_str::<Time>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("invalid time \"yesterday\""), "{err}");
    }
}
