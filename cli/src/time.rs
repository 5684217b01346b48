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
