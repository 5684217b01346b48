//! Two transcripts of one scenario compared field by field, and each difference matched
//! against the accepted ones.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::Transcript;

/// A difference the corpus accepts: where, and why it does not matter to Flotilla.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// A scenario name, or a prefix ending in `*` (`*` alone: every scenario).
    pub scenario: String,
    /// A JSON pointer into a step's record (`/body/metadata/labels`, `/status`, `/` for
    /// all of it); a `*` segment matches any one segment. A difference at or below it is
    /// accepted.
    pub path: String,
    /// Only this step (0-based), when given.
    #[serde(default)]
    pub step: Option<usize>,
    /// Why the difference is accepted.
    pub why: String,
}

impl Accepted {
    /// Reads `accepted.yaml`.
    pub fn load(file: &Path) -> anyhow::Result<Vec<Accepted>> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }

    fn covers(&self, difference: &Difference) -> bool {
        let scenario = match self.scenario.strip_suffix('*') {
            Some(prefix) => difference.scenario.starts_with(prefix),
            None => difference.scenario == self.scenario,
        };
        let step = self.step.is_none_or(|step| Some(step) == difference.step);
        let mut wanted = self.path.trim_end_matches('/').split('/').skip(1);
        let mut found = difference.path.split('/').skip(1);
        let path = loop {
            match (wanted.next(), found.next()) {
                (None, _) => break true,
                (Some(_), None) => break false,
                (Some(w), Some(f)) if w == "*" || w == f => {}
                _ => break false,
            }
        };
        scenario && step && path
    }
}

/// One place where the simulator's answer differs from the real server's.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The scenario.
    pub scenario: String,
    /// The step (0-based), or `None` when the scenario itself could not run on one side.
    pub step: Option<usize>,
    /// JSON pointer into the step's record.
    pub path: String,
    /// The simulator's value (`<absent>` when it has none).
    pub sim: String,
    /// The real server's value.
    pub real: String,
    /// The accepted entry's reason, when one covers it.
    pub accepted: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = self.step.map(|s| s.to_string()).unwrap_or("-".into());
        write!(
            f,
            "{} step {step} {}:\n    sim:  {}\n    real: {}",
            self.scenario, self.path, self.sim, self.real
        )
    }
}

/// How one scenario came out.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub scenario: String,
    /// Its corpus file.
    pub area: String,
    /// Every difference, accepted or not.
    pub differences: Vec<Difference>,
}

impl Outcome {
    /// No difference at all.
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differences no accepted entry covers.
    pub fn unaccepted(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| d.accepted.is_none())
    }
}

/// Compares one scenario's transcripts and marks the differences `accepted` covers.
pub fn compare(area: &str, sim: &Transcript, real: &Transcript, accepted: &[Accepted]) -> Outcome {
    let mut differences = Vec::new();
    if sim.broken.is_some() || real.broken.is_some() {
        differences.push(Difference {
            scenario: sim.scenario.clone(),
            step: None,
            path: "/broken".into(),
            sim: sim.broken.clone().unwrap_or("ran".into()),
            real: real.broken.clone().unwrap_or("ran".into()),
            accepted: None,
        });
    }
    let steps = sim.steps.len().max(real.steps.len());
    for step in 0..steps {
        let mut found = Vec::new();
        let absent = Value::Null;
        diff(
            "",
            sim.steps.get(step).unwrap_or(&absent),
            real.steps.get(step).unwrap_or(&absent),
            &mut found,
        );
        for (path, sim_value, real_value) in found {
            differences.push(Difference {
                scenario: sim.scenario.clone(),
                step: Some(step),
                path,
                sim: sim_value,
                real: real_value,
                accepted: None,
            });
        }
    }
    // A scenario that could not run to its end is never accepted: its steps went unseen.
    for difference in differences.iter_mut().filter(|d| d.step.is_some()) {
        difference.accepted = accepted
            .iter()
            .find(|a| a.covers(difference))
            .map(|a| a.why.clone());
    }
    Outcome {
        scenario: sim.scenario.clone(),
        area: area.to_owned(),
        differences,
    }
}

/// Collects `(pointer, sim, real)` for every leaf where `sim` and `real` differ.
fn diff(path: &str, sim: &Value, real: &Value, found: &mut Vec<(String, String, String)>) {
    match (sim, real) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(&child, x, y, found),
                    (x, y) => found.push((child, show(x), show(y))),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let child = format!("{path}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff(&child, x, y, found),
                    (x, y) => found.push((child, show(x), show(y))),
                }
            }
        }
        (a, b) if a != b => found.push((path.to_owned(), a.to_string(), b.to_string())),
        _ => {}
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or("<absent>".into(), Value::to_string)
}
