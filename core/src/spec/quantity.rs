//! Scalar types of `flotilla.yaml`: durations, counts-or-percentages and variable values.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as Go and Kubernetes do: `30s`, `5m`, `1h30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// The standard library duration.
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid duration `{text}`: expected a number and a unit, like `30s`, `5m`, `1h30m` or `250ms`"
            )
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        if rest == "0" {
            return Ok(Self::default());
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let amount: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_millis: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            let millis = amount.checked_mul(unit_millis).ok_or_else(bad)?;
            total = total
                .checked_add(std::time::Duration::from_millis(millis))
                .ok_or_else(bad)?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest form with `h`, `m`, `s` and `ms` parts, e.g. `1h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h))+$|^0$",
            "description": "A duration such as `30s`, `5m`, `1h30m` or `250ms`.",
        })
    }
}

/// A count (`2`) or a percentage (`"25%"`), as Kubernetes' `maxUnavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    /// An absolute number of clusters.
    Count(u32),
    /// A percentage of the clusters concerned, 0 to 100.
    Percent(u32),
}

impl IntOrPercent {
    /// The number this stands for out of `total`, rounded up and at least 1 (so a rollout
    /// always makes progress), at most `total` unless `total` is 0.
    pub fn resolve(self, total: usize) -> usize {
        let wanted = match self {
            IntOrPercent::Count(count) => count as usize,
            IntOrPercent::Percent(percent) => (total * percent as usize).div_ceil(100),
        };
        wanted.clamp(1, total.max(1))
    }

    /// Whether `part` of `whole` is more than this allows; a percentage is exact (no rounding),
    /// so `50%` lets 1 of 2 go and holds 2 of 3 (the deletion guard's objects).
    pub fn exceeded_by(self, part: u64, whole: u64) -> bool {
        match self {
            IntOrPercent::Count(count) => part > u64::from(count),
            IntOrPercent::Percent(percent) => part * 100 > u64::from(percent.min(100)) * whole,
        }
    }

    /// The most of `whole` this allows: a percentage rounded down to at least 1 (the deletion
    /// guard's clusters: one cluster losing a bundle is an everyday change, many at once is
    /// what the guard is for).
    pub fn allowance(self, whole: u64) -> u64 {
        match self {
            IntOrPercent::Count(count) => u64::from(count),
            IntOrPercent::Percent(percent) => (whole * u64::from(percent.min(100)) / 100).max(1),
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Count(count) => write!(f, "{count}"),
            IntOrPercent::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Count(count) => serializer.serialize_u32(*count),
            IntOrPercent::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntOrPercentVisitor;
        impl Visitor<'_> for IntOrPercentVisitor {
            type Value = IntOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count like `1` or a percentage like `25%`")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<IntOrPercent, E> {
                u32::try_from(value)
                    .map(IntOrPercent::Count)
                    .map_err(|_| E::custom(format!("count {value} is too large")))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<IntOrPercent, E> {
                u64::try_from(value)
                    .map_err(|_| E::custom(format!("count {value} must not be negative")))
                    .and_then(|value| self.visit_u64(value))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<IntOrPercent, E> {
                let number = text.strip_suffix('%').ok_or_else(|| {
                    E::custom(format!(
                        "`{text}`: expected a count like `1` or a percentage like `25%`"
                    ))
                })?;
                let percent: u32 = number.trim().parse().map_err(|_| {
                    E::custom(format!("`{text}`: expected a whole percentage like `25%`"))
                })?;
                if percent > 100 {
                    return Err(E::custom(format!("`{text}`: a percentage is at most 100%")));
                }
                Ok(IntOrPercent::Percent(percent))
            }
        }
        deserializer.deserialize_any(IntOrPercentVisitor)
    }
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "IntOrPercent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A count like `1` or a percentage like `\"25%\"`.",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]{1,3}%$"},
            ],
        })
    }
}

/// A variable's value: any YAML scalar, kept as the text it substitutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VariableValue(pub(crate) String);

impl<'de> Deserialize<'de> for VariableValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = VariableValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<VariableValue, E> {
                Ok(VariableValue(value.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<VariableValue, E> {
                Ok(VariableValue(value.to_string()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<VariableValue, E> {
                Ok(VariableValue(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<VariableValue, E> {
                Ok(VariableValue(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<VariableValue, E> {
                Ok(VariableValue(value.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl JsonSchema for VariableValue {
    fn schema_name() -> Cow<'static, str> {
        "VariableValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A variable's value; numbers and booleans substitute as written.",
            "type": ["string", "number", "integer", "boolean"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_style_and_print_shortest() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("0", 0),
        ];
        for (text, millis) in cases {
            let duration: Duration = text.parse().unwrap();
            assert_eq!(duration.0.as_millis(), millis, "{text}");
        }
        assert_eq!("90s".parse::<Duration>().unwrap().to_string(), "1m30s");
        for bad in ["", "5", "m5", "5 m", "5d", "-5s", "1.5h"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn int_or_percent_resolves_rounding_up_and_at_least_one() {
        assert_eq!(IntOrPercent::Percent(25).resolve(10), 3);
        assert_eq!(IntOrPercent::Percent(0).resolve(10), 1);
        assert_eq!(IntOrPercent::Percent(100).resolve(7), 7);
        assert_eq!(IntOrPercent::Count(5).resolve(3), 3);
        assert_eq!(IntOrPercent::Count(2).resolve(0), 1);
    }

    #[test]
    fn int_or_percent_as_a_deletion_limit_is_exact_and_allows_at_least_one_cluster() {
        let half = IntOrPercent::Percent(50);
        assert!(!half.exceeded_by(1, 2));
        assert!(half.exceeded_by(2, 3));
        assert!(IntOrPercent::Count(3).exceeded_by(4, 100));
        assert!(!IntOrPercent::Count(3).exceeded_by(3, 3));
        assert!(
            !IntOrPercent::Percent(150).exceeded_by(3, 3),
            "at most 100%"
        );
        assert_eq!(IntOrPercent::Percent(10).allowance(5), 1);
        assert_eq!(IntOrPercent::Percent(10).allowance(40), 4);
        assert_eq!(IntOrPercent::Count(2).allowance(40), 2);
    }
}
