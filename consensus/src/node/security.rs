//! Which CA a node uses and the certificate it issues itself at start.
//!
//! The CA's certificate lives in the replicated state from the group's first entry: the
//! founders' bootstrap snapshot carries it. Its private key never does: it would sit in every
//! node's log and snapshots and travel in every snapshot sent to a peer. Each node keeps the key
//! beside its log instead, in `DATA/ca.key` (mode 0600 in a 0700 data dir), written at its first
//! start from `--ca-key` or, for a single founder that creates the CA, from the new CA. Founders
//! of a larger group must all be given the same CA (they need to trust each other before raft
//! can replicate anything), and so must a node that joins (it needs a certificate before it can
//! catch up). Every later start takes the certificate from the state and the key from the file,
//! and checks that they belong together.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use flotilla_pki::{CaPem, GroupCa};

use crate::StateMachine;
use crate::config::{ConfigError, NodeConfig, SecurityConfig};
use crate::transport::net::{self, NetError, NodeTls, Security};

use super::StartError;

/// File every node writes the CA certificate to, in its data dir, for clients to trust.
pub const CA_FILE: &str = "ca.crt";

/// File holding the CA's private key in each node's data dir; never replicated.
pub const CA_KEY_FILE: &str = "ca.key";

/// The CA as the replicated state keeps it: the certificate, without its key.
pub(super) fn replicated(ca: CaPem) -> CaPem {
    CaPem {
        private_key: String::new(),
        ..ca
    }
}

/// Writes the CA's key to `DATA/ca.key` (0600), unless the file already holds it.
pub(super) fn keep_ca_key(dir: &Path, ca: &CaPem) -> Result<(), NetError> {
    let path = dir.join(CA_KEY_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|kept| kept == ca.private_key) {
        return Ok(());
    }
    let failed = |e: std::io::Error| NetError::Tls(format!("cannot write {}: {e}", path.display()));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    std::io::Write::write_all(&mut file, ca.private_key.as_bytes()).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(&path).map_err(|e| failed(e.error))?;
    Ok(())
}

/// The CA a founding member puts in the bootstrap snapshot: the operator's, or a new one when
/// it founds the group alone. `None` for an insecure group.
pub(super) fn founding_ca<S: StateMachine>(
    config: &NodeConfig,
    founders: usize,
) -> Result<Option<CaPem>, StartError<S>> {
    let SecurityConfig::Tls(tls) = &config.security else {
        return Ok(None);
    };
    if let Some(ca) = &tls.ca {
        return Ok(Some(ca.clone()));
    }
    if founders > 1 {
        return Err(ConfigError::Invalid {
            field: "--ca-cert / --ca-key",
            problem: format!(
                "the {founders} founders of a group must trust one CA before they can talk: create \
                 one with `flotilla-hub ca create --out DIR` and start every founder with \
                 --ca-cert DIR/ca.crt --ca-key DIR/ca.key"
            ),
        }
        .into());
    }
    let ca = GroupCa::generate(&config.group, SystemTime::now())
        .map_err(|e| NetError::Tls(format!("cannot create the group CA: {e}")))?;
    tracing::info!(group = %config.group, "created the group's CA");
    Ok(Some(ca.to_pem()))
}

/// The node's TLS material: the group's CA (from the state, else the operator's files) and a
/// fresh certificate for this node's names; the CA certificate is written to `DATA/ca.crt`.
pub(super) fn node_security<S: StateMachine>(
    config: &NodeConfig,
    address: &str,
    state: &S,
) -> Result<Security, StartError<S>> {
    let SecurityConfig::Tls(tls) = &config.security else {
        return Ok(Security::Plain);
    };
    let ca = match (state.group_ca(), &tls.ca) {
        (Some(group), Some(given)) if group.certificate != given.certificate => {
            return Err(ConfigError::Invalid {
                field: "--ca-cert / --ca-key",
                problem: format!(
                    "the group's CA (in {}) is not the one given; start without --ca-cert/--ca-key \
                     or with the group's own CA",
                    config.data_dir.display()
                ),
            }
            .into());
        }
        (Some(_), Some(given)) | (None, Some(given)) => given.clone(),
        (Some(group), None) if !group.private_key.is_empty() => {
            // A group founded before the key left the replicated state: keep using it, and keep
            // it in the file too so that a re-founded group's nodes can start from it.
            tracing::warn!(
                "the group's replicated state holds the CA's private key (a group founded by an \
                 older version); every node's log and snapshots carry it until the group is \
                 founded again with --ca-cert/--ca-key"
            );
            group.clone()
        }
        (Some(group), None) => {
            let path = config.data_dir.join(CA_KEY_FILE);
            let private_key = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                field: "--ca-cert / --ca-key",
                problem: format!(
                    "the group's CA key is not readable in {} ({e}); start this node with the \
                     group's --ca-cert and --ca-key",
                    path.display()
                ),
            })?;
            CaPem {
                certificate: group.certificate.clone(),
                private_key,
            }
        }
        (None, None) => {
            return Err(ConfigError::Invalid {
                field: "--ca-cert / --ca-key",
                problem: "this node has no CA yet (it joins a group, or its group was founded \
                          with --insecure): start it with the group's --ca-cert and --ca-key"
                    .into(),
            }
            .into());
        }
    };
    let group_ca =
        GroupCa::from_pem(&ca).map_err(|e| NetError::Tls(format!("the group's CA: {e}")))?;
    keep_ca_key(&config.data_dir, &ca)?;
    let ca = group_ca;
    let names = certificate_names(address, &config.listen, &tls.names);
    let node_tls = NodeTls::issue(
        ca,
        config.id,
        &names,
        tls.node_cert_lifetime,
        SystemTime::now(),
    )?;
    write_ca_file(&config.data_dir, node_tls.ca_pem())?;
    tracing::info!(
        node = config.id,
        names = %names.join(","),
        ca = %config.data_dir.join(CA_FILE).display(),
        valid_days = tls.node_cert_lifetime.as_secs() / 86_400,
        "TLS on: node certificate issued by the group's CA (renewed with a third of its \
         lifetime left)"
    );
    Ok(Security::Tls(std::sync::Arc::new(node_tls)))
}

/// Every name clients may dial this node by: the advertised and listen hosts (unless a
/// wildcard), the configured ones and the loopback names, without repeats.
fn certificate_names(advertise: &str, listen: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let hosts = [net::host_of(advertise), net::host_of(listen)];
    let candidates = hosts
        .into_iter()
        .chain(extra.iter().map(|name| net::host_of(name)))
        .chain(net::LOOPBACK_NAMES);
    for name in candidates {
        let wildcard = name.is_empty()
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
        if !wildcard && !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    names
}

fn write_ca_file(dir: &Path, pem: &str) -> Result<(), NetError> {
    let path = dir.join(CA_FILE);
    let failed = |e: std::io::Error| NetError::Tls(format!("cannot write {}: {e}", path.display()));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    // Clients of other users read it: it is a certificate, not a secret.
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(failed)?;
    std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(&path).map_err(|e| failed(e.error))?;
    Ok(())
}
