//! Watches on owned objects: one watcher per kind, across all namespaces, selecting objects
//! with the bundle label, shared by every bundle that owns objects of that kind. Each event is
//! routed to the bundle the object's label names.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::catalog::Kind;
use crate::object::{BUNDLE_LABEL, ObjectRef};

/// A change to an owned object, as a watch saw it.
#[derive(Debug)]
pub enum Observation {
    /// The object exists and looks like this.
    Live(ObjectRef, Value),
    /// The object is gone (deleted, or it lost its bundle label).
    Gone(ObjectRef),
    /// A (re)list of a kind completed: these are all of the bundle's objects of that kind.
    Listed {
        /// Group of the kind.
        group: String,
        /// The kind.
        kind: String,
        /// The bundle's objects of that kind that exist.
        present: HashSet<ObjectRef>,
    },
}

/// Where each bundle wants its observations.
pub type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Observation>>>>;

type KindKey = (String, String);

struct Watcher {
    task: JoinHandle<()>,
    users: Arc<Mutex<HashSet<String>>>,
    /// Asks the watcher to tell a bundle which of its objects exist.
    resync: mpsc::UnboundedSender<String>,
}

/// The running watchers.
pub struct Watches {
    client: Client,
    routes: Routes,
    watchers: Mutex<HashMap<KindKey, Watcher>>,
}

impl Watches {
    /// No watchers yet; observations go to `routes`.
    pub fn new(client: Client, routes: Routes) -> Watches {
        Watches {
            client,
            routes,
            watchers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `bundle` watch exactly `kinds`: starts watchers nobody ran yet, and stops those
    /// no bundle needs any more.
    pub fn set_kinds(&self, bundle: &str, kinds: &[Kind]) {
        let wanted: HashSet<KindKey> = kinds.iter().map(key).collect();
        let mut watchers = self.watchers.lock();
        for (k, watcher) in watchers.iter() {
            if !wanted.contains(k) {
                watcher.users.lock().remove(bundle);
            }
        }
        for kind in kinds {
            let watcher = watchers
                .entry(key(kind))
                .or_insert_with(|| self.start(kind.clone()));
            if watcher.users.lock().insert(bundle.to_owned()) {
                // A new user has not seen this kind's list: it learns which of its objects
                // exist from what the watcher knows (or from the list under way).
                let _ = watcher.resync.send(bundle.to_owned());
            }
        }
        watchers.retain(|_, watcher| {
            let keep = !watcher.users.lock().is_empty();
            if !keep {
                watcher.task.abort();
            }
            keep
        });
    }

    fn start(&self, kind: Kind) -> Watcher {
        let users = Arc::new(Mutex::new(HashSet::new()));
        let (resync, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            self.client.clone(),
            kind,
            Arc::clone(&self.routes),
            Arc::clone(&users),
            requests,
        ));
        Watcher {
            task,
            users,
            resync,
        }
    }

    /// How many kinds are being watched.
    pub fn len(&self) -> usize {
        self.watchers.lock().len()
    }

    /// Whether nothing is being watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every watcher.
    pub fn stop(&self) {
        for (_, watcher) in self.watchers.lock().drain() {
            watcher.task.abort();
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key(kind: &Kind) -> KindKey {
    (kind.resource.group.clone(), kind.resource.kind.clone())
}

async fn run(
    client: Client,
    kind: Kind,
    routes: Routes,
    users: Arc<Mutex<HashSet<String>>>,
    mut resyncs: mpsc::UnboundedReceiver<String>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.resource);
    let config = watcher::Config::default().labels(BUNDLE_LABEL);
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut state = KindState::default();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => state.observe(&kind, event, &routes, &users),
                Some(Err(error)) => {
                    tracing::warn!(kind = %kind.resource.kind, %error, "watch failed; retrying");
                }
                None => return,
            },
            Some(bundle) = resyncs.recv() => {
                // Until the first list completes, its end tells every user anyway.
                if state.listed {
                    state.tell(&kind, &routes, &bundle);
                }
            }
        }
    }
}

/// What one kind's watcher knows.
#[derive(Default)]
struct KindState {
    /// Objects seen, with their bundle, so a relist can tell which disappeared meanwhile.
    known: HashMap<ObjectRef, String>,
    /// Objects seen by a list under way.
    relisted: Option<HashMap<ObjectRef, String>>,
    /// A list has completed.
    listed: bool,
}

impl KindState {
    fn observe(
        &mut self,
        kind: &Kind,
        event: watcher::Event<DynamicObject>,
        routes: &Routes,
        users: &Mutex<HashSet<String>>,
    ) {
        match event {
            watcher::Event::Init => self.relisted = Some(HashMap::new()),
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Some((bundle, id, value)) = identify(kind, object) else {
                    return;
                };
                if let Some(relisted) = self.relisted.as_mut() {
                    relisted.insert(id.clone(), bundle.clone());
                }
                if let Some(previous) = self.known.insert(id.clone(), bundle.clone())
                    && previous != bundle
                {
                    send(routes, &previous, Observation::Gone(id.clone()));
                }
                send(routes, &bundle, Observation::Live(id, value));
            }
            watcher::Event::Delete(object) => {
                let Some((bundle, id, _)) = identify(kind, object) else {
                    return;
                };
                self.known.remove(&id);
                send(routes, &bundle, Observation::Gone(id));
            }
            watcher::Event::InitDone => {
                let Some(relisted) = self.relisted.take() else {
                    return;
                };
                for (id, bundle) in &self.known {
                    if !relisted.contains_key(id) {
                        send(routes, bundle, Observation::Gone(id.clone()));
                    }
                }
                self.known = relisted;
                self.listed = true;
                let users: Vec<String> = users.lock().iter().cloned().collect();
                for bundle in users {
                    self.tell(kind, routes, &bundle);
                }
            }
        }
    }

    /// Tells `bundle` which of its objects of this kind exist.
    fn tell(&self, kind: &Kind, routes: &Routes, bundle: &str) {
        let present = self
            .known
            .iter()
            .filter(|(_, b)| *b == bundle)
            .map(|(id, _)| id.clone())
            .collect();
        let listed = Observation::Listed {
            group: kind.resource.group.clone(),
            kind: kind.resource.kind.clone(),
            present,
        };
        send(routes, bundle, listed);
    }
}

fn identify(kind: &Kind, object: DynamicObject) -> Option<(String, ObjectRef, Value)> {
    let bundle = object.metadata.labels.as_ref()?.get(BUNDLE_LABEL)?.clone();
    let id = ObjectRef {
        group: kind.resource.group.clone(),
        kind: kind.resource.kind.clone(),
        namespace: object
            .metadata
            .namespace
            .clone()
            .filter(|_| kind.namespaced),
        name: object.metadata.name.clone()?,
    };
    let value = serde_json::to_value(object).ok()?;
    Some((bundle, id, value))
}

fn send(routes: &Routes, bundle: &str, observation: Observation) {
    if let Some(route) = routes.lock().get(bundle) {
        // A closed route is a bundle being removed; its observations no longer matter.
        let _ = route.send(observation);
    }
}
