//! The typed form of an App's runtime fields: ports, volumes, healthchecks, restart policy, memory,
//! cpus, image references and the rollout, each read from the spec's text by one parser that
//! validation and the planner both call, so what validates is exactly what runs.
//!
//! The typed form is derived, never stored: the wire format stays the text users write.

use std::collections::BTreeMap;
use std::time::Duration;

use super::image::{parse_image, ImageRef};
use super::options::{parse_directory, ContainerOptions, Directory, Logging, RunOptions};
use super::ports::{parse_port, PortMapping};
use super::types::{Accessory, Command, Healthcheck, Role, Rollout, DEFAULT_HEALTH_TIMEOUT, DEFAULT_MAX_UNAVAILABLE};
use super::values::{parse_duration, parse_memory, parse_restart, MaxUnavailable, RestartPolicy};
use super::volumes::{parse_volume, VolumeMount};

/// A field that does not parse, located within its role or accessory (`ports` entry 1,
/// `healthcheck.interval`) or within the app's spec (`rollout.healthTimeout`): validation prefixes
/// the rest of the path, the planner names the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path below its role, accessory or spec, without a list index.
    pub field: &'static str,
    /// The entry of a list field (`ports[1]`).
    pub index: Option<usize>,
    /// The entry of a map field (`options.ulimits.nofile`).
    pub key: Option<String>,
    /// What is wrong, phrased for the user.
    pub message: String,
}

impl FieldError {
    pub(super) fn new(field: &'static str, index: Option<usize>, message: String) -> Self {
        FieldError { field, index, key: None, message }
    }

    /// The full field path under `base` (`spec.roles.web` gives `spec.roles.web.ports[1]`).
    pub fn path_under(&self, base: &str) -> String {
        let path = match self.index {
            Some(i) => format!("{base}.{}[{i}]", self.field),
            None => format!("{base}.{}", self.field),
        };
        match &self.key {
            Some(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                format!("{path}.{k}")
            }
            Some(k) => format!("{path}[{k:?}]"),
            None => path,
        }
    }
}

/// Records an error at `field` and gives back the value, if any.
pub(super) fn record<T>(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    index: Option<usize>,
    r: Result<T, String>,
) -> Option<T> {
    r.map_err(|message| errors.push(FieldError::new(field, index, message))).ok()
}

/// The first error, if any: the planner stops there, where validation reports them all.
fn first(errors: Vec<FieldError>) -> Result<(), FieldError> {
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// A healthcheck with its durations read; `None` keeps Docker's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHealthcheck {
    /// Never empty.
    pub cmd: Command,
    /// Greater than zero.
    pub interval: Option<Duration>,
    /// Greater than zero.
    pub timeout: Option<Duration>,
    /// Consecutive failures before unhealthy.
    pub retries: Option<u32>,
    /// May be zero.
    pub start_period: Option<Duration>,
}

/// Checks that a command runs something: an empty one would only fail on every host.
pub(super) fn check_command(cmd: &Command) -> Result<(), String> {
    let empty = match cmd {
        Command::Shell(s) => s.trim().is_empty(),
        Command::Exec(v) => v.first().is_none_or(|s| s.is_empty()),
    };
    if empty {
        Err("cmd must not be empty".to_string())
    } else {
        Ok(())
    }
}

/// A duration that must not be zero (intervals, timeouts).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("duration must be greater than 0".to_string()),
        d => Ok(d),
    }
}

fn parse_healthcheck(hc: &Healthcheck, errors: &mut Vec<FieldError>) -> ParsedHealthcheck {
    record(errors, "healthcheck.cmd", None, check_command(&hc.cmd));
    let mut optional = |field, text: &Option<String>, parse: fn(&str) -> Result<Duration, String>| {
        text.as_deref().and_then(|t| record(errors, field, None, parse(t)))
    };
    ParsedHealthcheck {
        cmd: hc.cmd.clone(),
        interval: optional("healthcheck.interval", &hc.interval, positive_duration),
        timeout: optional("healthcheck.timeout", &hc.timeout, positive_duration),
        retries: hc.retries,
        start_period: optional("healthcheck.startPeriod", &hc.start_period, parse_duration),
    }
}

