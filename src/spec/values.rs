//! Small scalar forms shared by validation, the planner and the engine: names, durations,
//! memory sizes, restart policies, `maxUnavailable`.

use std::time::Duration;

use super::types::IntOrPercent;

/// Longest DNS label (RFC 1123), which bounds names used in container names and network aliases.
pub const MAX_NAME_LEN: usize = 63;

/// Checks that a name is a DNS label, because names become container names, network aliases
/// and etcd keys; the error names the offending value.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    let chars_ok = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = !name.starts_with('-') && !name.ends_with('-');
    if !name.is_empty() && name.len() <= MAX_NAME_LEN && chars_ok && ends_ok {
        return Ok(());
    }
    Err(format!(
        "{name:?} is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    ))
}

/// Parses a human duration (`5s`, `1m30s`, `250ms`); the error is `bad duration "5x"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| format!("bad duration {s:?}"))
}

/// Parses a memory size `^\d+[bkmg]?$` into bytes (`512m`, `1g`; no suffix means bytes).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let bad = || format!("bad memory {s:?}: expected a number with an optional b, k, m or g suffix (e.g. 512m)");
    let (digits, unit) = match s.as_bytes().last() {
        Some(b'b') => (&s[..s.len() - 1], 1u64),
        Some(b'k') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| format!("memory {s:?} out of range"))?;
    n.checked_mul(unit).ok_or_else(|| format!("memory {s:?} out of range"))
}

/// A Docker restart policy, as the engine passes it to Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Never restart (one-shot tasks).
    No,
    /// Restart always, even after a manual stop once the daemon restarts.
    Always,
    /// berth's default: survives daemon restarts but respects a manual stop.
    #[default]
    UnlessStopped,
    /// Restart on non-zero exit, at most `N` times when given.
    OnFailure(Option<u32>),
}

/// Parses `no`, `always`, `unless-stopped` or `on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let bad = || format!("bad restart policy {s:?} (use no, always, unless-stopped or on-failure[:N])");
    match s {
        "no" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure(None)),
        _ => {
            let n = s.strip_prefix("on-failure:").ok_or_else(bad)?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map(|n| RestartPolicy::OnFailure(Some(n))).map_err(|_| bad())
        }
    }
}

/// Parses the `"N%"` form of `maxUnavailable`, accepting 1..=100.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let bad = || format!("bad maxUnavailable {s:?}: expected a count or a percentage such as \"25%\"");
    let digits = s.strip_suffix('%').ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match digits.parse::<u64>() {
        Ok(n @ 1..=100) => Ok(n as u32),
        _ => Err(format!("maxUnavailable {s:?} out of range (1%..100%)")),
    }
}

/// `maxUnavailable`, typed: a count of hosts or a percentage of a role's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxUnavailable {
    /// At least 1.
    Count(u32),
    /// 1..=100.
    Percent(u32),
}

impl MaxUnavailable {
    /// Reads the spec's value; 0 and percentages outside 1..=100 are refused.
    pub fn parse(v: &IntOrPercent) -> Result<MaxUnavailable, String> {
        match v {
            IntOrPercent::Int(0) => Err("maxUnavailable must be at least 1".to_string()),
            IntOrPercent::Int(n) => Ok(MaxUnavailable::Count(*n)),
            IntOrPercent::Percent(p) => parse_percent(p).map(MaxUnavailable::Percent),
        }
    }

    /// How many of `hosts` may be down at once during a rollout.
    ///
    /// Percentages round down; the result is never below 1 (a rollout must make progress) and never
    /// above the number of hosts.
    pub fn at_once(self, hosts: usize) -> usize {
        let raw = match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(pct) => hosts * pct as usize / 100,
        };
        raw.clamp(1, hosts.max(1))
    }
}

/// Checks a `maxUnavailable` value the same way [`max_unavailable`] will read it.
pub fn check_max_unavailable(v: &IntOrPercent) -> Result<(), String> {
    MaxUnavailable::parse(v).map(|_| ())
}

/// [`MaxUnavailable::at_once`] of the spec's value; invalid values (rejected by validation) count as 1.
pub fn max_unavailable(v: &IntOrPercent, hosts: usize) -> usize {
    MaxUnavailable::parse(v).unwrap_or(MaxUnavailable::Count(1)).at_once(hosts)
}

/// Checks an environment variable name: Docker passes `KEY=value`, so a key may be neither empty
/// nor contain `=` (or NUL).
pub fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        Err("env key must not be empty".to_string())
    } else if key.contains('=') {
        Err(format!("env key {key:?} must not contain '='"))
    } else if key.contains('\0') {
        Err(format!("env key {key:?} must not contain NUL"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_dns_label("web-1").is_ok());
        for bad in ["", "Web", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_memory() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5x").unwrap_err(), "bad duration \"5x\"");
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("100").unwrap(), 100);
        assert!(parse_memory("1.5g").is_err());
        assert!(parse_memory("m").is_err());
        assert!(parse_memory("99999999999999999999g").is_err());
    }

    #[test]
    fn restart() {
        assert_eq!(parse_restart("on-failure:3").unwrap(), RestartPolicy::OnFailure(Some(3)));
        assert_eq!(parse_restart("no").unwrap(), RestartPolicy::No);
        assert!(parse_restart("on-failure:").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn max_unavailable_rounds_down_min_one() {
        let pct = |s: &str| IntOrPercent::Percent(s.to_string());
        assert_eq!(max_unavailable(&pct("25%"), 10), 2);
        assert_eq!(max_unavailable(&pct("25%"), 3), 1);
        assert_eq!(max_unavailable(&pct("100%"), 4), 4);
        assert_eq!(max_unavailable(&IntOrPercent::Int(2), 5), 2);
        assert_eq!(max_unavailable(&IntOrPercent::Int(9), 3), 3);
        assert_eq!(max_unavailable(&IntOrPercent::Int(0), 3), 1);
        assert!(check_max_unavailable(&pct("150%")).is_err());
        assert!(check_max_unavailable(&pct("abc")).is_err());
        assert!(check_max_unavailable(&IntOrPercent::Int(0)).is_err());
    }
}
