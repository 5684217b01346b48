//! `flotilla.yaml` and the cluster inventory, parsed and validated from arbitrary text: every
//! input must give a spec or errors, never a panic, a hang or unbounded memory.

#![no_main]

use flotilla_core::Limits;
use flotilla_core::inventory::parse_inventory;
use flotilla_core::spec::FleetSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    if let Ok(spec) = FleetSpec::parse(text, "flotilla.yaml", &limits) {
        // A spec that validated must answer the questions the hub asks of it.
        let _ = spec.bundles_in_dependency_order();
        for stage in &spec.stages {
            let _ = spec.stage(&stage.name);
        }
    }
    let _ = parse_inventory(text, "clusters.yaml", &limits);
});
