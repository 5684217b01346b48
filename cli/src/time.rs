//! Times from the hub (milliseconds since the Unix epoch) as people and scripts read them.

use chrono::{DateTime, Utc};

/// RFC 3339 in UTC, or `None` for 0 (never).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| DateTime::<Utc>::from_timestamp_millis(ms))
        .flatten()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `5s ago`, `3m ago`, `2h ago`, `4d ago`, or `never`.
pub(crate) fn ago(ms: i64, now: DateTime<Utc>) -> String {
    if ms <= 0 {
        return "never".to_owned();
    }
    let seconds = (now.timestamp_millis() - ms).max(0) / 1000;
    match seconds {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// A duration as the CLI takes it: flotilla.yaml's units (`250ms`, `30s`, `5m`, `1h30m`) or a
/// whole number of days (`30d`), for token lifetimes and audit windows.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d')
        && !days.is_empty()
        && days.bytes().all(|b| b.is_ascii_digit())
    {
        let days: u64 = days
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: too many days"))?;
        return days
            .checked_mul(86_400)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("invalid duration `{text}`: too many days"));
    }
    text.parse::<flotilla_core::spec::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| format!("{e}, or a number of days like `30d`"))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;

    #[test]
    fn days_and_the_spec_units_parse() {
        assert_eq!(parse_duration("30d").expect("days").as_secs(), 30 * 86_400);
        assert_eq!(
            parse_duration("1h30m").expect("spec units").as_secs(),
            5_400
        );
        assert_eq!(parse_duration("1ms").expect("milliseconds").as_millis(), 1);
        let error = parse_duration("3 weeks").expect_err("weeks are not a unit");
        assert!(error.contains("30d"), "{error}");
        assert!(parse_duration("d").is_err());
    }
}
