//! Watches: a stream of events from the cluster's bounded history, with bookmarks,
//! selectors, timeouts, streaming lists (`sendInitialEvents`) and `410 Gone` for a
//! resourceVersion that was compacted away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Fault;
use crate::cluster::{Cluster, ClusterState, EventKind};
use crate::objects::{Filter, Target};
use crate::pointer::At;
use crate::render::{Served, event_line};
use crate::status::ApiError;
use crate::table::{IncludeObject, Rendering, metadata_of, table};

/// What a watch request asked for.
#[derive(Clone, Debug)]
pub(crate) struct WatchParams {
    /// `resourceVersion`: empty or `0` to start with the current state.
    pub(crate) resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub(crate) bookmarks: bool,
    /// `timeoutSeconds`.
    pub(crate) timeout: Duration,
    /// `sendInitialEvents`.
    pub(crate) send_initial_events: bool,
    /// How objects render.
    pub(crate) rendering: Rendering,
    /// Table rows' objects.
    pub(crate) include: IncludeObject,
    /// Interval between bookmarks.
    pub(crate) bookmark_interval: Duration,
}

enum Wake {
    Timer,
    Changed(bool),
    /// The fault changed or the cluster was removed: the loop looks again.
    Recheck(bool),
    Shutdown,
}

struct Watcher {
    cluster: Arc<Cluster>,
    target: Target,
    filter: Filter,
    params: WatchParams,
    changes: watch::Receiver<u64>,
    fault: watch::Receiver<Option<Fault>>,
    removal: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    last_rv: u64,
    epoch: u64,
    queue: VecDeque<Bytes>,
    deadline: Instant,
    next_bookmark: Instant,
    done: bool,
}

/// Why a watch stream was cut instead of ended: its connection goes down unanswered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cut {
    /// The cluster became unreachable.
    #[error("virtual cluster became unreachable")]
    Unreachable,
    /// The cluster was removed.
    #[error("virtual cluster was removed")]
    Removed,
}

