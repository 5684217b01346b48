//! `flotilla-agent run --source-dir DIR`: every subfolder of DIR is a bundle named after it,
//! kept applied as its files change. Namespaced objects that name no namespace go to the
//! namespace named after the bundle.
//!
//! The directory is the whole desired state: a subfolder that disappears is removed (its
//! objects pruned), and so is any bundle the cluster's inventories record without a subfolder.
//! Changes are noticed by fingerprinting the files every `poll` (names and bytes), which is
//! cheap for directories of manifests and needs no file-system notification support.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use flotilla_core::Limits;
use flotilla_core::hash::ContentHash;

use super::{LocalError, manifests};
use crate::bundle::{DriftMode, is_dns_label};
use crate::engine::Engine;

/// What the loop knows about one subfolder.
struct Folder {
    /// Fingerprint of its files when last read.
    fingerprint: ContentHash,
}

/// Keeps `dir`'s subfolders applied until `shutdown` resolves.
pub async fn run(
    engine: &Engine,
    dir: &Path,
    poll: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LocalError> {
    let limits = Limits::default();
    // A directory that cannot be listed at start is a mistake to report, not an empty state.
    subfolders(dir)?;
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    let mut reconciled_inventories = false;
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = ticker.tick() => {}
        }
        let names = match subfolders(dir) {
            Ok((names, invalid)) => {
                for name in invalid.difference(&skipped) {
                    println!(
                        "{}: skipped; a bundle folder's name must be a DNS label (lowercase letters, digits, '-')",
                        dir.join(name).display()
                    );
                }
                skipped = invalid;
                names
            }
            Err(error) => {
                // Keep what is applied rather than remove everything on a passing error.
                println!("{error}; keeping every bundle as it is");
                continue;
            }
        };
        for name in &names {
            scan(engine, dir, name, &limits, &mut folders);
        }
        let gone: Vec<String> = folders
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            folders.remove(&name);
            remove(engine, &name).await;
        }
        if !reconciled_inventories {
            // Bundles applied from a subfolder that was deleted while no agent ran.
            match engine.inventoried().await {
                Ok(recorded) => {
                    for name in recorded.iter().filter(|n| !names.contains(*n)) {
                        remove(engine, name).await;
                    }
                    reconciled_inventories = true;
                }
                Err(error) => println!("cannot read the cluster's inventories yet: {error}"),
            }
        }
    }
}

/// Reads a subfolder again if its files changed, and hands a changed bundle to the engine.
fn scan(
    engine: &Engine,
    dir: &Path,
    name: &str,
    limits: &Limits,
    folders: &mut BTreeMap<String, Folder>,
) {
    let path = dir.join(name);
    let fingerprint = match manifests::fingerprint(&path, limits) {
        Ok(fingerprint) => fingerprint,
        Err(error) => {
            println!("{name}: {error}");
            return;
        }
    };
    if folders
        .get(name)
        .is_some_and(|f| f.fingerprint == fingerprint)
    {
        return;
    }
    folders.insert(name.to_owned(), Folder { fingerprint });
    let objects = match manifests::load_dir(&path, limits) {
        Ok(objects) => objects,
        Err(error) => {
            println!("{name}: {error}; keeping the last revision that could be read");
            return;
        }
    };
    let revision = manifests::revision(name, name, DriftMode::Correct, objects);
    let held = engine
        .held()
        .into_iter()
        .any(|h| h.name == name && h.content_hash == revision.content_hash);
    if held {
        return;
    }
    if let Err(error) = engine.apply(revision) {
        println!("{name}: {error}");
    }
}

async fn remove(engine: &Engine, name: &str) {
    println!("{name}: its folder is gone; removing the bundle");
    if let Err(error) = engine.remove(name).await {
        println!("{name}: {error}");
    }
}

/// Names of the subfolders that can be bundles, and of those that cannot.
fn subfolders(dir: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>), LocalError> {
    let io = |source| LocalError::SourceDir {
        path: dir.to_owned(),
        source,
    };
    let mut names = BTreeSet::new();
    let mut invalid = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        if is_dns_label(&name) {
            names.insert(name);
        } else {
            invalid.insert(name);
        }
    }
    Ok((names, invalid))
}
