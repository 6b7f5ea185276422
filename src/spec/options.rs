//! What a Kamal deploy sets beyond ports and volumes: a typed subset of `docker run` flags
//! (`options`), Docker's logging, and an accessory's host directories. Each is the wire type users
//! write plus one parser per value into the typed form the planner builds containers from, read
//! through [`super::typed`] by validation and the planner alike (errors located below the role or
//! accessory, as `options.ulimits.nofile`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::typed::{record, FieldError};
use super::values::parse_memory;
use super::volumes::{parse_volume, VolumeMount};

/// Docker's log driver and its options (`--log-driver`, `--log-opt`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// `json-file`, `local`, `syslog`, `journald`, a plugin's name, …; default the daemon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The driver's options, such as `max-size: 10m`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl Logging {
    /// `(field, message)` for each bad value: a driver is one word, an option has a name.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(d) = &self.driver {
            if d.is_empty() || d.chars().any(|c| c.is_whitespace() || c.is_control()) {
                out.push(("logging.driver", format!("log driver {d:?} must be one word such as \"json-file\"")));
            }
        }
        for key in self.options.keys() {
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c == '=') {
                out.push(("logging.options", format!("log option name {key:?} must be one word without '='")));
            }
        }
        out
    }

    /// A role's or accessory's `own` logging over the App's: its driver wins, and its options are
    /// added to the App's — unless it names another driver, which takes only its own options (the
    /// App's would be unknown to it). `None` keeps the daemon's default.
    pub fn overlay(app: Option<&Logging>, own: Option<&Logging>) -> Option<Logging> {
        let some = |l: &&Logging| **l != Logging::default();
        match (app.filter(some), own.filter(some)) {
            (None, None) => None,
            (Some(l), None) | (None, Some(l)) => Some(l.clone()),
            (Some(app), Some(own)) => {
                let other_driver = own.driver.is_some() && own.driver != app.driver;
                let mut options = if other_driver { BTreeMap::new() } else { app.options.clone() };
                options.extend(own.options.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(Logging { driver: own.driver.clone().or_else(|| app.driver.clone()), options })
            }
        }
    }
}

/// A typed subset of `docker run` flags, as Kamal's `options` carries them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunOptions {
    /// `name:ip` lines for the container's /etc/hosts (`--add-host`); the ip `host-gateway` is the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<String>,
    /// Linux capabilities to add (`NET_ADMIN`, `SYS_PTRACE`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Host devices, `/dev/host[:/dev/container[:rwm]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Resource limits by name (`nofile: "1024:2048"`, soft and hard, or one number for both).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, UlimitValue>,
    /// Size of /dev/shm (`64m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// `user[:group]`, by name or id (`1000:1000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The working directory, an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `host`: the container shares the host's network, joins no app network and publishes no ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// A ulimit as written: a number, or `"soft:hard"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UlimitValue {
    Number(i64),
    Text(String),
}

/// The typed form of [`RunOptions`], as Docker's create call takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOptions {
    /// In spec order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_display_list")]
    pub extra_hosts: Vec<ExtraHost>,
    /// Upper case, without `CAP_`, in spec order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// In spec order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_display_list")]
    pub devices: Vec<Device>,
    /// By name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Bytes, greater than zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The host's network instead of the app network.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
}

impl ContainerOptions {
    /// Reads `options`, each flag by its own parser, recording each that fails at its path below the
    /// role or accessory (`options.ulimits.nofile`).
    pub(super) fn collect(o: &RunOptions, errors: &mut Vec<FieldError>) -> ContainerOptions {
        fn each<T>(
            errors: &mut Vec<FieldError>,
            field: &'static str,
            items: &[String],
            parse: fn(&str) -> Result<T, String>,
        ) -> Vec<T> {
            items.iter().enumerate().filter_map(|(i, t)| record(errors, field, Some(i), parse(t))).collect()
        }
        let extra_hosts = each(errors, "options.addHosts", &o.add_hosts, parse_add_host);
        let cap_add = each(errors, "options.capAdd", &o.cap_add, parse_capability);
        let devices = each(errors, "options.devices", &o.devices, parse_device);
        let mut ulimits = Vec::new();
        for (name, value) in &o.ulimits {
            match parse_ulimit(name, value) {
                Ok(u) => ulimits.push(u),
                Err(message) => {
                    errors.push(FieldError { field: "options.ulimits", index: None, key: Some(name.clone()), message })
                }
            }
        }
        let mut optional = |field, text: &Option<String>, parse: fn(&str) -> Result<String, String>| {
            text.as_deref().and_then(|t| record(errors, field, None, parse(t)))
        };
        let user = optional("options.user", &o.user, parse_user);
        let workdir = optional("options.workdir", &o.workdir, parse_workdir);
        let shm_size = o.shm_size.as_deref().and_then(|t| record(errors, "options.shmSize", None, parse_shm_size(t)));
        let host_network = o
            .network
            .as_deref()
            .and_then(|t| record(errors, "options.network", None, parse_network(t)))
            .unwrap_or(false);
        ContainerOptions { extra_hosts, cap_add, devices, ulimits, shm_size, user, workdir, host_network }
    }
}

