#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::{ConfigError, FileConfig};
use flotilla_consensus::transport::listener::ListenerLimits;

fn parse(yaml: &str) -> FileConfig {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn connection_settings_in_the_file_replace_only_the_defaults_they_name() {
    let file = parse(
        "connections:\n  api: {maxConnectionsPerPeer: 10000, idleTimeout: 2m}\n  http: {headerReadTimeout: 2s, requestTimeout: 45s, keepaliveInterval: 15s, idleTimeout: 30s}\n  peer: {keepaliveInterval: 'off'}\n",
    );
    let connections = file.connections.unwrap_or_default();
    let api = connections.api().unwrap();
    assert_eq!(api.max_connections_per_peer, 10_000);
    assert_eq!(api.idle_timeout, Duration::from_secs(120));
    assert_eq!(api.max_connections, ListenerLimits::api().max_connections);
    let http = connections.http().unwrap();
    assert_eq!(http.header_read_timeout, Duration::from_secs(2));
    assert_eq!(http.request_timeout, Duration::from_secs(45));
    assert_eq!(http.keepalive_interval, Some(Duration::from_secs(15)));
    assert_eq!(connections.peer().unwrap().keepalive_interval, None);
}

#[test]
fn without_connection_settings_every_listener_has_its_defaults() {
    let connections = parse("id: 1\n").connections.unwrap_or_default();
    assert_eq!(connections.api().unwrap(), ListenerLimits::api());
    assert_eq!(connections.http().unwrap(), ListenerLimits::http());
    assert_eq!(connections.peer().unwrap(), ListenerLimits::peer());
}

#[test]
fn a_bad_connection_setting_names_its_listener_and_key() {
    let problem = |yaml: &str| match parse(yaml).connections.unwrap_or_default().api() {
        Err(ConfigError::Invalid { field, problem }) => format!("{field}: {problem}"),
        other => format!("accepted: {other:?}"),
    };
    let slow = problem("connections:\n  api: {idleTimeout: 3s}\n");
    assert!(
        slow.starts_with("connections: api.idleTimeout (3s) must be longer than keepaliveInterval"),
        "{slow}"
    );
    let garbage = problem("connections:\n  api: {handshakeTimeout: soon}\n");
    assert!(
        garbage.starts_with("connections: api.handshakeTimeout: "),
        "{garbage}"
    );
    let none = problem("connections:\n  api: {maxConnections: 0}\n");
    assert_eq!(none, "connections: api.maxConnections must be positive");
    let unknown: Result<FileConfig, _> =
        serde_saphyr::from_str("connections:\n  api: {maxConns: 5}\n");
    assert!(unknown.is_err(), "unknown keys are refused");
}
