//! The kubeconfig naming one context per virtual cluster, written atomically.

use std::path::Path;

use serde_json::json;

use crate::SimError;

/// A kubeconfig with a cluster, user and context per `(name, url)`, the first current.
pub(crate) fn render(clusters: &[(String, String)]) -> String {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters.iter().map(|(n, url)| json!({"name": n, "cluster": {"server": url}})).collect::<Vec<_>>(),
        "users": clusters.iter().map(|(n, _)| json!({"name": n, "user": {}})).collect::<Vec<_>>(),
        "contexts": clusters.iter().map(|(n, _)| json!({"name": n, "context": {"cluster": n, "user": n}})).collect::<Vec<_>>(),
        "current-context": clusters.first().map(|(n, _)| n.as_str()).unwrap_or(""),
        "preferences": {},
    });
    serde_saphyr::to_string(&config).unwrap_or_default()
}

/// Writes a file atomically: a temporary file beside it, then a rename.
pub(crate) fn write_atomic(path: &Path, content: &str) -> Result<(), SimError> {
    let err = |source| SimError::WriteKubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".to_string());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}