fn ser_display_list<T: fmt::Display, S: serde::Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(|i| i.to_string()))
}

/// One /etc/hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub name: String,
    pub address: HostAddress,
}

/// Where an extra host name points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAddress {
    Ip(IpAddr),
    /// Docker's `host-gateway`: the host itself.
    Gateway,
}

impl fmt::Display for ExtraHost {
    /// Docker's `name:ip` (split at the first `:`, so an IPv6 address stays whole).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            HostAddress::Ip(ip) => write!(f, "{}:{ip}", self.name),
            HostAddress::Gateway => write!(f, "{}:host-gateway", self.name),
        }
    }
}

/// A host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: String,
    pub container: String,
    /// Some of `r`, `w`, `m`, each once.
    pub permissions: String,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.container, self.permissions)
    }
}

/// A resource limit, soft and hard (`-1`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// An accessory's host directory: `name` under the accessory's own folder on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

/// Where accessories' directories live on a host, per app and namespace.
pub const DIRECTORIES_ROOT: &str = "/var/lib/berth";

impl Directory {
    /// `/var/lib/berth/{app}-{namespace}/{accessory}/{name}`.
    pub fn host_path(&self, app: &str, namespace: &str, accessory: &str) -> String {
        format!("{DIRECTORIES_ROOT}/{app}-{namespace}/{accessory}/{}", self.name)
    }
}

/// `name:ip` or `name:host-gateway`.
pub fn parse_add_host(text: &str) -> Result<ExtraHost, String> {
    let bad = || format!("bad addHosts entry {text:?}: expected name:ip (or name:host-gateway)");
    let (name, ip) = text.split_once(':').ok_or_else(bad)?;
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if !name_ok {
        return Err(format!("bad addHosts entry {text:?}: {name:?} is not a host name"));
    }
    let address = match ip {
        "host-gateway" => HostAddress::Gateway,
        ip => HostAddress::Ip(ip.parse().map_err(|_| format!("bad addHosts entry {text:?}: bad ip {ip:?}"))?),
    };
    Ok(ExtraHost { name: name.to_string(), address })
}

/// A capability name in Docker's form: upper case, `CAP_` dropped (`net_admin` → `NET_ADMIN`); `ALL` too.
pub fn parse_capability(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("bad capability {text:?}: expected a name such as NET_ADMIN"));
    }
    Ok(name.to_string())
}

/// `/dev/host[:/dev/container[:perms]]`; the container path defaults to the host's, the
/// permissions to `rwm`.
pub fn parse_device(text: &str) -> Result<Device, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, p] if !p.starts_with('/') => (*host, *host, *p),
        [host, container] => (*host, *container, "rwm"),
        [host, container, p] => (*host, *container, *p),
        _ => return Err(format!("bad device {text:?}: expected /dev/host[:/dev/container[:rwm]]")),
    };
    for (what, path) in [("host path", host), ("container path", container)] {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("bad device {text:?}: {what} {path:?} must be absolute"));
        }
    }
    let mut seen = String::new();
    for c in permissions.chars() {
        if !"rwm".contains(c) || seen.contains(c) {
            return Err(format!("bad device {text:?}: permissions {permissions:?} are some of r, w and m"));
        }
        seen.push(c);
    }
    if permissions.is_empty() {
        return Err(format!("bad device {text:?}: permissions {permissions:?} are some of r, w and m"));
    }
    Ok(Device { host: host.into(), container: container.into(), permissions: permissions.into() })
}

/// The resource names Docker's `--ulimit` takes.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `name: soft[:hard]` (a number, `-1` for unlimited; one number is both).
pub fn parse_ulimit(name: &str, value: &UlimitValue) -> Result<Ulimit, String> {
    if !ULIMITS.contains(&name) {
        return Err(format!("unknown ulimit {name:?} (use one of {})", ULIMITS.join(", ")));
    }
    let number = |t: &str| -> Result<i64, String> {
        match t.trim().parse::<i64>() {
            Ok(n) if n >= -1 => Ok(n),
            _ => Err(format!("bad ulimit {name}: {t:?} is not a number (or -1 for unlimited)")),
        }
    };
    let (soft, hard) = match value {
        UlimitValue::Number(n) => (number(&n.to_string())?, number(&n.to_string())?),
        UlimitValue::Text(t) => match t.split_once(':') {
            Some((s, h)) => (number(s)?, number(h)?),
            None => (number(t)?, number(t)?),
        },
    };
    let unlimited = |n: i64| n == -1;
    if unlimited(soft) && !unlimited(hard) || (!unlimited(hard) && soft > hard) {
        return Err(format!("bad ulimit {name}: soft limit {soft} is above the hard limit {hard}"));
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

/// A size such as `64m`, in bytes, greater than zero.
pub fn parse_shm_size(text: &str) -> Result<i64, String> {
    match parse_memory(text)? {
        0 => Err("shmSize must be greater than 0".to_string()),
        n => i64::try_from(n).map_err(|_| format!("shmSize {text:?} out of range")),
    }
}

/// `user[:group]`, names or ids, no spaces.
pub fn parse_user(text: &str) -> Result<String, String> {
    let part_ok = |p: &str| {
        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '$')
    };
    let ok = match text.split_once(':') {
        Some((u, g)) => part_ok(u) && part_ok(g),
        None => part_ok(text),
    };
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("bad user {text:?}: expected user[:group], by name or id (1000:1000)"))
    }
}

