//! From the document as written to the validated model, collecting every problem.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::{Location, Spanned};

use super::document::{
    AllowDocument, BundleDocument, DeletionGuardDocument, FleetDocument, HelmDocument,
    HelmValuesDocument, OverlayDocument, RolloutDocument, SigningKeyDocument, StageDocument,
    WaveDocument,
};
use super::quantity::VariableValue;
use super::{
    API_VERSION, Allow, Bundle, DeletionGuard, DriftMode, FLEET_KIND, FleetSpec, HelmChart,
    HelmValues, IntOrPercent, Overlay, RemoteChart, RolloutPolicy, SigningKey, SigningKeyMaterial,
    SpecError, SpecErrors, Stage, StageSource, Wave, WaveTarget,
};
use crate::labels::validate_dns1123_label;
use crate::location::SourceLocation;
use crate::selector::LabelSelector;

mod fields;

pub(crate) use fields::validate_exact_version as exact_version;
pub(crate) use fields::{validate_chart_name as chart_name, validate_chart_repo as chart_repo};

use fields::{
    PathProblem, normalize_path, validate_branch, validate_chart_name, validate_chart_repo,
    validate_exact_version, validate_openpgp_key, validate_release_name, validate_ssh_key,
    validate_variable_name,
};

/// Every value of the guard is valid as parsed (a percentage is at most 100%, a count may be
/// 0: hold every deletion); absent ones take the defaults.
fn deletion_guard(guard: DeletionGuardDocument) -> DeletionGuard {
    let defaults = DeletionGuard::default();
    DeletionGuard {
        enabled: guard.enabled.unwrap_or(defaults.enabled),
        max_pruned_objects: guard
            .max_pruned_objects
            .unwrap_or(defaults.max_pruned_objects),
        max_bundle_removals: guard
            .max_bundle_removals
            .unwrap_or(defaults.max_bundle_removals),
        allow_no_bundles: guard.allow_no_bundles.unwrap_or(defaults.allow_no_bundles),
    }
}

pub(super) fn fleet(document: FleetDocument, file: &str) -> Result<FleetSpec, SpecErrors> {
    let mut checker = Checker {
        file,
        errors: Vec::new(),
    };
    checker.header(&document);
    if document.stages.is_empty() {
        checker.errors.push(SpecError::Invalid {
            location: SourceLocation::file(file),
            field: "stages".to_owned(),
            message: "declare at least one stage, e.g. one that tracks branch `main`".to_owned(),
        });
    }
    let stages: Vec<Stage> = document
        .stages
        .into_iter()
        .enumerate()
        .map(|(index, stage)| checker.stage(index, stage))
        .collect();
    checker.stage_graph(&stages);
    let bundles: Vec<Bundle> = document
        .bundles
        .into_iter()
        .enumerate()
        .map(|(index, bundle)| checker.bundle(index, bundle))
        .collect();
    checker.bundle_graph(&bundles);
    if checker.errors.is_empty() {
        Ok(FleetSpec {
            name: document.metadata.and_then(|m| m.name),
            stages,
            bundles,
        })
    } else {
        checker.errors.sort_by_key(|e| e.location().line);
        Err(SpecErrors {
            errors: checker.errors,
        })
    }
}

struct Checker<'a> {
    file: &'a str,
    errors: Vec<SpecError>,
}

