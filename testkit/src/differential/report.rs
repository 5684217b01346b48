//! The corpus's report: scenarios, identical, fixed, accepted, in Markdown.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Outcome;

/// A difference the corpus found and the simulator no longer has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    /// What the simulator did wrong, and what it does now.
    pub what: String,
    /// The scenarios that showed it (and now pass).
    pub scenarios: Vec<String>,
}

impl Fix {
    /// Reads `fixed.yaml`.
    pub fn load(file: &Path) -> anyhow::Result<Vec<Fix>> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }
}

/// The outcomes of one run of the corpus, with the fixes they prove.
pub struct Report<'a> {
    /// One per scenario, in corpus order.
    pub outcomes: &'a [Outcome],
    /// The simulator's fixes.
    pub fixes: &'a [Fix],
}

impl Report<'_> {
    /// Fails when a fix names a scenario the corpus lacks or one that still differs.
    pub fn check_fixes(&self) -> anyhow::Result<()> {
        for fix in self.fixes {
            for name in &fix.scenarios {
                let Some(outcome) = self.outcomes.iter().find(|o| &o.scenario == name) else {
                    bail!("fixed.yaml names scenario {name}, which the corpus lacks");
                };
                if outcome.unaccepted().next().is_some() {
                    bail!("fixed.yaml names scenario {name}, which still differs");
                }
            }
        }
        Ok(())
    }

    /// Each accepted reason in use, with the scenario steps it covers.
    pub fn accepted(&self) -> BTreeMap<&str, Vec<String>> {
        let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for outcome in self.outcomes {
            for d in &outcome.differences {
                if let Some(why) = &d.accepted {
                    let step = d.step.map_or("-".into(), |s| s.to_string());
                    let place = format!("{} (step {step})", d.scenario);
                    let places = reasons.entry(why).or_default();
                    if !places.contains(&place) {
                        places.push(place);
                    }
                }
            }
        }
        reasons
    }

    /// Scenarios whose transcripts are equal.
    pub fn identical(&self) -> usize {
        self.outcomes.iter().filter(|o| o.identical()).count()
    }

    /// The report in Markdown.
    pub fn markdown(&self, command: &str) -> String {
        let mut out = String::new();
        let total = self.outcomes.len();
        let identical = self.identical();
        let accepted_only = self
            .outcomes
            .iter()
            .filter(|o| !o.identical() && o.unaccepted().next().is_none())
            .count();
        let failing = total - identical - accepted_only;
        let _ = writeln!(
            out,
            "# The simulator against a real API server\n\n\
             Written by `{command}`; do not edit by hand.\n\n\
             | scenarios | identical | with accepted differences only | differing | simulator fixes | accepted differences |\n\
             |---|---|---|---|---|---|\n\
             | {total} | {identical} | {accepted_only} | {failing} | {} | {} |\n",
            self.fixes.len(),
            self.accepted().len()
        );
        let mut areas: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for outcome in self.outcomes {
            let area = areas.entry(&outcome.area).or_default();
            area.0 += 1;
            area.1 += usize::from(outcome.identical());
        }
        out.push_str("## Scenarios by area\n\n| area | scenarios | identical |\n|---|---|---|\n");
        for (area, (n, same)) in &areas {
            let _ = writeln!(out, "| {area} | {n} | {same} |");
        }
        out.push_str("\n## Fixed in the simulator\n\n");
        for fix in self.fixes {
            let _ = writeln!(out, "- {} ({})", fix.what, fix.scenarios.join(", "));
        }
        out.push_str("\n## Accepted differences\n\n");
        for (why, places) in &self.accepted() {
            let _ = writeln!(out, "- {why}\n  Seen in: {}.", places.join(", "));
        }
        if failing > 0 {
            out.push_str("\n## Differing\n\n```\n");
            for d in self.outcomes.iter().flat_map(|o| o.unaccepted()) {
                let _ = writeln!(out, "{d}");
            }
            out.push_str("```\n");
        }
        out
    }
}
