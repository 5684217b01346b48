//! Rules for single field values: paths, variable names, branch names, signing keys.

use base64::Engine;

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

pub(super) enum PathProblem {
    Escapes,
    Malformed(String),
}

/// Joins `path` to `base` (both relative to the repository root) and normalizes `.` and
/// `..` lexically; the result never leaves the root. Links are checked on disk later.
pub(super) fn normalize_path(base: &str, path: &str) -> Result<String, PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Malformed("must not be empty".to_owned()));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return Err(PathProblem::Malformed(format!(
            "`{path}` must be relative to the repository, e.g. `bundles/web`"
        )));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(PathProblem::Malformed(format!(
            "`{path}` must use `/` separators and printable characters"
        )));
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathProblem::Escapes);
                }
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

pub(super) fn validate_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "variable name `{name}` must be letters, digits and `_`, not starting with a digit"
        ));
    }
    if name == "cluster" {
        return Err(
            "`cluster` is reserved for `${cluster.name}` and `${cluster.labels.KEY}`".to_owned(),
        );
    }
    Ok(())
}

/// Git's ref-name rules, as far as a branch name written by hand can break them.
pub(super) fn validate_branch(branch: &str) -> Result<(), String> {
    let bad = branch.is_empty()
        || branch.starts_with('-')
        || branch.starts_with('/')
        || branch.ends_with('/')
        || branch.ends_with('.')
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{branch}` is not a valid branch name"))
    } else {
        Ok(())
    }
}

/// An OpenSSH public key line whose blob decodes and names the same key type.
pub(super) fn validate_ssh_key(line: &str) -> Result<(), String> {
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(
            "expected an OpenSSH public key line: `ssh-ed25519 AAAA... comment`".to_owned(),
        );
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!(
            "unsupported key type `{kind}`; expected one of {}",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "the key's base64 part does not decode".to_owned())?;
    let embedded_kind = bytes
        .get(..4)
        .and_then(|len| <[u8; 4]>::try_from(len).ok())
        .map(|len| u32::from_be_bytes(len) as usize)
        .and_then(|len| bytes.get(4..4 + len));
    if embedded_kind != Some(kind.as_bytes()) {
        return Err(format!("the key's data is not a `{kind}` key"));
    }
    crate::signing::check_key(&crate::spec::SigningKeyMaterial::Ssh(line.to_owned()))
}

pub(super) fn validate_openpgp_key(armored: &str) -> Result<(), String> {
    let text = armored.trim();
    if text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        && text.ends_with("-----END PGP PUBLIC KEY BLOCK-----")
    {
        crate::signing::check_key(&crate::spec::SigningKeyMaterial::OpenPgp(text.to_owned()))
    } else {
        Err(
            "expected an ASCII-armored public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----` ... \
             `-----END PGP PUBLIC KEY BLOCK-----`), as `gpg --armor --export` prints"
                .to_owned(),
        )
    }
}

/// A Helm release name: a DNS-1123 subdomain of at most 53 characters (Helm's rule: the name
/// is used in the names of the objects it creates).
pub(super) fn validate_release_name(name: &str) -> Result<(), String> {
    const MAX: usize = 53;
    if name.is_empty() || name.len() > MAX {
        return Err(format!("a release name has 1 to {MAX} characters"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a release name: lowercase letters, digits, `-` and `.`, starting and \
             ending with a letter or digit"
        ))
    }
}

/// A chart source: an `https://` (or `http://`) chart repository or an `oci://` registry
/// prefix, with a host and no query, fragment or credentials.
pub(crate) fn validate_chart_repo(url: &str) -> Result<(), String> {
    let rest = ["https://", "http://", "oci://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| {
            format!("`{url}` is not a chart source: use https://… (a chart repository) or oci://… (a registry)")
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    if rest.contains(['?', '#', '@', ' ', '\\']) {
        return Err(format!(
            "`{url}` may not carry a query, a fragment or credentials (the hub's chart sources hold credentials)"
        ));
    }
    // Dot segments would lead out of the path a chart source is allowed by.
    let dotted = rest.split('/').skip(1).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dotted || rest.to_ascii_lowercase().contains("%2f") {
        return Err(format!("`{url}` may not have `.` or `..` segments"));
    }
    Ok(())
}

/// A chart's name in a repository: letters, digits, `-`, `_` and `.`, no path.
pub(crate) fn validate_chart_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 250
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a chart name: with `repo`, `chart` is the chart's name there (letters, digits, `-`, `_`, `.`)"
        ))
    }
}

/// An exact chart version: a semantic version, no range.
pub(crate) fn validate_exact_version(version: &str) -> Result<(), String> {
    let core = version.strip_prefix('v').unwrap_or(version);
    let numbers = core.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = numbers.split('.').collect();
    let exact = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if exact {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not an exact version: give one like 1.2.3 (ranges would render different charts over time)"
        ))
    }
}
