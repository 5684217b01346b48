//! The hub's layering, checked from its sources: its top-level modules (`api`, `sync`,
//! `state`, …) form no import cycle, so each can be read and changed knowing only what is below
//! it; and the consensus crate links nothing of the hub or of Kubernetes. A new `use` that closes
//! a cycle fails here with the cycle and the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The hub's top-level modules and, per module, the modules its non-test files name with
/// `crate::…`, with the files that do.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .expect("hub/src is readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
        .filter(|name| name != "lib" && name != "main")
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files = vec![src.join(format!("{module}.rs"))];
        collect(&src.join(module), &mut files);
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let name = file.display().to_string();
            if name.ends_with("tests.rs") || name.contains("/tests/") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("a source file is readable");
            for used in named_modules(&text) {
                if used != *module && modules.contains(&used) {
                    uses.entry(used).or_default().insert(name.clone());
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The modules a source names: `crate::x…` and the names inside `use crate::{x, y::…}`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.remove("");
    names
}

/// A cycle of the graph, if it has one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph
            .get(node)
            .map(|uses| uses.keys())
            .into_iter()
            .flatten()
        {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_hubs_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() > 10, "too few modules found: {graph:?}");
    assert!(
        graph["api"].contains_key("state"),
        "the scan must see `crate::` uses"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                format!(
                    "{} -> {} ({:?})",
                    pair[0], pair[1], graph[&pair[0]][&pair[1]]
                )
            })
            .collect();
        panic!("the hub's modules form a cycle:\n{}", edges.join("\n"));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    graph
        .entry("a".into())
        .or_default()
        .insert("b".into(), BTreeSet::new());
    graph
        .entry("b".into())
        .or_default()
        .insert("c".into(), BTreeSet::new());
    graph
        .entry("c".into())
        .or_default()
        .insert("a".into(), BTreeSet::new());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        named_modules("use crate::{audit::Entry, state};\nlet x = crate::status::f();"),
        ["audit", "state", "status"].map(String::from).into()
    );
}

/// The crates `cargo tree` lists for `package`'s normal dependencies.
fn dependency_tree(package: &str) -> String {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails naming every crate of `forbidden` that `package` links, after checking the tree
/// was read (it names `expected`).
fn assert_links_none(package: &str, expected: &str, forbidden: &[&str]) {
    let tree = dependency_tree(package);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(expected), "the tree was read: {tree}");
    let linked: Vec<&&str> = forbidden
        .iter()
        .filter(|name| crates.contains(**name))
        .collect();
    assert!(linked.is_empty(), "{package} links {linked:?}:\n{tree}");
}

#[test]
fn the_consensus_crate_links_nothing_of_the_hub_or_kubernetes() {
    assert_links_none(
        "flotilla-consensus",
        "raft",
        &[
            "flotilla-hub",
            "flotilla-agent",
            "flotilla-sim",
            "kube",
            "git2",
            "axum",
        ],
    );
}

#[test]
fn the_cli_links_only_core_proto_pki_and_its_grpc_client() {
    assert_links_none(
        "flotilla-cli",
        "flotilla-core",
        &[
            "flotilla-hub",
            "flotilla-agent",
            "flotilla-sim",
            "flotilla-consensus",
            "flotilla-demo",
            "flotilla-testkit",
            "raft",
            "redb",
            "kube",
            "kube-client",
        ],
    );
}
