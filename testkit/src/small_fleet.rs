//! A small fleet for the end-to-end tests: two stages that both track `main` (so every commit
//! goes everywhere at once, whatever the rollout policy), three clusters, and one plain bundle
//! whose objects carry per-cluster values: a ConfigMap with the cluster's name, a label and a
//! variable, and a Deployment whose replicas an overlay raises in prod.

use crate::git::GitRepo;

/// `flotilla.yaml`.
pub const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    track: {branch: main}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {greeting: hello, replicas: 1}
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        variables: {replicas: 2}
";

/// The bundle's namespace.
pub const NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: app
";

/// A ConfigMap with per-cluster values.
pub const CONFIG: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  cluster: ${cluster.name}
  region: ${cluster.labels.region}
  greeting: ${greeting}
";

/// A Deployment whose replicas differ per stage.
pub const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: ${replicas}
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: nginx:1.27
";

/// The clusters: one in dev, two in prod, in two regions.
pub const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
  - name: prod-eu-1
    labels: {env: prod, region: eu}
  - name: prod-us-1
    labels: {env: prod, region: us}
";

/// A repository whose first commit holds the small fleet; returns it and that commit.
pub fn repository() -> anyhow::Result<(GitRepo, String)> {
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", SPEC)?;
    repo.write("bundles/app/namespace.yaml", NAMESPACE)?;
    repo.write("bundles/app/config.yaml", CONFIG)?;
    repo.write("bundles/app/deployment.yaml", DEPLOYMENT)?;
    let commit = repo.commit("small fleet")?;
    Ok((repo, commit))
}