/// Starts a watch: its first events are computed now, under the cluster's lock.
pub(crate) fn start(
    cluster: Arc<Cluster>,
    target: Target,
    filter: Filter,
    params: WatchParams,
    shutdown: watch::Receiver<bool>,
) -> Result<impl Stream<Item = Result<Bytes, Cut>> + Send + 'static, ApiError> {
    let state = cluster.read();
    let changes = cluster.subscribe();
    let fault = cluster.fault_changes();
    let removal = cluster.removal();
    let now = Instant::now();
    let mut w = Watcher {
        cluster: cluster.clone(),
        target,
        filter,
        params,
        changes,
        fault,
        removal,
        shutdown,
        last_rv: state.rv(),
        epoch: state.epoch(),
        queue: VecDeque::new(),
        deadline: now,
        next_bookmark: now,
        done: false,
    };
    w.deadline = now + w.params.timeout;
    w.next_bookmark = now + w.params.bookmark_interval;
    let rv = w.params.resource_version.clone().unwrap_or_default();
    let initial = w.params.send_initial_events || rv.is_empty() || rv == "0";
    if initial {
        w.initial_state(&state);
    } else {
        let from: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if from < state.floor() {
            w.gone(from, state.rv());
        } else {
            w.last_rv = from.min(state.rv());
            w.collect(&state);
        }
    }
    drop(state);
    Ok(futures::stream::unfold(w, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

impl Watcher {
    fn render(&self, obj: &Value) -> Value {
        let api_version = self.target.rt.api_version(&self.target.version);
        match self.params.rendering {
            Rendering::Full => {
                let mut o = obj.clone();
                o["apiVersion"] = json!(api_version);
                o
            }
            Rendering::Metadata => metadata_of(obj),
            Rendering::Table => table(&self.target.rt, &[obj], None, self.params.include),
        }
    }

    fn push(&mut self, kind: &str, obj: &Value) {
        let rendered = self.render(obj);
        let served = Served {
            obj: &rendered,
            api_version: rendered
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
            omit_type: false,
        };
        self.queue.push_back(Bytes::from(event_line(kind, &served)));
    }

    fn initial_state(&mut self, state: &ClusterState) {
        let namespace = if self.target.rt.namespaced {
            self.target.namespace.clone()
        } else {
            None
        };
        let objects: Vec<Arc<Value>> = state
            .list(&self.target.rt.key(), namespace.as_deref())
            .filter(|(_, o)| self.filter.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        for o in objects {
            self.push("ADDED", &o);
        }
        self.last_rv = state.rv();
        if self.params.send_initial_events && self.params.bookmarks {
            let bm = self.bookmark_object(true);
            let served = Served {
                obj: &bm,
                api_version: bm.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                omit_type: false,
            };
            self.queue
                .push_back(Bytes::from(event_line("BOOKMARK", &served)));
        }
    }

    fn bookmark_object(&self, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({
            "kind": self.target.rt.kind,
            "apiVersion": self.target.rt.api_version(&self.target.version),
            "metadata": meta,
        })
    }

    fn gone(&mut self, requested: u64, current: u64) {
        let status =
            ApiError::expired(format!("too old resource version: {requested} ({current})"))
                .to_status();
        let served = Served {
            obj: &status,
            api_version: "v1",
            omit_type: false,
        };
        self.queue
            .push_back(Bytes::from(event_line("ERROR", &served)));
        self.done = true;
    }

    /// Queues the events after `last_rv` that this watch sees.
    fn collect(&mut self, state: &ClusterState) {
        if state.epoch() != self.epoch {
            self.gone(self.last_rv, state.rv());
            return;
        }
        let Some(events) = state.events_after(self.last_rv) else {
            self.gone(self.last_rv, state.rv());
            return;
        };
        let key = self.target.rt.key();
        let namespace = match (&self.target.namespace, self.target.rt.namespaced) {
            (Some(ns), true) => Some(ns.clone()),
            _ => None,
        };
        for e in events {
            if *e.type_key != *key || namespace.as_deref().is_some_and(|ns| ns != &*e.namespace) {
                continue;
            }
            let kind = if self.filter.is_empty() {
                Some(match e.kind {
                    EventKind::Added => "ADDED",
                    EventKind::Modified => "MODIFIED",
                    EventKind::Deleted => "DELETED",
                })
            } else {
                let parse = |b: &Bytes| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
                let now_matches = self.filter.matches_json(&e.object);
                let before = e.previous.as_ref().map(|p| self.filter.matches_json(p));
                match e.kind {
                    EventKind::Added => now_matches.then_some("ADDED"),
                    EventKind::Modified => match (before.unwrap_or(false), now_matches) {
                        (true, true) => Some("MODIFIED"),
                        (false, true) => Some("ADDED"),
                        (true, false) => {
                            // The watch cache reports the object as it last matched, at the
                            // version that made it leave.
                            let mut last = e.previous.as_ref().map_or(Value::Null, parse);
                            if let Some(meta) =
                                last.get_mut("metadata").and_then(Value::as_object_mut)
                            {
                                let now = parse(&e.object);
                                let rv = now.at("/metadata/resourceVersion").cloned();
                                meta.insert("resourceVersion".into(), rv.unwrap_or(Value::Null));
                            }
                            self.push("DELETED", &last);
                            None
                        }
                        (false, false) => None,
                    },
                    EventKind::Deleted => before.unwrap_or(now_matches).then_some("DELETED"),
                }
            };
            if let Some(kind) = kind {
                self.push_json(kind, &e.object);
            }
        }
        self.last_rv = state.rv();
    }

    /// Queues an event whose object is stored JSON: copied as is when the request wants
    /// full objects in the stored version, rendered otherwise.
    fn push_json(&mut self, kind: &str, json: &Bytes) {
        if self.params.rendering == Rendering::Full && self.target.rt.versions.len() == 1 {
            let mut line = Vec::with_capacity(json.len() + 32);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(kind.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            line.extend_from_slice(json);
            line.extend_from_slice(b"}\n");
            self.queue.push_back(Bytes::from(line));
        } else {
            let obj: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
            self.push(kind, &obj);
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, Cut>> {
        loop {
            if *self.removal.borrow() {
                return Some(Err(Cut::Removed));
            }
            if matches!(*self.fault.borrow(), Some(Fault::Unreachable)) {
                return Some(Err(Cut::Unreachable));
            }
            if let Some(b) = self.queue.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            let bookmark_at = if self.params.bookmarks {
                self.next_bookmark.min(self.deadline)
            } else {
                self.deadline
            };
            let wake = {
                let changes = &mut self.changes;
                let fault = &mut self.fault;
                let removal = &mut self.removal;
                let shutdown = &mut self.shutdown;
                tokio::select! {
                    _ = tokio::time::sleep_until(bookmark_at) => Wake::Timer,
                    r = changes.changed() => Wake::Changed(r.is_ok()),
                    r = fault.changed() => Wake::Recheck(r.is_ok()),
                    r = removal.changed() => Wake::Recheck(r.is_ok()),
                    _ = crate::fleet::stopped(shutdown) => Wake::Shutdown,
                }
            };
            match wake {
                Wake::Timer if Instant::now() >= self.deadline => self.done = true,
                Wake::Timer => {
                    self.next_bookmark = Instant::now() + self.params.bookmark_interval;
                    let bm = self.bookmark_object(false);
                    let served = Served {
                        obj: &bm,
                        api_version: bm.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                        omit_type: false,
                    };
                    self.queue
                        .push_back(Bytes::from(event_line("BOOKMARK", &served)));
                }
                Wake::Changed(true) => {
                    let cluster = self.cluster.clone();
                    let state = cluster.read();
                    self.collect(&state);
                }
                Wake::Recheck(true) => {}
                Wake::Changed(false) | Wake::Recheck(false) | Wake::Shutdown => self.done = true,
            }
        }
    }
}