/// What roles and accessories share: published ports, mounts and the healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedWorkload {
    /// In spec order.
    pub ports: Vec<PortMapping>,
    /// In spec order; named volumes as written (the planner scopes them to the app).
    pub volumes: Vec<VolumeMount>,
    /// Without one, "running" counts as ready.
    pub healthcheck: Option<ParsedHealthcheck>,
    /// How the container is asked to stop.
    pub stop: StopControl,
    /// The `docker run` flags of `options`.
    pub options: ContainerOptions,
    /// Its own `logging` (the planner overlays it on the App's).
    pub logging: Option<Logging>,
}

/// `stopTimeout` and `stopSignal`, as Docker takes them; `None` keeps Docker's default (10 s, the
/// image's signal), so a spec without them creates exactly the containers it did before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopControl {
    /// Whole seconds between the stop signal and the kill.
    pub timeout_secs: Option<u32>,
    /// A signal name in its `SIG` form (`SIGTERM`).
    pub signal: Option<String>,
}

/// The longest `stopTimeout`: a stop that takes longer is a hang, not a graceful exit.
const MAX_STOP_TIMEOUT_SECS: u64 = 24 * 3600;

/// The signals a process can trap to stop gracefully (SIGKILL and SIGSTOP cannot be trapped).
const STOP_SIGNALS: &[&str] =
    &["SIGHUP", "SIGINT", "SIGQUIT", "SIGABRT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGWINCH", "SIGPWR"];

/// Whole seconds from zero up to a day: Docker's `StopTimeout` is in seconds.
fn stop_timeout(text: &str) -> Result<u32, String> {
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("stopTimeout {text:?} must be a whole number of seconds"));
    }
    if d.as_secs() > MAX_STOP_TIMEOUT_SECS {
        return Err(format!("stopTimeout {text:?} is longer than 24h"));
    }
    Ok(d.as_secs() as u32)
}

/// A trappable signal by name, with or without `SIG` and in any case (`term`, `SIGTERM`).
fn stop_signal(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    if STOP_SIGNALS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(format!("stopSignal {text:?} is not one of {}", STOP_SIGNALS.join(", ")))
    }
}

impl StopControl {
    /// Reads `stopTimeout` and `stopSignal`, recording each that fails.
    fn collect(timeout: Option<&str>, signal: Option<&str>, errors: &mut Vec<FieldError>) -> Self {
        StopControl {
            timeout_secs: timeout.and_then(|t| record(errors, "stopTimeout", None, stop_timeout(t))),
            signal: signal.and_then(|s| record(errors, "stopSignal", None, stop_signal(s))),
        }
    }
}

/// The wire fields a role and an accessory share, as [`ParsedWorkload::collect`] reads them.
pub(super) struct WorkloadFields<'a> {
    pub ports: &'a [String],
    pub volumes: &'a [String],
    pub healthcheck: Option<&'a Healthcheck>,
    /// `stopTimeout` and `stopSignal`.
    pub stop: (Option<&'a String>, Option<&'a String>),
    pub options: Option<&'a RunOptions>,
    pub logging: Option<&'a Logging>,
}

impl<'a> WorkloadFields<'a> {
    pub(super) fn of_role(r: &'a Role) -> Self {
        WorkloadFields {
            ports: &r.ports,
            volumes: &r.volumes,
            healthcheck: r.healthcheck.as_ref(),
            stop: (r.stop_timeout.as_ref(), r.stop_signal.as_ref()),
            options: r.options.as_ref(),
            logging: r.logging.as_ref(),
        }
    }

    pub(super) fn of_accessory(a: &'a Accessory) -> Self {
        WorkloadFields {
            ports: &a.ports,
            volumes: &a.volumes,
            healthcheck: a.healthcheck.as_ref(),
            stop: (a.stop_timeout.as_ref(), a.stop_signal.as_ref()),
            options: a.options.as_ref(),
            logging: a.logging.as_ref(),
        }
    }
}