/// An absolute path.
pub fn parse_workdir(text: &str) -> Result<String, String> {
    if text.starts_with('/') && !text.chars().any(char::is_control) {
        Ok(text.to_string())
    } else {
        Err(format!("workdir {text:?} must be an absolute path"))
    }
}

/// `host`, the only network mode besides the app network (the default); `true` for it.
pub fn parse_network(text: &str) -> Result<bool, String> {
    match text {
        "host" => Ok(true),
        other => {
            Err(format!("network {other:?} is not supported: use \"host\", or leave it out for the app's own network"))
        }
    }
}

/// `name:/path[:ro]`: a plain name (its host path is berth's), never a host path.
pub fn parse_directory(text: &str) -> Result<Directory, String> {
    match parse_volume(text) {
        Ok(VolumeMount::Named { name, target, read_only }) => Ok(Directory { name, target, read_only }),
        Ok(VolumeMount::Bind { .. }) => Err(format!(
            "directory {text:?} names a host path: a directory is a name under {DIRECTORIES_ROOT}/APP-NAMESPACE/ACCESSORY (mount a host path with volumes)"
        )),
        Err(e) => Err(e.replace("bad volume", "bad directory").replace("name:/path[:ro] or /host/path:/path[:ro]", "name:/path[:ro]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_parses_into_docker_form() {
        assert_eq!(parse_add_host("db.local:10.0.0.5").unwrap().to_string(), "db.local:10.0.0.5");
        assert_eq!(parse_add_host("gw:host-gateway").unwrap().address, HostAddress::Gateway);
        assert_eq!(parse_add_host("v6:::1").unwrap().to_string(), "v6:::1");
        assert_eq!(parse_capability("cap_net_admin").unwrap(), "NET_ADMIN");
        assert_eq!(parse_device("/dev/fuse").unwrap().to_string(), "/dev/fuse:/dev/fuse:rwm");
        assert_eq!(parse_device("/dev/sda:r").unwrap().to_string(), "/dev/sda:/dev/sda:r");
        assert_eq!(parse_device("/dev/a:/dev/b").unwrap().to_string(), "/dev/a:/dev/b:rwm");
        let u = parse_ulimit("nofile", &UlimitValue::Text("1024:2048".into())).unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        let u = parse_ulimit("nproc", &UlimitValue::Number(512)).unwrap();
        assert_eq!((u.soft, u.hard), (512, 512));
        assert_eq!(parse_shm_size("64m").unwrap(), 64 << 20);
        assert!(parse_network("host").unwrap());
        let d = parse_directory("data:/var/lib/mysql").unwrap();
        assert_eq!(d.host_path("shop", "prod", "db"), "/var/lib/berth/shop-prod/db/data");
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        assert_eq!(
            parse_add_host("db").unwrap_err(),
            "bad addHosts entry \"db\": expected name:ip (or name:host-gateway)"
        );
        assert_eq!(
            parse_add_host("db:10.0.0.300").unwrap_err(),
            "bad addHosts entry \"db:10.0.0.300\": bad ip \"10.0.0.300\""
        );
        assert!(parse_capability("NET ADMIN").is_err());
        assert!(parse_device("fuse").unwrap_err().contains("must be absolute"));
        assert!(parse_device("/dev/fuse:/dev/fuse:rx").unwrap_err().contains("some of r, w and m"));
        assert!(parse_ulimit("files", &UlimitValue::Number(1)).unwrap_err().starts_with("unknown ulimit"));
        assert_eq!(
            parse_ulimit("nofile", &UlimitValue::Text("2048:1024".into())).unwrap_err(),
            "bad ulimit nofile: soft limit 2048 is above the hard limit 1024"
        );
        assert!(parse_user("1000 : 1000").is_err());
        assert!(parse_workdir("app").is_err());
        assert!(parse_network("bridge").is_err());
        assert!(parse_directory("/srv/data:/data").unwrap_err().contains("names a host path"));
    }

    #[test]
    fn logging_overlays_the_apps() {
        let l = |d: Option<&str>, o: &[(&str, &str)]| Logging {
            driver: d.map(str::to_string),
            options: o.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let app = l(Some("json-file"), &[("max-size", "10m"), ("max-file", "3")]);
        let own = l(None, &[("max-size", "1m")]);
        let merged = Logging::overlay(Some(&app), Some(&own)).unwrap();
        assert_eq!(merged, l(Some("json-file"), &[("max-size", "1m"), ("max-file", "3")]));
        let other = l(Some("syslog"), &[]);
        assert_eq!(Logging::overlay(Some(&app), Some(&other)).unwrap(), other);
        assert_eq!(Logging::overlay(None, None), None);
        assert_eq!(Logging::overlay(Some(&Logging::default()), None), None, "an empty section is none");
    }
}