impl Checker<'_> {
    fn at(&self, location: Location) -> SourceLocation {
        SourceLocation::from_yaml(self.file, location)
    }

    fn invalid(
        &mut self,
        location: Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(SpecError::Invalid {
            location: self.at(location),
            field: field.into(),
            message: message.into(),
        });
    }

    fn header(&mut self, document: &FleetDocument) {
        if document.api_version.value != API_VERSION {
            self.invalid(
                document.api_version.referenced,
                "apiVersion",
                format!(
                    "`{}` is not supported; use `{API_VERSION}`",
                    document.api_version.value
                ),
            );
        }
        if document.kind.value != FLEET_KIND {
            self.invalid(
                document.kind.referenced,
                "kind",
                format!(
                    "`{}` is not a fleet; use `{FLEET_KIND}`",
                    document.kind.value
                ),
            );
        }
    }

    fn name(&mut self, name: &Spanned<String>, field: &str) {
        if let Err(why) = validate_dns1123_label(&name.value) {
            self.invalid(name.referenced, field, format!("invalid name: {why}"));
        }
    }

    fn selector(&mut self, selector: Option<Spanned<LabelSelector>>, field: &str) -> LabelSelector {
        let Some(selector) = selector else {
            return LabelSelector::everything();
        };
        for problem in selector.value.validate() {
            self.invalid(selector.referenced, field, problem);
        }
        selector.value
    }

    fn stage(&mut self, index: usize, stage: Spanned<StageDocument>) -> Stage {
        let location = self.at(stage.referenced);
        let stage_location = stage.referenced;
        let stage = stage.value;
        let field = format!("stages[{index}]");
        self.name(&stage.name, &format!("{field}.name"));
        let cluster_selector =
            self.selector(stage.cluster_selector, &format!("{field}.clusterSelector"));
        let source = match (stage.track, stage.promote_from) {
            (Some(track), None) => {
                let branch = track.value.branch;
                if let Err(why) = validate_branch(&branch.value) {
                    self.invalid(branch.referenced, format!("{field}.track.branch"), why);
                }
                StageSource::Track {
                    branch: branch.value,
                }
            }
            (None, Some(upstream)) => StageSource::PromoteFrom {
                stage: upstream.value,
            },
            (Some(_), Some(_)) | (None, None) => {
                self.invalid(
                    stage_location,
                    &field,
                    format!(
                        "stage `{}` needs exactly one of `track: {{branch: NAME}}` and \
                         `promoteFrom: STAGE`",
                        stage.name.value
                    ),
                );
                StageSource::Track {
                    branch: String::new(),
                }
            }
        };
        let rollout = self.rollout(stage.rollout.unwrap_or_default(), &field);
        let require_signed_by = self.signing_keys(stage.require_signed_by, &field);
        Stage {
            name: stage.name.value,
            cluster_selector,
            source,
            rollout,
            require_signed_by,
            allow_empty: stage.allow_empty,
            allow: self.allow(stage.allow, &format!("{field}.allow")),
            location,
        }
    }

    fn rollout(&mut self, rollout: RolloutDocument, stage_field: &str) -> RolloutPolicy {
        let defaults = RolloutPolicy::default();
        let field = format!("{stage_field}.rollout");
        let waves = self.waves(rollout.waves, &field);
        let max_unavailable = match rollout.max_unavailable {
            Some(value) => {
                if matches!(
                    value.value,
                    IntOrPercent::Count(0) | IntOrPercent::Percent(0)
                ) {
                    self.invalid(
                        value.referenced,
                        format!("{field}.maxUnavailable"),
                        "must allow at least one cluster, or no rollout could progress",
                    );
                }
                value.value
            }
            None => defaults.max_unavailable,
        };
        let health_timeout = match rollout.health_timeout {
            Some(value) => {
                if value.value.as_std().is_zero() {
                    self.invalid(
                        value.referenced,
                        format!("{field}.healthTimeout"),
                        "must be longer than zero, e.g. `5m`",
                    );
                }
                value.value
            }
            None => defaults.health_timeout,
        };
        RolloutPolicy {
            waves,
            max_unavailable,
            health_timeout,
            soak: rollout.soak.unwrap_or(defaults.soak),
            approval: rollout.approval.unwrap_or(defaults.approval),
            failure_action: rollout.failure_action.unwrap_or(defaults.failure_action),
            supersede: rollout.supersede.unwrap_or(defaults.supersede),
            deletion_guard: deletion_guard(rollout.deletion_guard.unwrap_or_default()),
        }
    }

    fn waves(&mut self, waves: Vec<Spanned<WaveDocument>>, rollout_field: &str) -> Vec<Wave> {
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        let mut last_percent = 0;
        let mut result = Vec::with_capacity(waves.len());
        for (index, wave) in waves.into_iter().enumerate() {
            let field = format!("{rollout_field}.waves[{index}]");
            let at = wave.referenced;
            let wave = wave.value;
            let name = match &wave.name {
                Some(name) => {
                    self.name(name, &format!("{field}.name"));
                    name.value.clone()
                }
                None => format!("wave-{}", index + 1),
            };
            if let Some(first) = names.insert(name.clone(), at.line()) {
                self.invalid(
                    at,
                    &field,
                    format!("wave name `{name}` is already used on line {first}"),
                );
            }
            let target = match (wave.cluster_selector, wave.percent) {
                (Some(selector), None) => WaveTarget::Selector(
                    self.selector(Some(selector), &format!("{field}.clusterSelector")),
                ),
                (None, Some(percent)) => {
                    if !(1..=100).contains(&percent.value) {
                        self.invalid(
                            percent.referenced,
                            format!("{field}.percent"),
                            "must be between 1 and 100",
                        );
                    } else if percent.value <= last_percent {
                        self.invalid(
                            percent.referenced,
                            format!("{field}.percent"),
                            format!(
                                "percentages are cumulative and must grow from wave to wave; \
                                 {} follows {last_percent}",
                                percent.value
                            ),
                        );
                    }
                    last_percent = last_percent.max(percent.value);
                    WaveTarget::Percent(percent.value)
                }
                _ => {
                    self.invalid(
                        at,
                        &field,
                        "a wave needs exactly one of `clusterSelector` and `percent`",
                    );
                    WaveTarget::Percent(100)
                }
            };
            result.push(Wave {
                name,
                target,
                soak: wave.soak,
            });
        }
        result
    }

    fn signing_keys(
        &mut self,
        keys: Vec<Spanned<SigningKeyDocument>>,
        stage_field: &str,
    ) -> Vec<SigningKey> {
        let mut names = BTreeSet::new();
        let mut result = Vec::with_capacity(keys.len());
        for (index, key) in keys.into_iter().enumerate() {
            let field = format!("{stage_field}.requireSignedBy[{index}]");
            let at = key.referenced;
            let key = key.value;
            if !names.insert(key.name.value.clone()) {
                self.invalid(
                    key.name.referenced,
                    format!("{field}.name"),
                    format!("key name `{}` is used twice", key.name.value),
                );
            }
            let material = match (key.ssh, key.openpgp) {
                (Some(ssh), None) => {
                    if let Err(why) = validate_ssh_key(&ssh.value) {
                        self.invalid(ssh.referenced, format!("{field}.ssh"), why);
                    }
                    SigningKeyMaterial::Ssh(ssh.value.trim().to_owned())
                }
                (None, Some(pgp)) => {
                    if let Err(why) = validate_openpgp_key(&pgp.value) {
                        self.invalid(pgp.referenced, format!("{field}.openpgp"), why);
                    }
                    SigningKeyMaterial::OpenPgp(pgp.value)
                }
                _ => {
                    self.invalid(at, &field, "a key needs exactly one of `ssh` and `openpgp`");
                    SigningKeyMaterial::Ssh(String::new())
                }
            };
            result.push(SigningKey {
                name: key.name.value,
                key: material,
            });
        }
        result
    }

    /// Names are unique; `promoteFrom` names another, existing stage and never loops.
    fn stage_graph(&mut self, stages: &[Stage]) {
        let mut seen: BTreeMap<&str, &SourceLocation> = BTreeMap::new();
        for stage in stages {
            if let Some(first) = seen.insert(&stage.name, &stage.location) {
                let message = format!("stage `{}` is already declared at {first}", stage.name);
                self.errors.push(SpecError::Invalid {
                    location: stage.location.clone(),
                    field: "stages".to_owned(),
                    message,
                });
            }
        }
        let declared: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        let upstream_of = |name: &str| {
            stages
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| match &s.source {
                    StageSource::PromoteFrom { stage } => Some(stage.as_str()),
                    StageSource::Track { .. } => None,
                })
        };
        let mut reported_cycles = BTreeSet::new();
        for stage in stages {
            let StageSource::PromoteFrom { stage: upstream } = &stage.source else {
                continue;
            };
            if !declared.contains(&upstream.as_str()) {
                self.errors.push(SpecError::Invalid {
                    location: stage.location.clone(),
                    field: format!("stage `{}`.promoteFrom", stage.name),
                    message: format!(
                        "unknown stage `{upstream}`; declared stages: {}",
                        declared.join(", ")
                    ),
                });
                continue;
            }
            let mut path = vec![stage.name.as_str()];
            let mut current = upstream.as_str();
            while let Some(next) = upstream_of(current) {
                if path.contains(&current) {
                    break;
                }
                path.push(current);
                current = next;
            }
            if path.contains(&current) {
                let mut members = path.clone();
                members.sort_unstable();
                if reported_cycles.insert(members) {
                    self.errors.push(SpecError::Invalid {
                        location: stage.location.clone(),
                        field: format!("stage `{}`.promoteFrom", stage.name),
                        message: format!(
                            "promotion loops: {} -> {current}; one stage of the chain must \
                             `track` a branch",
                            path.join(" -> ")
                        ),
                    });
                }
            }
        }
    }

    fn bundle(&mut self, index: usize, bundle: Spanned<BundleDocument>) -> Bundle {
        let location = self.at(bundle.referenced);
        let bundle = bundle.value;
        let field = format!("bundles[{index}]");
        self.name(&bundle.name, &format!("{field}.name"));
        let (path, path_at) = match (&bundle.path, &bundle.helm) {
            (Some(path), helm) => {
                if helm.is_some() {
                    self.invalid(
                        path.referenced,
                        format!("{field}.path"),
                        "a bundle has either `path` (manifests or a kustomization) or `helm` (a \
                         chart), not both; a chart's directory is `helm.chart`",
                    );
                }
                (
                    self.bundle_dir(path, &format!("{field}.path")),
                    path.referenced,
                )
            }
            (None, Some(helm)) if helm.value.repo.is_some() => {
                // A remote chart has no directory in the repository.
                (String::new(), helm.value.chart.referenced)
            }
            (None, Some(helm)) => {
                let chart = &helm.value.chart;
                (
                    self.bundle_dir(chart, &format!("{field}.helm.chart")),
                    chart.referenced,
                )
            }
            (None, None) => {
                self.invalid(
                    bundle.name.referenced,
                    field.clone(),
                    "a bundle needs `path` (a directory of manifests or a kustomization) or \
                     `helm` (a chart)",
                );
                (String::new(), bundle.name.referenced)
            }
        };
        let helm = bundle
            .helm
            .map(|helm| self.helm(helm.value, &bundle.name.value, &field));
        let cluster_selector =
            self.selector(bundle.cluster_selector, &format!("{field}.clusterSelector"));
        if let Some(namespace) = &bundle.namespace {
            self.name(namespace, &format!("{field}.namespace"));
        }
        let variables = self.variables(bundle.variables, &format!("{field}.variables"));
        let overlays = self.overlays(bundle.overlays, &path, &field, helm.is_some());
        Bundle {
            name: bundle.name.value,
            path,
            cluster_selector,
            namespace: bundle.namespace.map(|n| n.value),
            variables,
            overlays,
            drift: bundle.drift.unwrap_or(DriftMode::Correct),
            depends_on: bundle.depends_on.iter().map(|d| d.value.clone()).collect(),
            allow: self.allow(bundle.allow, &format!("{field}.allow")),
            path_location: self.at(path_at),
            helm,
            location,
        }
    }

    /// A bundle's directory (of manifests, a kustomization or a chart), normalized.
    fn bundle_dir(&mut self, path: &Spanned<String>, field: &str) -> String {
        match normalize_path("", &path.value) {
            Ok(normalized) if normalized.is_empty() => {
                self.invalid(
                    path.referenced,
                    field,
                    "a bundle cannot be the repository root; put its files in a directory",
                );
                normalized
            }
            Ok(normalized) => normalized,
            Err(why) => {
                self.path_error(path.referenced, field, &path.value, why);
                String::new()
            }
        }
    }

    fn helm(&mut self, helm: HelmDocument, bundle: &str, bundle_field: &str) -> HelmChart {
        let field = format!("{bundle_field}.helm");
        let remote = helm.repo.as_ref().map(|repo| {
            if let Err(why) = validate_chart_repo(&repo.value) {
                self.invalid(repo.referenced, format!("{field}.repo"), why);
            }
            if let Err(why) = validate_chart_name(&helm.chart.value) {
                self.invalid(helm.chart.referenced, format!("{field}.chart"), why);
            }
            match &helm.version {
                None => self.invalid(
                    repo.referenced,
                    format!("{field}.version"),
                    "a chart from a repository needs its exact `version` (a revision renders \
                     the same chart whenever and wherever it is rendered)",
                ),
                Some(version) => {
                    if let Err(why) = validate_exact_version(&version.value) {
                        self.invalid(version.referenced, format!("{field}.version"), why);
                    }
                }
            }
            RemoteChart {
                repo: repo.value.trim_end_matches('/').to_owned(),
                name: helm.chart.value.clone(),
            }
        });
        if let Some(version) = &helm.version
            && version.value.trim().is_empty()
        {
            self.invalid(
                version.referenced,
                format!("{field}.version"),
                "must not be empty",
            );
        }
        let release_name = match &helm.release_name {
            Some(name) => {
                if let Err(why) = validate_release_name(&name.value) {
                    self.invalid(name.referenced, format!("{field}.releaseName"), why);
                }
                name.value.clone()
            }
            None => bundle.to_owned(),
        };
        HelmChart {
            remote,
            version: helm.version.map(|v| v.value),
            release_name,
            values: self.helm_values(
                HelmValuesDocument {
                    values: helm.values,
                    values_files: helm.values_files,
                },
                &field,
            ),
        }
    }

    fn helm_values(&mut self, values: HelmValuesDocument, field: &str) -> HelmValues {
        let mut files = Vec::with_capacity(values.values_files.len());
        for (index, file) in values.values_files.iter().enumerate() {
            let file_field = format!("{field}.valuesFiles[{index}]");
            match normalize_path("", &file.value) {
                Ok(path) => files.push((path, self.at(file.referenced))),
                Err(why) => self.path_error(file.referenced, &file_field, &file.value, why),
            }
        }
        let inline = values.values.and_then(|values| {
            if values.value.is_object() {
                Some((values.value, self.at(values.referenced)))
            } else {
                self.invalid(
                    values.referenced,
                    format!("{field}.values"),
                    "must be a mapping of value names to values",
                );
                None
            }
        });
        HelmValues { files, inline }
    }

    fn allow(&mut self, allow: Option<AllowDocument>, field: &str) -> Allow {
        let Some(allow) = allow else {
            return Allow::default();
        };
        if let Some(namespaces) = &allow.namespaces {
            for (index, namespace) in namespaces.iter().enumerate() {
                if namespace.value != "*" {
                    self.name(namespace, &format!("{field}.namespaces[{index}]"));
                }
            }
        }
        if let Some(kinds) = &allow.kinds {
            for (index, kind) in kinds.iter().enumerate() {
                let (group, name) = kind.value.rsplit_once('/').unwrap_or(("", &kind.value));
                let valid_name = name == "*"
                    || (name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && name.chars().all(|c| c.is_ascii_alphanumeric()));
                let valid_group = group.is_empty()
                    || group.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                    });
                if !valid_name
                    || !valid_group
                    || (kind.value != "*" && name == "*" && group.is_empty())
                {
                    self.invalid(
                        kind.referenced,
                        format!("{field}.kinds[{index}]"),
                        format!(
                            "`{}` is not a kind: write `group/Kind` (`apps/Deployment`), `Kind` for the core group (`ConfigMap`), `group/*` or `*`",
                            kind.value
                        ),
                    );
                }
            }
        }
        Allow {
            namespaces: allow
                .namespaces
                .map(|list| list.into_iter().map(|n| n.value).collect()),
            kinds: allow
                .kinds
                .map(|list| list.into_iter().map(|k| k.value).collect()),
            cluster_scoped: allow.cluster_scoped,
        }
    }

    fn path_error(&mut self, at: Location, field: &str, path: &str, why: PathProblem) {
        match why {
            PathProblem::Escapes => self.errors.push(SpecError::Escape {
                location: self.at(at),
                path: path.to_owned(),
            }),
            PathProblem::Malformed(message) => self.invalid(at, field, message),
        }
    }

    fn variables(
        &mut self,
        variables: BTreeMap<String, Spanned<VariableValue>>,
        field: &str,
    ) -> BTreeMap<String, String> {
        variables
            .into_iter()
            .map(|(name, value)| {
                if let Err(why) = validate_variable_name(&name) {
                    self.invalid(value.referenced, format!("{field}.{name}"), why);
                }
                (name, value.value.0)
            })
            .collect()
    }

    fn overlays(
        &mut self,
        overlays: Vec<Spanned<OverlayDocument>>,
        bundle_path: &str,
        bundle_field: &str,
        chart: bool,
    ) -> Vec<Overlay> {
        let mut names = BTreeSet::new();
        let mut result = Vec::with_capacity(overlays.len());
        for (index, overlay) in overlays.into_iter().enumerate() {
            let field = format!("{bundle_field}.overlays[{index}]");
            let location = self.at(overlay.referenced);
            let overlay = overlay.value;
            if overlay.name.value.is_empty() {
                self.invalid(
                    overlay.name.referenced,
                    format!("{field}.name"),
                    "must not be empty",
                );
            }
            if !names.insert(overlay.name.value.clone()) {
                self.invalid(
                    overlay.name.referenced,
                    format!("{field}.name"),
                    format!(
                        "overlay `{}` is declared twice in this bundle",
                        overlay.name.value
                    ),
                );
            }
            let cluster_selector = self.selector(
                Some(overlay.cluster_selector),
                &format!("{field}.clusterSelector"),
            );
            let path =
                overlay
                    .path
                    .and_then(|path| match normalize_path(bundle_path, &path.value) {
                        Ok(normalized) => Some(normalized),
                        Err(why) => {
                            self.path_error(
                                path.referenced,
                                &format!("{field}.path"),
                                &path.value,
                                why,
                            );
                            None
                        }
                    });
            if chart && path.is_some() {
                self.invalid(
                    overlay.name.referenced,
                    format!("{field}.path"),
                    "a chart bundle's overlay adds values, not manifests: use `helm.values` or \
                     `helm.valuesFiles`",
                );
            }
            let helm = match overlay.helm {
                Some(_) if !chart => {
                    self.invalid(
                        overlay.name.referenced,
                        format!("{field}.helm"),
                        "only a chart bundle (one with `helm`) takes chart values; use `variables`",
                    );
                    HelmValues::default()
                }
                Some(values) => self.helm_values(values, &format!("{field}.helm")),
                None => HelmValues::default(),
            };
            let variables = self.variables(overlay.variables, &format!("{field}.variables"));
            result.push(Overlay {
                name: overlay.name.value,
                cluster_selector,
                path,
                variables,
                helm,
                location,
            });
        }
        result
    }

    /// Names are unique; `dependsOn` names other, existing bundles and never loops.
    fn bundle_graph(&mut self, bundles: &[Bundle]) {
        let mut seen: BTreeMap<&str, &SourceLocation> = BTreeMap::new();
        for bundle in bundles {
            if let Some(first) = seen.insert(&bundle.name, &bundle.location) {
                let message = format!("bundle `{}` is already declared at {first}", bundle.name);
                self.errors.push(SpecError::Invalid {
                    location: bundle.location.clone(),
                    field: "bundles".to_owned(),
                    message,
                });
            }
        }
        let mut dangling = false;
        for bundle in bundles {
            for dependency in &bundle.depends_on {
                let problem = if dependency == &bundle.name {
                    Some("a bundle cannot depend on itself".to_owned())
                } else if !seen.contains_key(dependency.as_str()) {
                    Some(format!("unknown bundle `{dependency}`"))
                } else {
                    None
                };
                if let Some(message) = problem {
                    dangling = true;
                    self.errors.push(SpecError::Invalid {
                        location: bundle.location.clone(),
                        field: format!("bundle `{}`.dependsOn", bundle.name),
                        message,
                    });
                }
            }
        }
        let spec = FleetSpec {
            name: None,
            stages: Vec::new(),
            bundles: bundles.to_vec(),
        };
        let ordered = spec.bundles_in_dependency_order();
        if ordered.len() < bundles.len() && !dangling {
            let stuck: Vec<&str> = bundles
                .iter()
                .filter(|b| !ordered.iter().any(|o| o.name == b.name))
                .map(|b| b.name.as_str())
                .collect();
            if let Some(first) = bundles.iter().find(|b| stuck.contains(&b.name.as_str())) {
                self.errors.push(SpecError::Invalid {
                    location: first.location.clone(),
                    field: format!("bundle `{}`.dependsOn", first.name),
                    message: format!("dependencies loop among bundles {}", stuck.join(", ")),
                });
            }
        }
    }
}