impl ParsedWorkload {
    /// Reads every field, recording each that fails (and leaving it out) so validation sees them all.
    pub(super) fn collect(w: &WorkloadFields<'_>, errors: &mut Vec<FieldError>) -> Self {
        let ports = w.ports.iter().enumerate().filter_map(|(i, p)| record(errors, "ports", Some(i), parse_port(p)));
        let ports: Vec<PortMapping> = ports.collect();
        let volumes =
            w.volumes.iter().enumerate().filter_map(|(i, v)| record(errors, "volumes", Some(i), parse_volume(v)));
        let volumes = volumes.collect();
        let healthcheck = w.healthcheck.map(|h| parse_healthcheck(h, errors));
        let stop = StopControl::collect(w.stop.0.map(String::as_str), w.stop.1.map(String::as_str), errors);
        let options = w.options.map(|o| ContainerOptions::collect(o, errors)).unwrap_or_default();
        if options.host_network && !w.ports.is_empty() {
            let msg = "a container on the host network publishes no ports: it listens on the host's own (remove ports or options.network)";
            errors.push(FieldError::new("ports", None, msg.to_string()));
        }
        if let Some(l) = w.logging {
            for (field, message) in l.problems() {
                errors.push(FieldError::new(field, None, message));
            }
        }
        ParsedWorkload { ports, volumes, healthcheck, stop, options, logging: w.logging.cloned() }
    }
}

/// A role's restart policy and resource limits, in Docker's units; an accessory runs with the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleLimits {
    /// `unless-stopped` unless the spec says otherwise.
    pub restart: RestartPolicy,
    /// Memory limit in bytes, greater than zero.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a core (Docker's `NanoCpus`), greater than zero.
    pub nano_cpus: Option<i64>,
}

impl RoleLimits {
    /// Reads `restart`, `memory` and `cpus`, recording each that fails.
    pub(super) fn collect(role: &Role, errors: &mut Vec<FieldError>) -> Self {
        let restart = role.restart.as_deref().and_then(|r| record(errors, "restart", None, parse_restart(r)));
        let memory = role.memory.as_deref().and_then(|m| record(errors, "memory", None, memory_bytes(m)));
        let nano_cpus = role.cpus.and_then(|c| record(errors, "cpus", None, nano_cpus(c)));
        RoleLimits { restart: restart.unwrap_or_default(), memory, nano_cpus }
    }
}

/// A memory size as Docker takes it: bytes, greater than zero, within an `i64`.
fn memory_bytes(text: &str) -> Result<i64, String> {
    match parse_memory(text)? {
        0 => Err("memory must be greater than 0".to_string()),
        bytes => i64::try_from(bytes).map_err(|_| format!("memory {text:?} out of range")),
    }
}

/// Cores as Docker takes them: billionths of a core, greater than zero, within an `i64`.
fn nano_cpus(cpus: f64) -> Result<i64, String> {
    if !(cpus.is_finite() && cpus > 0.0) {
        return Err(format!("cpus must be greater than 0 (got {cpus})"));
    }
    let nano = cpus * 1e9;
    if nano >= i64::MAX as f64 {
        return Err(format!("cpus {cpus} out of range"));
    }
    Ok(nano.round() as i64)
}

/// A role's runtime fields, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRole {
    /// Ports, volumes, healthcheck.
    pub workload: ParsedWorkload,
    /// Restart policy, memory, cpus.
    pub limits: RoleLimits,
    /// Routes through the host's proxy, when the role is proxied.
    pub proxy: Option<super::proxy::ParsedProxy>,
    /// Without a healthcheck, how long after its start a container counts as ready.
    pub readiness_delay: Option<Duration>,
}

impl ParsedRole {
    /// The typed form, or the first field (in spec order) that does not parse.
    pub fn parse(role: &Role) -> Result<ParsedRole, FieldError> {
        let mut errors = Vec::new();
        let workload = ParsedWorkload::collect(&WorkloadFields::of_role(role), &mut errors);
        let limits = RoleLimits::collect(role, &mut errors);
        let proxy = match role.proxy.as_ref().map(super::proxy::ParsedProxy::parse) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err((field, message))) => {
                errors.push(FieldError::new("proxy", None, format!("{field}: {message}")));
                None
            }
        };
        if let Some(message) = proxy_on_host_network(role, &workload) {
            errors.push(FieldError::new("options.network", None, message.to_string()));
        }
        let readiness_delay = readiness_delay(role, &mut errors);
        first(errors)?;
        Ok(ParsedRole { workload, limits, proxy, readiness_delay })
    }
}

