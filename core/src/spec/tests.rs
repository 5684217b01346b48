use super::*;

fn parse(text: &str) -> Result<FleetSpec, SpecErrors> {
    FleetSpec::parse(text, "flotilla.yaml", &Limits::default())
}

const MINIMAL: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    track: {branch: main}
bundles:
  - name: web
    path: bundles/web
";

#[test]
fn minimal_spec_gets_defaults() {
    let spec = parse(MINIMAL).unwrap();
    let stage = &spec.stages[0];
    assert_eq!(
        stage.source,
        StageSource::Track {
            branch: "main".into()
        }
    );
    assert!(stage.cluster_selector.is_empty());
    assert_eq!(stage.rollout, RolloutPolicy::default());
    assert_eq!(stage.location.line, Some(4));
    let bundle = &spec.bundles[0];
    assert_eq!(bundle.path, "bundles/web");
    assert_eq!(bundle.drift, DriftMode::Correct);
    assert_eq!(bundle.location.line, Some(7));
}

#[test]
fn stage_needs_exactly_one_source() {
    let text = MINIMAL.replace(
        "    track: {branch: main}\n",
        "    track: {branch: main}\n    promoteFrom: dev\n",
    );
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("exactly one of `track"), "{err}");
    let text = MINIMAL.replace("    track: {branch: main}\n", "");
    assert!(parse(&text).is_err());
}

#[test]
fn promotion_cycles_and_unknown_upstreams_are_reported_together() {
    let text = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: a
    promoteFrom: b
  - name: b
    promoteFrom: a
  - name: c
    promoteFrom: qa
";
    let err = parse(text).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("promotion loops"), "{text}");
    assert!(text.contains("unknown stage `qa`"), "{text}");
    assert_eq!(err.errors.len(), 2, "{text}");
}

#[test]
fn waves_need_one_target_and_growing_percentages() {
    let text = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    track: {branch: main}
    rollout:
      waves:
        - percent: 50
        - percent: 20
        - name: both
          percent: 10
          clusterSelector: {matchLabels: {a: b}}
";
    let err = parse(text).unwrap_err();
    let lines: Vec<Option<u32>> = err.errors.iter().map(|e| e.location().line).collect();
    assert_eq!(lines, vec![Some(9), Some(10)], "{err}");
}

#[test]
fn signing_keys_are_checked() {
    let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl release@example.com";
    let keys = format!("    requireSignedBy:\n      - name: release\n        ssh: {good}\n");
    let text = MINIMAL.replace(
        "    track: {branch: main}\n",
        &format!("    track: {{branch: main}}\n{keys}"),
    );
    let spec = parse(&text).unwrap();
    assert_eq!(spec.stages[0].require_signed_by[0].name, "release");
    let bad = text.replace("AAAAC3NzaC1lZDI1NTE5", "AAAAB3NzaC1yc2EAAAAD");
    assert!(
        parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("not a `ssh-ed25519` key")
    );
    let pgp = text.replace(&format!("ssh: {good}"), "openpgp: not armored");
    assert!(
        parse(&pgp)
            .unwrap_err()
            .to_string()
            .contains("ASCII-armored")
    );
}

#[test]
fn bundle_paths_must_stay_in_the_repository() {
    let text = MINIMAL.replace("path: bundles/web", "path: ../outside");
    let err = parse(&text).unwrap_err();
    assert!(matches!(err.errors[0], SpecError::Escape { .. }), "{err}");
    assert_eq!(err.errors[0].location().line, Some(8));
    let text = MINIMAL.replace("path: bundles/web", "path: /etc");
    assert!(parse(&text).is_err());
    let text = MINIMAL.replace("path: bundles/web", "path: bundles/../bundles/./web/");
    assert_eq!(parse(&text).unwrap().bundles[0].path, "bundles/web");
}

#[test]
fn duplicate_names_and_bad_dependencies_are_errors() {
    let text = format!("{MINIMAL}  - name: web\n    path: bundles/other\n    dependsOn: [db]\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("already declared at flotilla.yaml:7"), "{err}");
    assert!(err.contains("unknown bundle `db`"), "{err}");
}

#[test]
fn dependency_cycles_are_errors_and_order_respects_dependencies() {
    let text = format!(
        "{MINIMAL}    dependsOn: [db]\n  - name: db\n    path: bundles/db\n    dependsOn: [web]\n"
    );
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("dependencies loop")
    );
    let text = format!("{MINIMAL}    dependsOn: [db]\n  - name: db\n    path: bundles/db\n");
    let spec = parse(&text).unwrap();
    let order: Vec<&str> = spec
        .bundles_in_dependency_order()
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(order, ["db", "web"]);
}

#[test]
fn unknown_fields_name_the_line_and_the_expected_fields() {
    let text = MINIMAL.replace(
        "    path: bundles/web\n",
        "    path: bundles/web\n    namespce: web\n",
    );
    let err = parse(&text).unwrap_err();
    let SpecError::Syntax { location, message } = &err.errors[0] else {
        panic!("{err}");
    };
    assert_eq!((location.line, location.column), (Some(9), Some(5)));
    assert!(message.contains("unknown field `namespce`"), "{message}");
    assert!(message.contains("namespace"), "{message}");
}

#[test]
fn stage_lookup_by_labels_reports_ambiguity() {
    let text = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: all
    track: {branch: main}
";
    let spec = parse(text).unwrap();
    let dev: Labels = [("env".to_owned(), "dev".to_owned())].into();
    assert_eq!(spec.stage_for(&dev).unwrap_err().len(), 2);
    assert_eq!(
        spec.stage_for(&Labels::new())
            .unwrap()
            .map(|s| s.name.as_str()),
        Some("all")
    );
}

#[test]
fn the_deletion_guard_is_on_by_default_and_each_check_can_be_set_or_turned_off() {
    let spec = parse(MINIMAL).unwrap();
    let guard = spec.stages[0].rollout.deletion_guard;
    assert_eq!(
        guard,
        DeletionGuard {
            enabled: true,
            max_pruned_objects: IntOrPercent::Percent(50),
            max_bundle_removals: IntOrPercent::Percent(10),
            allow_no_bundles: false,
        }
    );
    let text = MINIMAL.replace(
        "    track: {branch: main}\n",
        "    track: {branch: main}\n    rollout:\n      deletionGuard: \
         {maxPrunedObjects: 20, maxBundleRemovals: 100%, allowNoBundles: true}\n",
    );
    let guard = parse(&text).unwrap().stages[0].rollout.deletion_guard;
    assert_eq!(guard.max_pruned_objects, IntOrPercent::Count(20));
    assert_eq!(guard.max_bundle_removals, IntOrPercent::Percent(100));
    assert!(guard.allow_no_bundles && guard.enabled);
    let off = MINIMAL.replace(
        "    track: {branch: main}\n",
        "    track: {branch: main}\n    rollout:\n      deletionGuard: {enabled: false}\n",
    );
    assert!(
        !parse(&off).unwrap().stages[0]
            .rollout
            .deletion_guard
            .enabled
    );
    let typo = MINIMAL.replace(
        "    track: {branch: main}\n",
        "    track: {branch: main}\n    rollout:\n      deletionGuard: {maxPrunePercent: 50}\n",
    );
    let err = parse(&typo).unwrap_err().to_string();
    assert!(err.contains("maxPrunePercent"), "{err}");
}
