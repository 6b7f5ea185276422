//! Published ports: `[ip:]hostPort:containerPort[/tcp|udp]`, parsed once for validation,
//! the planner and the Docker engine alike.

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// Docker's default when a port names no protocol.
    #[default]
    Tcp,
    /// Datagram ports (DNS, syslog, ...).
    Udp,
}

impl Protocol {
    /// The lowercase name Docker uses in port keys (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host port forwarded to one container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    /// The host address to bind; `None` means every address.
    pub host_ip: Option<IpAddr>,
    /// The port on the host (1..=65535).
    pub host_port: u16,
    /// The port inside the container (1..=65535).
    pub container_port: u16,
    /// tcp unless the entry says `/udp`.
    pub protocol: Protocol,
}

impl PortMapping {
    /// True when both mappings would bind the same host socket, so Docker would refuse the second.
    ///
    /// An unspecified (or `0.0.0.0`/`::`) address overlaps every address of the host.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.host_port == other.host_port && self.protocol == other.protocol && ips_overlap(self.host_ip, other.host_ip)
    }
}

fn ips_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) if !x.is_unspecified() && !y.is_unspecified() => x == y,
        _ => true,
    }
}

/// Canonical text (`[ip:]host:container/proto`, IPv6 bracketed) that [`parse_port`] reads back.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        write!(f, "{}:{}/{}", self.host_port, self.container_port, self.protocol)
    }
}

/// Parses `[ip:]hostPort:containerPort[/tcp|udp]` (IPv6 as `[::1]:80:80`); the error is a
/// user-facing message such as `host port 70000 out of range`.
pub fn parse_port(s: &str) -> Result<PortMapping, String> {
    let (rest, protocol) = split_protocol(s)?;
    let (rest, container) = rest.rsplit_once(':').ok_or_else(|| syntax(s))?;
    let (ip, host) = match rest.rsplit_once(':') {
        Some((ip, host)) => (Some(ip), host),
        None => (None, rest),
    };
    let host_ip = ip.map(|ip| parse_ip(ip, s)).transpose()?;
    let host_port = parse_number(host, "host", s)?;
    let container_port = parse_number(container, "container", s)?;
    Ok(PortMapping { host_ip, host_port, container_port, protocol })
}

fn syntax(s: &str) -> String {
    format!("bad port {s:?}: expected [ip:]hostPort:containerPort[/tcp|udp]")
}

fn split_protocol(s: &str) -> Result<(&str, Protocol), String> {
    match s.rsplit_once('/') {
        None => Ok((s, Protocol::Tcp)),
        Some((rest, "tcp")) => Ok((rest, Protocol::Tcp)),
        Some((rest, "udp")) => Ok((rest, Protocol::Udp)),
        Some((_, other)) => Err(format!("unknown protocol {other:?} (use tcp or udp)")),
    }
}

fn parse_ip(ip: &str, whole: &str) -> Result<IpAddr, String> {
    let bare = match ip.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(|| format!("bad ip {ip:?}"))?,
        None if ip.contains(':') => return Err(format!("bad ip {ip:?}: write IPv6 as [addr] in {whole:?}")),
        None => ip,
    };
    bare.parse::<IpAddr>().map_err(|_| format!("bad ip {ip:?}"))
}

fn parse_number(text: &str, which: &str, whole: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(whole));
    }
    match text.parse::<u64>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("{which} port {text} out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let m = parse_port("8080:80").unwrap();
        assert_eq!((m.host_ip, m.host_port, m.container_port, m.protocol), (None, 8080, 80, Protocol::Tcp));
        let m = parse_port("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.protocol, Protocol::Udp);
        assert_eq!(parse_port("[::1]:80:80").unwrap().host_ip, Some("::1".parse().unwrap()));
        assert_eq!(parse_port("[::1]:80:80").unwrap().to_string(), "[::1]:80:80/tcp");
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(parse_port("70000:80").unwrap_err(), "host port 70000 out of range");
        assert_eq!(parse_port("80:0").unwrap_err(), "container port 0 out of range");
        assert_eq!(parse_port("80:80/sctp").unwrap_err(), "unknown protocol \"sctp\" (use tcp or udp)");
        assert_eq!(parse_port("1.2.3.999:80:80").unwrap_err(), "bad ip \"1.2.3.999\"");
        assert!(parse_port("80").is_err());
        assert!(parse_port("a:80").is_err());
        assert!(parse_port("::1:80:80").is_err());
    }

    #[test]
    fn conflicts_consider_wildcards() {
        let any = parse_port("80:80").unwrap();
        let local = parse_port("127.0.0.1:80:81").unwrap();
        let other = parse_port("10.0.0.1:80:80").unwrap();
        assert!(any.conflicts_with(&local));
        assert!(!local.conflicts_with(&other));
        assert!(!any.conflicts_with(&parse_port("80:80/udp").unwrap()));
    }
}