/// A proxied role joins the proxy network, which a container on the host network cannot.
pub(super) fn proxy_on_host_network(role: &Role, workload: &ParsedWorkload) -> Option<&'static str> {
    (role.proxy.is_some() && workload.options.host_network)
        .then_some("a proxied role joins the proxy network, so it cannot use options.network: host")
}

/// `readinessDelay`, recording it when it fails.
pub(super) fn readiness_delay(role: &Role, errors: &mut Vec<FieldError>) -> Option<Duration> {
    role.readiness_delay.as_deref().and_then(|t| record(errors, "readinessDelay", None, parse_duration(t)))
}

/// An accessory's `directories`, recording each that fails.
pub(super) fn directories(acc: &Accessory, errors: &mut Vec<FieldError>) -> Vec<Directory> {
    let parsed = acc.directories.iter().enumerate();
    parsed.filter_map(|(i, d)| record(errors, "directories", Some(i), parse_directory(d))).collect()
}

/// An accessory's runtime fields, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAccessory {
    /// Its own image reference, as written (the engine pins it).
    pub image: ImageRef,
    /// Ports, volumes, healthcheck.
    pub workload: ParsedWorkload,
    /// Host directories under berth's folder for it, in spec order.
    pub directories: Vec<Directory>,
}

impl ParsedAccessory {
    /// The typed form, or the first field (in spec order) that does not parse.
    pub fn parse(acc: &Accessory) -> Result<ParsedAccessory, FieldError> {
        let mut errors = Vec::new();
        let workload = ParsedWorkload::collect(&WorkloadFields::of_accessory(acc), &mut errors);
        let image = record(&mut errors, "image", None, parse_image(&acc.image));
        let directories = directories(acc, &mut errors);
        first(errors)?;
        Ok(ParsedAccessory { image: image.expect("no error means the image parsed"), workload, directories })
    }
}

/// How a changed role is rolled across its hosts, typed; the defaults are the spec's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPolicy {
    /// How many of a role's hosts may be replaced at once.
    pub max_unavailable: MaxUnavailable,
    /// How long a new container may take to turn healthy before it is rolled back.
    pub health_timeout: Duration,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            max_unavailable: MaxUnavailable::Count(DEFAULT_MAX_UNAVAILABLE),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
        }
    }
}

impl RolloutPolicy {
    /// Reads `maxUnavailable` and `healthTimeout` (fields `rollout.*` under `spec`), recording each that fails.
    pub(super) fn collect(rollout: &Rollout, errors: &mut Vec<FieldError>) -> Self {
        let default = RolloutPolicy::default();
        let max_unavailable =
            record(errors, "rollout.maxUnavailable", None, MaxUnavailable::parse(&rollout.max_unavailable));
        let health_timeout = record(errors, "rollout.healthTimeout", None, positive_duration(&rollout.health_timeout));
        RolloutPolicy {
            max_unavailable: max_unavailable.unwrap_or(default.max_unavailable),
            health_timeout: health_timeout.unwrap_or(default.health_timeout),
        }
    }

    /// The typed form, or the first field that does not parse.
    pub fn parse(rollout: &Rollout) -> Result<RolloutPolicy, FieldError> {
        let mut errors = Vec::new();
        let policy = RolloutPolicy::collect(rollout, &mut errors);
        first(errors)?;
        Ok(policy)
    }
}

