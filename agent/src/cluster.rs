//! The API calls the engine makes on objects: dry-run, server-side apply, get, delete, and
//! waiting for CRDs to be established. Each call is retried on transient failures; calls on
//! many objects run with bounded concurrency.

use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::Request;
use serde_json::Value;

use crate::catalog::Kind;
use crate::object::{FIELD_MANAGER, ObjectRef};
use crate::plan::PlannedObject;
use crate::retry::{ApiError, RetryPolicy, retrying};

/// A failed call on one object.
pub type ObjectFailure = (ObjectRef, ApiError);

/// API calls on objects.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    policy: RetryPolicy,
    concurrency: usize,
}

impl Cluster {
    /// Calls through `client`, at most `concurrency` at a time within one batch.
    pub fn new(client: Client, policy: RetryPolicy, concurrency: usize) -> Cluster {
        Cluster {
            client,
            policy,
            concurrency: concurrency.max(1),
        }
    }

    /// The retry policy calls use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) if kind.namespaced => {
                Api::namespaced_with(self.client.clone(), namespace, &kind.resource)
            }
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// Server-side applies each object, for real or as a dry run, returning what the API
    /// server answered for each object that succeeded and the failures.
    pub async fn apply(
        &self,
        objects: &[&PlannedObject],
        dry_run: bool,
    ) -> (Vec<(ObjectRef, Value)>, Vec<ObjectFailure>) {
        // The futures are built before the stream so that its type holds no closure: a
        // closure over borrowed objects makes the task's future not `Send` for all lifetimes.
        let calls: Vec<_> = objects
            .iter()
            .map(|object| async move {
                self.apply_one(object, dry_run)
                    .await
                    .map(|answer| (object.id.clone(), answer))
                    .map_err(|error| (object.id.clone(), error))
            })
            .collect();
        let results: Vec<Result<(ObjectRef, Value), ObjectFailure>> = stream::iter(calls)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut applied = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for result in results {
            match result {
                Ok(answer) => applied.push(answer),
                Err(failure) => failed.push(failure),
            }
        }
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        (applied, failed)
    }

    /// Server-side applies one object.
    pub async fn apply_one(
        &self,
        object: &PlannedObject,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let api = self.api(&object.kind, object.id.namespace.as_deref());
        let mut params = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        params.dry_run = dry_run;
        let patch = Patch::Apply(&object.body);
        // The answer is read straight into a `Value`: the engine needs nothing typed from it.
        let request = || async {
            let mut request = Request::new(api.resource_url())
                .patch(&object.id.name, &params, &patch)
                .map_err(kube::Error::BuildRequest)?;
            request.extensions_mut().insert("patch");
            self.client.request::<Value>(request).await
        };
        retrying(&self.policy, request).await
    }

    /// The live object, or `None` when it does not exist.
    pub async fn get(&self, kind: &Kind, id: &ObjectRef) -> Result<Option<Value>, ApiError> {
        let api = self.api(kind, id.namespace.as_deref());
        let live = retrying(&self.policy, || api.get_opt(&id.name)).await?;
        live.map(|o| serde_json::to_value(o).map_err(|e| ApiError::Unexpected(e.to_string())))
            .transpose()
    }

    /// Deletes an object if it is still the one with `uid`; absent counts as deleted.
    pub async fn delete(
        &self,
        kind: &Kind,
        id: &ObjectRef,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let api = self.api(kind, id.namespace.as_deref());
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match retrying(&self.policy, || api.delete(&id.name, &params)).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Up to `limit` objects of a kind in a namespace.
    pub async fn list(
        &self,
        kind: &Kind,
        namespace: &str,
        limit: u32,
    ) -> Result<Vec<Value>, ApiError> {
        let api = self.api(kind, Some(namespace));
        let params = ListParams::default().limit(limit);
        let list = retrying(&self.policy, || api.list(&params)).await?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| ApiError::Unexpected(e.to_string())))
            .collect()
    }

    /// Waits until every CRD is `Established`, or reports those that are not by `timeout`.
    pub async fn wait_established(
        &self,
        crds: &[&PlannedObject],
        timeout: Duration,
    ) -> Result<(), Vec<ObjectFailure>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: Vec<&PlannedObject> = crds.to_vec();
        let mut last: Vec<ObjectFailure> = Vec::new();
        loop {
            last.clear();
            let mut still = Vec::new();
            for crd in pending {
                match self.get(&crd.kind, &crd.id).await {
                    Ok(Some(live)) if established(&live) => {}
                    Ok(_) => {
                        still.push(crd);
                        last.push((crd.id.clone(), not_established(timeout)));
                    }
                    Err(error) if error.is_transient() => {
                        still.push(crd);
                        last.push((crd.id.clone(), error));
                    }
                    Err(error) => return Err(vec![(crd.id.clone(), error)]),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn not_established(timeout: Duration) -> ApiError {
    ApiError::Unavailable {
        detail: format!(
            "the CustomResourceDefinition was not Established within {:.0}s",
            timeout.as_secs_f64()
        ),
        attempts: 1,
    }
}
