//! How a node with an empty data dir founds its group, and the address it gives its peers.

use std::collections::BTreeMap;

use raft::eraftpb::{ConfState, Snapshot};

use super::StartError;
use crate::config::{Bootstrap, ConfigError, NodeConfig};
use crate::transport::net::{self, NetError};
use crate::{NodeId, StateMachine};

pub(super) fn advertised_address<S: StateMachine>(
    config: &NodeConfig,
    listener: &tokio::net::TcpListener,
) -> Result<String, StartError<S>> {
    if let Some(advertise) = &config.advertise {
        return Ok(advertise.clone());
    }
    let local = net::local_addr(listener).map_err(|source| NetError::Bind {
        address: config.listen.clone(),
        source,
    })?;
    if local.ip().is_unspecified() {
        return Err(ConfigError::Invalid {
            field: "--advertise",
            problem: format!(
                "listening on {local} gives peers no address to reach this node; pass \
                 --advertise HOST:PORT"
            ),
        }
        .into());
    }
    Ok(local.to_string())
}

/// The members a node with an empty data dir founds its group with, if it founds one.
pub(super) fn founding_members(
    config: &NodeConfig,
    address: &str,
) -> Option<BTreeMap<NodeId, String>> {
    match &config.bootstrap {
        Bootstrap::Join => None,
        Bootstrap::Single => Some(BTreeMap::from([(config.id, address.to_owned())])),
        Bootstrap::Members(members) => Some(members.clone()),
    }
}

/// The snapshot every founding member starts from: index 1, term 1, the founding voters, and a
/// state that records their addresses. Identical on every founder, so their logs agree.
pub(super) fn bootstrap_snapshot<S: StateMachine>(
    members: BTreeMap<NodeId, String>,
    ca: Option<flotilla_pki::CaPem>,
) -> Result<Snapshot, S::SnapshotError> {
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.set_conf_state(ConfState::from((
        members.keys().copied().collect::<Vec<_>>(),
        vec![],
    )));
    snapshot.data = S::founding(members, ca).snapshot()?.into();
    Ok(snapshot)
}
