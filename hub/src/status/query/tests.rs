use std::collections::BTreeMap;

use super::*;
use crate::status::{BundleStatus, Counts};

fn cluster(
    name: &str,
    stage: Option<&str>,
    online: bool,
    sync: SyncState,
    health: &str,
) -> ClusterStatus {
    ClusterStatus {
        name: name.to_owned(),
        stage: stage.map(str::to_owned),
        labels: BTreeMap::from([("region".to_owned(), name[..2].to_owned())]),
        online,
        api_reachable: Some(true),
        api_since: None,
        api_error: None,
        kube_version: None,
        last_seen: None,
        assigned_revision: None,
        render_error: None,
        bundles: vec![BundleStatus {
            name: "app".to_owned(),
            desired_revision: None,
            desired_hash: None,
            applied_revision: None,
            applied_hash: None,
            sync_state: sync,
            health: health.to_owned(),
            drifted: Vec::new(),
            added: Vec::new(),
            message: String::new(),
            updated_at: None,
        }],
        kube_system_uid: None,
        identity_conflict: None,
    }
}

fn fleet() -> FleetStatus {
    let mut clusters = Vec::new();
    for i in 0..10 {
        let stage = if i < 6 { Some("dev") } else { Some("prod") };
        clusters.push(cluster(
            &format!("eu-{i}"),
            stage,
            true,
            SyncState::Synced,
            "Healthy",
        ));
    }
    clusters.push(cluster(
        "us-failed",
        Some("prod"),
        true,
        SyncState::ApplyFailed,
        "Healthy",
    ));
    clusters.push(cluster(
        "us-offline",
        Some("prod"),
        false,
        SyncState::Unknown,
        "Unknown",
    ));
    clusters.push(cluster(
        "us-degraded",
        None,
        true,
        SyncState::Synced,
        "Degraded",
    ));
    clusters.push(cluster(
        "us-paused",
        None,
        true,
        SyncState::Synced,
        "Suspended",
    ));
    FleetStatus {
        node: 1,
        leader: 1,
        applied_index: 1,
        source: None,
        latest_revision: None,
        stages: Vec::new(),
        counts: Counts::default(),
        clusters,
        rollouts: Vec::new(),
        events: Vec::new(),
        cluster_page: None,
    }
}

fn names(status: &FleetStatus) -> Vec<&str> {
    status.clusters.iter().map(|c| c.name.as_str()).collect()
}

fn select(query: ClusterQuery) -> FleetStatus {
    fleet().view(&Scope::Everything, &query)
}

#[test]
fn problems_are_failures_unknowns_and_unhealthy_bundles_never_suspended_ones() {
    let status = select(ClusterQuery {
        problems: true,
        ..ClusterQuery::default()
    });
    assert_eq!(names(&status), ["us-failed", "us-offline", "us-degraded"]);
    let page = status.cluster_page.expect("page");
    assert_eq!((page.total, page.matched, page.next_offset), (14, 3, None));
    assert_eq!(
        status.clusters[0].problem().as_deref(),
        Some("bundle app: ApplyFailed / Healthy")
    );
    assert_eq!(
        status.clusters[1].problem().as_deref(),
        Some("agent offline")
    );
}

#[test]
fn filters_by_stage_name_and_labels_combine() {
    let prod = select(ClusterQuery {
        stage: Some("prod".into()),
        ..ClusterQuery::default()
    });
    assert_eq!(prod.clusters.len(), 6);
    let none = select(ClusterQuery {
        stage: Some("-".into()),
        ..ClusterQuery::default()
    });
    assert_eq!(names(&none), ["us-degraded", "us-paused"]);
    let prefix = select(ClusterQuery {
        stage: Some("prod".into()),
        cluster: Some("us-*".into()),
        ..ClusterQuery::default()
    });
    assert_eq!(names(&prefix), ["us-failed", "us-offline"]);
    let exact = select(ClusterQuery {
        cluster: Some("eu-3".into()),
        labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        ..ClusterQuery::default()
    });
    assert_eq!(names(&exact), ["eu-3"]);
    let other_label = select(ClusterQuery {
        cluster: Some("eu-3".into()),
        labels: BTreeMap::from([("region".to_owned(), "us".to_owned())]),
        ..ClusterQuery::default()
    });
    assert!(other_label.clusters.is_empty());
}

