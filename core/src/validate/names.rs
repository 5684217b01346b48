//! The API server's rules for names, label keys and values, annotation keys and quantities,
//! as `k8s.io/apimachinery/pkg/util/validation` and `pkg/api/resource` state them.

/// The longest DNS-1123 subdomain.
const SUBDOMAIN_MAX: usize = 253;
/// The longest DNS label, label value or label name part.
const LABEL_MAX: usize = 63;
/// The most bytes all annotations of one object may hold together.
pub(super) const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// How an object's `metadata.name` is judged, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameRule {
    /// Lowercase alphanumerics, `-` and `.`, at most 253 (most kinds).
    Subdomain,
    /// Lowercase alphanumerics and `-`, at most 63 (`Namespace`).
    Label,
    /// Anything but `.`, `..`, `/` or `%` (RBAC kinds, whose names hold `:`).
    PathSegment,
    /// A subdomain of at most 52 characters, leaving room for the Job name suffix (`CronJob`).
    CronJob,
    /// Not judged here: kinds whose names the server checks its own way (IP addresses,
    /// `signer:name`) or not at all.
    Unchecked,
}

impl NameRule {
    /// The rule the API server applies to names of `group`/`kind`.
    pub(super) fn of(group: &str, kind: &str) -> NameRule {
        match (group, kind) {
            // Kubernetes 1.37 accepts RFC 1123 labels for Services (a leading digit); older
            // versions wanted RFC 1035 ones. The lenient rule never refuses what a server takes.
            ("", "Namespace" | "Service") => NameRule::Label,
            (
                "rbac.authorization.k8s.io",
                "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
            ) => NameRule::PathSegment,
            ("batch", "CronJob") => NameRule::CronJob,
            ("certificates.k8s.io", "CertificateSigningRequest" | "ClusterTrustBundle")
            | ("networking.k8s.io", "IPAddress" | "ServiceCIDR") => NameRule::Unchecked,
            _ => NameRule::Subdomain,
        }
    }

    /// Why `name` breaks the rule, or `None` when it keeps it.
    pub(super) fn check(self, name: &str) -> Option<String> {
        match self {
            NameRule::Subdomain => subdomain(name),
            NameRule::Label => dns_label(name),
            NameRule::PathSegment => path_segment(name),
            NameRule::CronJob => subdomain(name).or_else(|| {
                (name.len() > 52).then(|| "must be no more than 52 characters".to_owned())
            }),
            NameRule::Unchecked => None,
        }
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
pub(super) fn dns_label(name: &str) -> Option<String> {
    if name.len() > LABEL_MAX {
        return Some(format!("must be no more than {LABEL_MAX} characters"));
    }
    if label_shape(name) {
        None
    } else {
        Some(
            "must consist of lowercase alphanumeric characters or '-', and must start and end \
             with an alphanumeric character (e.g. 'my-name')"
                .to_owned(),
        )
    }
}

fn label_shape(part: &str) -> bool {
    let (Some(first), Some(last)) = (part.chars().next(), part.chars().last()) else {
        return false;
    };
    is_lower_alnum(first)
        && is_lower_alnum(last)
        && part.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// A DNS-1123 subdomain: dot-separated DNS labels, at most 253 in all.
pub(super) fn subdomain(name: &str) -> Option<String> {
    if name.len() > SUBDOMAIN_MAX {
        return Some(format!("must be no more than {SUBDOMAIN_MAX} characters"));
    }
    if name.split('.').all(label_shape) {
        None
    } else {
        Some(
            "must consist of lowercase alphanumeric characters, '-' or '.', and must start and \
             end with an alphanumeric character (e.g. 'example.com')"
                .to_owned(),
        )
    }
}

fn path_segment(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    name.chars()
        .find(|c| *c == '/' || *c == '%')
        .map(|c| format!("may not contain '{c}'"))
}

/// A qualified name, as label and annotation keys are: an optional DNS subdomain prefix and
/// `/`, then a name of at most 63 alphanumerics, `-`, `_` or `.` starting and ending with an
/// alphanumeric.
pub(super) fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("prefix part must be non-empty".to_owned());
        }
        if let Some(why) = subdomain(prefix) {
            return Some(format!("prefix part {why}"));
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".to_owned());
    }
    if name.len() > LABEL_MAX {
        return Some(format!(
            "name part must be no more than {LABEL_MAX} characters"
        ));
    }
    if !name_part_shape(name) {
        return Some(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc'), with \
             an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                .to_owned(),
        );
    }
    None
}

fn name_part_shape(name: &str) -> bool {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.` starting and ending with
/// an alphanumeric.
pub(super) fn label_value(value: &str) -> Option<String> {
    if value.len() > LABEL_MAX {
        return Some(format!("must be no more than {LABEL_MAX} characters"));
    }
    if value.is_empty() || name_part_shape(value) {
        None
    } else {
        Some(
            "a valid label value must be an empty string or consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        )
    }
}

/// Whether `text` is a resource quantity: a signed decimal number, then a binary suffix
/// (`Ki` … `Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M` … `E`) or an exponent (`e3`).
pub(super) fn is_quantity(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let valid_number = match number.split_once('.') {
        Some((whole, fraction)) => {
            let empty = whole.is_empty() && fraction.is_empty();
            !(fraction.contains('.') || empty)
        }
        None => !number.is_empty(),
    };
    valid_number
        && (matches!(
            suffix,
            "" | "Ki"
                | "Mi"
                | "Gi"
                | "Ti"
                | "Pi"
                | "Ei"
                | "n"
                | "u"
                | "m"
                | "k"
                | "M"
                | "G"
                | "T"
                | "P"
                | "E"
        ) || suffix
            .strip_prefix(['e', 'E'])
            .map(|exponent| exponent.strip_prefix(['+', '-']).unwrap_or(exponent))
            .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_servers_rules() {
        assert_eq!(NameRule::of("apps", "Deployment").check("web.v2"), None);
        assert!(NameRule::of("apps", "Deployment").check("Web").is_some());
        assert!(NameRule::of("apps", "Deployment").check("web_1").is_some());
        assert!(NameRule::of("", "Namespace").check("a.b").is_some());
        assert!(NameRule::of("", "Service").check("web.1").is_some());
        assert_eq!(NameRule::of("", "Service").check("1web"), None);
        assert_eq!(
            NameRule::of("rbac.authorization.k8s.io", "ClusterRole").check("system:reader"),
            None
        );
        assert!(
            NameRule::of("batch", "CronJob")
                .check(&"a".repeat(53))
                .is_some()
        );
        assert!(
            NameRule::of("", "ConfigMap")
                .check(&"a".repeat(254))
                .is_some()
        );
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(qualified_name("app.kubernetes.io/name"), None);
        assert_eq!(qualified_name("Team_1"), None);
        assert!(qualified_name("bad key").is_some());
        assert!(qualified_name("/x").is_some());
        assert!(qualified_name("Example.com/x").is_some());
        assert_eq!(label_value(""), None);
        assert_eq!(label_value("v1.2_a-b"), None);
        assert!(label_value("-x").is_some());
        assert!(label_value(&"a".repeat(64)).is_some());
    }

    #[test]
    fn quantities() {
        for good in [
            "1", "500m", "1.5Gi", "+2", ".5", "1e3", "2E-2", "100Ki", "0",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "1.2.3", "abc", "1Gb", "1 Gi", "e3", "1e", "--1", "."] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
