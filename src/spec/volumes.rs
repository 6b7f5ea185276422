//! Volume mounts: `name:/path[:ro|rw]` (named volume) or `/host/path:/path[:ro|rw]` (bind mount).

use std::fmt;

/// A parsed volume entry; the engine turns it into a Docker mount, validation into errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VolumeMount {
    /// A Docker-managed named volume, created on demand on each host.
    Named {
        /// Docker volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
        name: String,
        /// Absolute path in the container.
        target: String,
        /// `:ro` was given.
        read_only: bool,
    },
    /// A host directory or file mounted into the container.
    Bind {
        /// Absolute path on the host.
        source: String,
        /// Absolute path in the container.
        target: String,
        /// `:ro` was given.
        read_only: bool,
    },
}

impl VolumeMount {
    /// The absolute path inside the container.
    pub fn target(&self) -> &str {
        match self {
            VolumeMount::Named { target, .. } | VolumeMount::Bind { target, .. } => target,
        }
    }

    /// Whether the container sees the mount read-only.
    pub fn read_only(&self) -> bool {
        match self {
            VolumeMount::Named { read_only, .. } | VolumeMount::Bind { read_only, .. } => *read_only,
        }
    }
}

/// Canonical text that [`parse_volume`] reads back (`:ro` only when read-only).
impl fmt::Display for VolumeMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (source, target, ro) = match self {
            VolumeMount::Named { name, target, read_only } => (name, target, read_only),
            VolumeMount::Bind { source, target, read_only } => (source, target, read_only),
        };
        write!(f, "{source}:{target}{}", if *ro { ":ro" } else { "" })
    }
}

/// Parses a volume entry; errors are user-facing (`container path "data" must be absolute`).
pub fn parse_volume(s: &str) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [source, target] => (*source, *target, false),
        [source, target, mode] => (*source, *target, parse_mode(mode)?),
        _ => return Err(format!("bad volume {s:?}: expected name:/path[:ro] or /host/path:/path[:ro]")),
    };
    check_target(target)?;
    if source.starts_with('/') {
        check_clean_path(source, "host path")?;
        return Ok(VolumeMount::Bind { source: source.into(), target: target.into(), read_only });
    }
    check_volume_name(source)?;
    Ok(VolumeMount::Named { name: source.into(), target: target.into(), read_only })
}

fn parse_mode(mode: &str) -> Result<bool, String> {
    match mode {
        "ro" => Ok(true),
        "rw" => Ok(false),
        other => Err(format!("unknown volume mode {other:?} (use ro or rw)")),
    }
}

fn check_target(target: &str) -> Result<(), String> {
    if !target.starts_with('/') {
        return Err(format!("container path {target:?} must be absolute"));
    }
    check_clean_path(target, "container path")
}

fn check_clean_path(path: &str, what: &str) -> Result<(), String> {
    if path.chars().any(char::is_control) {
        return Err(format!("{what} {path:?} contains control characters"));
    }
    Ok(())
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn check_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() >= 2 {
        Ok(())
    } else {
        Err(format!(
            "bad volume name {name:?}: use letters, digits, '_', '.', '-' (bind mounts need an absolute host path)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_bind() {
        assert_eq!(
            parse_volume("pgdata:/var/lib/postgresql/data").unwrap(),
            VolumeMount::Named { name: "pgdata".into(), target: "/var/lib/postgresql/data".into(), read_only: false }
        );
        let b = parse_volume("/etc/shop:/config:ro").unwrap();
        assert!(matches!(b, VolumeMount::Bind { read_only: true, .. }));
        assert_eq!(b.to_string(), "/etc/shop:/config:ro");
    }

    #[test]
    fn rejects() {
        assert_eq!(parse_volume("data:rel").unwrap_err(), "container path \"rel\" must be absolute");
        assert_eq!(parse_volume("data:/x:rx").unwrap_err(), "unknown volume mode \"rx\" (use ro or rw)");
        assert!(parse_volume("./data:/x").is_err());
        assert!(parse_volume("/x").is_err());
        assert!(parse_volume("a:b:c:d").is_err());
    }
}
