//! Live updates for the dashboard: `GET /api/watch` with the filters of `/api/status` answers
//! with server-sent events. The first, `snapshot`, is the status the query selects; after it,
//! each `change` carries only what changed since the previous event — the top-level fields
//! that differ (`set`), the clusters of the page that are new or differ (`upsert`), those that
//! left it (`remove`), and the page's order of names when it moved (`order`). A change of the
//! applied index alone is not news. The caller's token is checked again before every event: a
//! revoked or expired token ends the stream with `signedOut`. The browser's `EventSource`
//! reconnects by itself (after a node restart or a failover, to whatever the address reaches)
//! and starts again from a snapshot.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Map, Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::HttpContext;
use super::dashboard::StatusParams;
use super::session::{HttpError, reader, token};
use crate::api::caller::identify_token;
use crate::api::view;

/// Bursts of applied entries are coalesced into one event at most this often.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// What a watcher last sent: each top-level field but the clusters, and each cluster by name
/// with the page's order.
#[derive(Debug, Default, PartialEq)]
struct Shown {
    fields: Map<String, Value>,
    clusters: BTreeMap<String, Value>,
    order: Vec<String>,
}

impl Shown {
    /// Splits a serialized fleet status.
    fn of(status: Value) -> Shown {
        let Value::Object(mut fields) = status else {
            return Shown::default();
        };
        let listed = match fields.remove("clusters") {
            Some(Value::Array(clusters)) => clusters,
            _ => Vec::new(),
        };
        let mut shown = Shown {
            fields,
            ..Shown::default()
        };
        for cluster in listed {
            let name = cluster["name"].as_str().unwrap_or_default().to_owned();
            shown.order.push(name.clone());
            shown.clusters.insert(name, cluster);
        }
        shown
    }

    /// What changed from `self` to `next`, or `None` when nothing but the applied index did.
    fn change_to(&self, next: &Shown) -> Option<Value> {
        let set: Map<String, Value> = next
            .fields
            .iter()
            .filter(|(field, value)| self.fields.get(*field) != Some(*value))
            .map(|(field, value)| (field.clone(), value.clone()))
            .collect();
        let upsert: Vec<&Value> = next
            .clusters
            .iter()
            .filter(|(name, cluster)| self.clusters.get(*name) != Some(*cluster))
            .map(|(_, cluster)| cluster)
            .collect();
        let remove: Vec<&String> = self
            .clusters
            .keys()
            .filter(|name| !next.clusters.contains_key(*name))
            .collect();
        let moved = self.order != next.order;
        let news = set.keys().any(|field| field != "appliedIndex")
            || !upsert.is_empty()
            || !remove.is_empty()
            || moved;
        news.then(|| {
            let mut change = json!({ "set": set, "upsert": upsert, "remove": remove });
            if moved {
                change["order"] = json!(next.order);
            }
            change
        })
    }
}

/// `GET /api/watch`: the selected status, then its changes, as server-sent events.
pub(super) async fn watch(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    params: Result<Query<StatusParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let caller = reader(&context.hub, &headers)?;
    let bad = |why: String| HttpError::new(StatusCode::BAD_REQUEST, why);
    let Query(params) = params.map_err(|e| bad(e.body_text()))?;
    let query = params.query().map_err(bad)?;
    let token = token(&headers).map(str::to_owned);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    let hub = context.hub.clone();
    tokio::spawn(async move {
        let mut applied = hub.node.watch_applied();
        let mut caller = caller;
        let mut last: Option<Shown> = None;
        loop {
            let status = view(&caller, &hub.status(), &query);
            let Ok(value) = serde_json::to_value(&status) else {
                return;
            };
            let next = Shown::of(value.clone());
            let event = match &last {
                None => Some(Event::default().event("snapshot").data(value.to_string())),
                Some(last) => last
                    .change_to(&next)
                    .map(|change| Event::default().event("change").data(change.to_string())),
            };
            if let Some(event) = event {
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
                last = Some(next);
            }
            tokio::select! {
                _ = sender.closed() => return,
                changed = applied.changed() => if changed.is_err() { return },
            }
            tokio::time::sleep(DEBOUNCE).await;
            // The token may have been revoked or have expired meanwhile.
            match identify_token(&hub, token.as_deref()) {
                Ok(current) => caller = current,
                Err(refused) => {
                    let gone = Event::default()
                        .event("signedOut")
                        .data(json!({ "message": refused.to_string() }).to_string());
                    let _ = sender.send(Ok(gone)).await;
                    return;
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Shown;

    fn status(index: u64, clusters: &[(&str, &str)], phase: &str) -> Shown {
        Shown::of(json!({
            "appliedIndex": index,
            "stages": [{"name": "dev", "phase": phase}],
            "clusters": clusters
                .iter()
                .map(|(name, health)| json!({"name": name, "health": health}))
                .collect::<Vec<_>>(),
        }))
    }

    #[test]
    fn a_change_carries_only_what_changed() {
        let first = status(1, &[("a", "Healthy"), ("b", "Healthy")], "Idle");
        assert_eq!(
            first.change_to(&status(2, &[("a", "Healthy"), ("b", "Healthy")], "Idle")),
            None
        );

        let change = first
            .change_to(&status(3, &[("a", "Healthy"), ("b", "Degraded")], "Idle"))
            .expect("b changed");
        assert_eq!(
            change["upsert"],
            json!([{"name": "b", "health": "Degraded"}])
        );
        assert_eq!(change["remove"], json!([]));
        assert_eq!(change["set"], json!({"appliedIndex": 3}));
        assert!(change.get("order").is_none(), "{change}");

        let change = first
            .change_to(&status(4, &[("b", "Healthy"), ("c", "Healthy")], "Rolling"))
            .expect("a left, c came, the phase moved");
        assert_eq!(
            change["upsert"],
            json!([{"name": "c", "health": "Healthy"}])
        );
        assert_eq!(change["remove"], json!(["a"]));
        assert_eq!(change["order"], json!(["b", "c"]));
        assert_eq!(
            change["set"]["stages"],
            json!([{"name": "dev", "phase": "Rolling"}])
        );
    }
}
