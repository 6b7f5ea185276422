//! Image references, checked against Docker's reference grammar without regexes so a typo is
//! caught at `berth validate` time rather than as a pull failure on every host.

/// A parsed image reference (`registry:5000/team/app:tag@sha256:...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host[:port], when the first path component names one.
    pub registry: Option<String>,
    /// Slash-separated lowercase path (`team/app`).
    pub repository: String,
    /// `[\w][\w.-]{0,127}`; `None` means Docker's `latest`.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The reference Docker pulls when neither tag nor digest is given: `:latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// Whether the reference names one image for ever (it carries a digest), so it needs no
    /// resolving and a host that holds it need not pull it again; a tag may move.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// `registry:5000/team/app`: the reference without tag and digest, which a digest is appended to.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }
}

/// The reference exactly as written: parsing keeps every part verbatim, so this reads back equal.
impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Parses an image reference; errors read `bad image "Shop:1": repository must be lowercase`.
pub fn parse_image(s: &str) -> Result<ImageRef, String> {
    if s.is_empty() {
        return Err("image must not be empty".to_string());
    }
    parse_parts(s).map_err(|why| format!("bad image {s:?}: {why}"))
}

fn parse_parts(s: &str) -> Result<ImageRef, String> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => (rest, Some(check_digest(d)?)),
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (registry, repository) = split_registry(name);
    if let Some(r) = registry {
        check_registry(r)?;
    }
    check_repository(repository)?;
    if name.len() > 255 {
        return Err("name longer than 255 characters".to_string());
    }
    Ok(ImageRef {
        registry: registry.map(str::to_string),
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest,
    })
}

fn check_digest(d: &str) -> Result<String, String> {
    let hex = d.strip_prefix("sha256:").ok_or("digest must be sha256:<64 hex digits>")?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(d.to_string())
    } else {
        Err("digest must be sha256:<64 hex digits>".to_string())
    }
}

/// A `:` after the last `/` starts the tag; earlier ones belong to a registry port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

fn check_tag(t: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = t.chars();
    let first_ok = chars.next().is_some_and(word);
    if first_ok && chars.all(|c| word(c) || c == '.' || c == '-') && t.len() <= 128 {
        Ok(())
    } else {
        Err(format!("bad tag {t:?}"))
    }
}

/// Docker's rule: the first component is a registry if it has `.` or `:`, is `localhost`, or
/// has uppercase letters (which a repository path never has).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(r: &str) -> Result<(), String> {
    let bad = || format!("bad registry {r:?}");
    let (host, port) = split_host_port(r).ok_or_else(bad)?;
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.split('.').all(domain_component_ok),
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Splits `host[:port]` where host may be a bracketed IPv6 address.
fn split_host_port(r: &str) -> Option<(&str, Option<&str>)> {
    if r.starts_with('[') {
        let end = r.find(']')? + 1;
        let rest = &r[end..];
        return match rest.strip_prefix(':') {
            Some(p) => Some((&r[..end], Some(p))),
            None if rest.is_empty() => Some((&r[..end], None)),
            None => None,
        };
    }
    Some(match r.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    })
}

fn domain_component_ok(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
}

fn check_repository(repo: &str) -> Result<(), String> {
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository must be lowercase".to_string());
    }
    if repo.split('/').all(path_component_ok) {
        Ok(())
    } else {
        Err(format!("bad repository {repo:?}"))
    }
}

/// `[a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*`
fn path_component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        if !separator_ok(&c[start..i]) {
            return false;
        }
    }
    true
}

fn separator_ok(sep: &str) -> bool {
    matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_references() {
        for ok in [
            "nginx",
            "nginx:1.27-alpine",
            "library/postgres:16",
            "ghcr.io/acme/shop:v1.2.3",
            "localhost:5000/shop",
            "registry.example.com:5000/team/app_name__x/y-z:tag",
            "[::1]:5000/shop:1",
            "redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "redis:7@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse_image(ok).is_ok(), "{ok}: {:?}", parse_image(ok));
        }
        let r = parse_image("localhost:5000/shop").unwrap();
        assert_eq!((r.registry.as_deref(), r.repository.as_str(), r.tag), (Some("localhost:5000"), "shop", None));
    }

    #[test]
    fn pinned_references_carry_a_digest() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let pinned = parse_image(&format!("localhost:5000/team/shop:1@{digest}")).unwrap();
        assert!(pinned.is_pinned());
        assert_eq!(pinned.name(), "localhost:5000/team/shop");
        let tagged = parse_image("localhost:5000/team/shop:1").unwrap();
        assert!(!tagged.is_pinned());
        assert_eq!(tagged.name(), "localhost:5000/team/shop");
        for text in ["nginx", "[::1]:5000/shop:1", &format!("redis@{digest}"), &format!("a.b/c:7@{digest}")] {
            assert_eq!(parse_image(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_references() {
        assert_eq!(parse_image("").unwrap_err(), "image must not be empty");
        assert_eq!(parse_image("Shop:1").unwrap_err(), "bad image \"Shop:1\": repository must be lowercase");
        for bad in ["shop:", "shop@sha256:abc", "a//b", "-a", "a..b", "shop:-x", "x/", "bad host!/a", "shop@md5:00"] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }
}