/// An App that passed validation, in its typed form: what [`super::validate_app`] hands back so
/// nothing after validation reads the spec's text again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidApp {
    /// The roles' image reference.
    pub image: ImageRef,
    /// By role name.
    pub roles: BTreeMap<String, ParsedRole>,
    /// By accessory name.
    pub accessories: BTreeMap<String, ParsedAccessory>,
    /// Batch size and health timeout of rolling replaces.
    pub rollout: RolloutPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IntOrPercent;

    fn role(json: serde_json::Value) -> Role {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn role_fields_become_docker_units() {
        let r = role(serde_json::json!({"hosts": ["h1"], "ports": ["80:8080"], "volumes": ["data:/data:ro"],
            "healthcheck": {"cmd": "true", "interval": "1m30s", "startPeriod": "0s"},
            "restart": "on-failure:3", "memory": "512m", "cpus": 1.5}));
        let p = ParsedRole::parse(&r).unwrap();
        assert_eq!(p.workload.ports, vec![parse_port("80:8080").unwrap()]);
        assert!(p.workload.volumes[0].read_only());
        let hc = p.workload.healthcheck.unwrap();
        assert_eq!((hc.interval, hc.start_period), (Some(Duration::from_secs(90)), Some(Duration::ZERO)));
        assert_eq!(p.limits.restart, RestartPolicy::OnFailure(Some(3)));
        assert_eq!((p.limits.memory, p.limits.nano_cpus), (Some(512 << 20), Some(1_500_000_000)));
    }

    #[test]
    fn stop_fields_become_seconds_and_signal_names() {
        let r = role(serde_json::json!({"hosts": ["h1"], "stopTimeout": "1m30s", "stopSignal": "usr1"}));
        let stop = ParsedRole::parse(&r).unwrap().workload.stop;
        assert_eq!(stop, StopControl { timeout_secs: Some(90), signal: Some("SIGUSR1".into()) });
        let a: Accessory =
            serde_json::from_value(serde_json::json!({"image": "redis:7", "hosts": ["h1"], "stopSignal": "SIGQUIT"}))
                .unwrap();
        let stop = ParsedAccessory::parse(&a).unwrap().workload.stop;
        assert_eq!(stop, StopControl { timeout_secs: None, signal: Some("SIGQUIT".into()) });
        let none = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"]}))).unwrap().workload.stop;
        assert_eq!(none, StopControl::default());
        let zero = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"], "stopTimeout": "0s"}))).unwrap();
        assert_eq!(zero.workload.stop.timeout_secs, Some(0));
    }

    #[test]
    fn bad_stop_fields_are_named() {
        let bad = |json| ParsedRole::parse(&role(json)).unwrap_err();
        let e = bad(serde_json::json!({"hosts": ["h1"], "stopSignal": "SIGKILL"}));
        assert_eq!(e.path_under("spec.roles.web"), "spec.roles.web.stopSignal");
        assert!(e.message.starts_with("stopSignal \"SIGKILL\" is not one of SIGHUP"), "{}", e.message);
        let e = bad(serde_json::json!({"hosts": ["h1"], "stopTimeout": "1500ms"}));
        assert_eq!(
            (e.field, e.message.as_str()),
            ("stopTimeout", "stopTimeout \"1500ms\" must be a whole number of seconds")
        );
        let e = bad(serde_json::json!({"hosts": ["h1"], "stopTimeout": "2days"}));
        assert_eq!(e.message, "stopTimeout \"2days\" is longer than 24h");
        let e = bad(serde_json::json!({"hosts": ["h1"], "stopTimeout": "soon"}));
        assert_eq!(e.message, "bad duration \"soon\"");
    }

    #[test]
    fn absent_fields_take_the_defaults() {
        let p = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"]}))).unwrap();
        assert_eq!(p.limits, RoleLimits { restart: RestartPolicy::UnlessStopped, memory: None, nano_cpus: None });
        let policy = RolloutPolicy::parse(&Rollout::default()).unwrap();
        assert_eq!(policy, RolloutPolicy::default());
        assert_eq!(policy.health_timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_first_bad_field_is_named_with_its_entry() {
        let r = role(serde_json::json!({"hosts": ["h1"], "ports": ["80:80", "80"], "memory": "0"}));
        let e = ParsedRole::parse(&r).unwrap_err();
        assert_eq!((e.field, e.index), ("ports", Some(1)));
        assert_eq!(e.path_under("spec.roles.web"), "spec.roles.web.ports[1]");
        let e = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"], "memory": "0"}))).unwrap_err();
        assert_eq!(e.message, "memory must be greater than 0");
        let e = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"], "cpus": 1e10}))).unwrap_err();
        assert_eq!(e.message, "cpus 10000000000 out of range");
        let e = ParsedRole::parse(&role(serde_json::json!({"hosts": ["h1"], "memory": "9999999999g"}))).unwrap_err();
        assert_eq!(e.message, "memory \"9999999999g\" out of range");
        let bad = Rollout { max_unavailable: IntOrPercent::Int(1), health_timeout: "0s".into() };
        let e = RolloutPolicy::parse(&bad).unwrap_err();
        assert_eq!(
            (e.path_under("spec"), e.message.as_str()),
            ("spec.rollout.healthTimeout".into(), "duration must be greater than 0")
        );
    }
}
