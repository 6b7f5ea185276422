//! Host endpoints: how berth reaches a host's Docker API.

use std::fmt;

/// A parsed `spec.endpoint`; the docker module picks its transport from the variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `unix:///var/run/docker.sock`: a local socket (absolute path).
    Unix {
        /// Absolute socket path.
        path: String,
    },
    /// `tcp://10.0.0.5:2376`: mutual TLS unless the Host says `insecure: true`.
    Tcp {
        /// Host name or IP (IPv6 bracketed).
        addr: String,
        /// Docker's TLS port is conventionally 2376.
        port: u16,
    },
    /// `ssh://deploy@10.0.0.5[:22][/run/docker.sock]`: the host's Docker socket, forwarded over SSH.
    Ssh {
        /// Login user on the host.
        user: String,
        /// Host name or IP (IPv6 bracketed).
        addr: String,
        /// SSH port; `None` means ssh's default (22 or ssh config).
        port: Option<u16>,
        /// Docker's socket on the host; `None` means `/var/run/docker.sock` (a path serves rootless Docker).
        socket: Option<String>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix { path } => write!(f, "unix://{path}"),
            Endpoint::Tcp { addr, port } => write!(f, "tcp://{addr}:{port}"),
            Endpoint::Ssh { user, addr, port, socket } => {
                write!(f, "ssh://{user}@{addr}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                f.write_str(socket.as_deref().unwrap_or(""))
            }
        }
    }
}

/// Parses an endpoint; errors are user-facing and name the accepted forms.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        return parse_unix(path);
    }
    if let Some(rest) = s.strip_prefix("tcp://") {
        let (addr, port) =
            split_addr_port(rest).ok_or_else(|| format!("bad tcp endpoint {s:?}: expected tcp://ADDR:PORT"))?;
        let port = port.ok_or_else(|| format!("bad tcp endpoint {s:?}: expected tcp://ADDR:PORT"))?;
        return Ok(Endpoint::Tcp { addr, port });
    }
    if let Some(rest) = s.strip_prefix("ssh://") {
        return parse_ssh(s, rest);
    }
    Err(format!("unsupported endpoint {s:?}: use unix:///path, tcp://ADDR:PORT or ssh://user@addr[:port]"))
}

fn parse_unix(path: &str) -> Result<Endpoint, String> {
    if path.starts_with('/') && path.len() > 1 {
        Ok(Endpoint::Unix { path: path.to_string() })
    } else {
        Err(format!("unix socket path {path:?} must be absolute (unix:///path)"))
    }
}

fn parse_ssh(whole: &str, rest: &str) -> Result<Endpoint, String> {
    let bad = || format!("bad ssh endpoint {whole:?}: expected ssh://user@addr[:port][/docker/socket/path]");
    let (user, host) = rest.split_once('@').ok_or_else(bad)?;
    let user_ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !user_ok {
        return Err(bad());
    }
    let (host, socket) = match host.find('/') {
        Some(i) => (&host[..i], Some(&host[i..])),
        None => (host, None),
    };
    if socket.is_some_and(|s| s.len() < 2 || s.ends_with('/') || s.contains("//") || s.chars().any(char::is_whitespace))
    {
        return Err(bad());
    }
    let (addr, port) = split_addr_port(host).ok_or_else(bad)?;
    Ok(Endpoint::Ssh { user: user.to_string(), addr, port, socket: socket.map(str::to_string) })
}

/// Splits `addr[:port]` (IPv6 bracketed) and checks both halves; `None` when malformed.
fn split_addr_port(s: &str) -> Option<(String, Option<u16>)> {
    let (addr, port) = if s.starts_with('[') {
        let end = s.find(']')? + 1;
        match &s[end..] {
            "" => (&s[..end], None),
            p => (&s[..end], Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    if !addr_ok(addr) {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&n| n > 0)?)
        }
        Some(_) => return None,
        None => None,
    };
    Some((addr.to_string(), port))
}

fn addr_ok(addr: &str) -> bool {
    if let Some(v6) = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !addr.is_empty()
        && addr
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !c.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_schemes() {
        assert_eq!(
            parse_endpoint("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix { path: "/var/run/docker.sock".into() }
        );
        assert_eq!(
            parse_endpoint("tcp://10.0.0.5:2376").unwrap(),
            Endpoint::Tcp { addr: "10.0.0.5".into(), port: 2376 }
        );
        assert_eq!(
            parse_endpoint("ssh://deploy@web-1.example.com:2222").unwrap(),
            Endpoint::Ssh { user: "deploy".into(), addr: "web-1.example.com".into(), port: Some(2222), socket: None }
        );
        let rootless = parse_endpoint("ssh://deploy@10.0.0.5/run/user/1000/docker.sock").unwrap();
        assert_eq!(
            rootless,
            Endpoint::Ssh {
                user: "deploy".into(),
                addr: "10.0.0.5".into(),
                port: None,
                socket: Some("/run/user/1000/docker.sock".into())
            }
        );
        assert_eq!(rootless.to_string(), "ssh://deploy@10.0.0.5/run/user/1000/docker.sock");
        assert_eq!(parse_endpoint("tcp://[::1]:2376").unwrap().to_string(), "tcp://[::1]:2376");
    }

    #[test]
    fn rejects() {
        for bad in [
            "http://x",
            "unix://var/run/docker.sock",
            "tcp://host",
            "tcp://host:0",
            "tcp://:80",
            "ssh://host",
            "ssh://@h",
            "ssh://u@h/",
            "ssh://u@h:22/a//b",
            "tcp://h:99999",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
