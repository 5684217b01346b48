//! Writes the compact schema set `flotilla lint` ships for one Kubernetes version, from that
//! version's `api/openapi-spec/v3` directory: `scripts/kube-schemas VERSION` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_core::validate::Schemas;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory, version] = args.as_slice() else {
        eprintln!("usage: kube_schemas OPENAPI_V3_DIR KUBERNETES_VERSION");
        return ExitCode::FAILURE;
    };
    match compact(&PathBuf::from(directory), version) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kube_schemas: {message}");
            ExitCode::FAILURE
        }
    }
}

fn compact(directory: &PathBuf, version: &str) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .map_err(|e| format!("{}: {e}", directory.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let document: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        if document.pointer("/components/schemas").is_some() {
            documents.push(document);
        }
    }
    let schemas = Schemas::from_documents(version, documents).map_err(|e| e.to_string())?;
    serde_json::to_string(&schemas.to_compact()).map_err(|e| e.to_string())
}