#[test]
fn pages_cover_every_match_once_and_say_where_the_next_starts() {
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let status = select(ClusterQuery {
            offset,
            limit: Some(4),
            ..ClusterQuery::default()
        });
        let page = status.cluster_page.expect("page");
        assert!(status.clusters.len() <= 4);
        seen.extend(status.clusters.into_iter().map(|c| c.name));
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen, names(&fleet()));
    let past = select(ClusterQuery {
        offset: 100,
        limit: Some(4),
        ..ClusterQuery::default()
    });
    assert!(past.clusters.is_empty());
    assert_eq!(past.cluster_page.expect("page").offset, 14);
}

#[test]
fn bundle_and_state_filters_and_orders() {
    let mut status = fleet();
    let mut bare = cluster("aa-bare", Some("dev"), true, SyncState::Synced, "Healthy");
    bare.bundles.clear();
    status.clusters.insert(0, bare);
    let chosen = |query: ClusterQuery| status.view(&Scope::Everything, &query);
    // With no filter, a cluster without bundles is listed too.
    let all = chosen(ClusterQuery {
        limit: Some(100),
        ..ClusterQuery::default()
    });
    assert_eq!(all.clusters.len(), 15);
    assert_eq!(all.clusters[0].name, "aa-bare");
    // A bundle: the clusters with it, each with that bundle alone, counted.
    let app = chosen(ClusterQuery {
        bundle: Some("app".into()),
        ..ClusterQuery::default()
    });
    assert_eq!(app.clusters.len(), 14);
    let page = app.cluster_page.expect("page");
    assert_eq!(page.counts.sync.get(&SyncState::ApplyFailed), Some(&1));
    assert_eq!(page.counts.health.get("Degraded"), Some(&1));
    let none = chosen(ClusterQuery {
        bundle: Some("other".into()),
        ..ClusterQuery::default()
    });
    assert!(none.clusters.is_empty());
    // A state: clusters with a bundle in it.
    let failed = chosen(ClusterQuery {
        sync: Some(SyncState::ApplyFailed),
        ..ClusterQuery::default()
    });
    assert_eq!(names(&failed), ["us-failed"]);
    let degraded = chosen(ClusterQuery {
        health: Some("Degraded".into()),
        ..ClusterQuery::default()
    });
    assert_eq!(names(&degraded), ["us-degraded"]);
    // Problems first, the rest by name after them.
    let sorted = chosen(ClusterQuery {
        sort: Sort::Problems,
        ..ClusterQuery::default()
    });
    assert_eq!(
        names(&sorted)[..4],
        ["us-failed", "us-offline", "us-degraded", "aa-bare"]
    );
}

#[test]
fn a_viewer_of_some_stages_sees_their_clusters_counts_and_no_fleet_events() {
    let mut status = fleet();
    status.counts = Counts::of(&status.clusters);
    status.events.push(crate::status::Event {
        at: crate::state::Timestamp(1),
        kind: "cluster",
        subject: "cluster/eu-0".into(),
        message: "registered".into(),
    });
    let dev = |stage: &str| stage == "dev";
    let seen = status.view(&Scope::Stages(&dev), &ClusterQuery::default());
    assert_eq!(seen.clusters.len(), 6);
    assert!(
        seen.clusters
            .iter()
            .all(|c| c.stage.as_deref() == Some("dev"))
    );
    assert_eq!(seen.counts, Counts::of(&seen.clusters));
    assert!(seen.events.is_empty());
    let everything = status.view(&Scope::Everything, &ClusterQuery::default());
    assert_eq!(
        everything, status,
        "everything, unpaged, is the status itself"
    );
}
