//! Families computed at each scrape from what the node holds then — the fleet status (stages,
//! clusters, rollouts), its agent streams, raft progress and the process — and encoded as they
//! are: every label set present in the fleet now, nothing left over from an earlier scrape.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Label set of a sample.
pub(super) type Labels = Vec<(String, String)>;

/// Whether a family counts up or goes both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Only ever grows (per process).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One family and its samples.
#[derive(Debug, Clone)]
pub(super) struct Sampled {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, f64)>,
}

impl Sampled {
    /// A family with no samples yet.
    pub(super) fn new(name: &'static str, help: &'static str, kind: Kind) -> Sampled {
        Sampled {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.push((labels, value));
    }

    /// Adds a sample with owned labels.
    pub(super) fn sample_owned(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }

    /// A family of one sample without labels.
    pub(super) fn single(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        value: f64,
    ) -> Sampled {
        let mut family = Sampled::new(name, help, kind);
        family.sample(&[], value);
        family
    }
}

/// The families of the last scrape, encoded by the registry it is registered in.
#[derive(Debug, Default)]
pub(super) struct Scraped(Mutex<Vec<Sampled>>);

impl Scraped {
    /// Replaces the families.
    pub(super) fn set(&self, families: Vec<Sampled>) {
        *self.0.lock().expect("scraped families") = families;
    }
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = self.0.lock().expect("scraped families");
        for family in families.iter() {
            let kind = match family.kind {
                Kind::Counter => ConstCounter::new(0.0).metric_type(),
                Kind::Gauge => ConstGauge::new(0.0).metric_type(),
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match family.kind {
                    Kind::Counter => ConstCounter::new(*value).encode(sample)?,
                    Kind::Gauge => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}
