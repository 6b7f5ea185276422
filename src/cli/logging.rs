//! Logging on stderr, text or JSON, filtered by `BERTH_LOG` (an `EnvFilter`).
//!
//! Dependencies dump request and response bodies at debug and trace: bollard logs the body of
//! every Docker request, env values included, and the etcd client stack (tonic, h2, hyper) logs
//! frames. So whatever `BERTH_LOG` says, every target outside berth is capped at info unless the
//! filter names that target itself: `BERTH_LOG=trace` is berth at trace and bollard at info;
//! `BERTH_LOG=trace,bollard=trace` is the user's explicit choice.

use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use super::LogFormat;

/// berth's own target: never capped.
const OWN_TARGET: &str = "berth";

/// The most verbose level a target outside berth reaches unless `BERTH_LOG` names it.
const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;

/// Installs the global subscriber (and the `log` bridge, for crates such as bollard that log
/// through `log`); `default_level` applies when `BERTH_LOG` is unset or does not parse.
pub fn init(format: LogFormat, default_level: &str) {
    let spec = std::env::var("BERTH_LOG").ok().filter(|s| EnvFilter::try_new(s).is_ok());
    let filter = EnvFilter::new(spec.as_deref().unwrap_or(default_level));
    let cap = dependency_cap(spec.as_deref().unwrap_or(""));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour);
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    let _ = match format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
}

/// The second filter every event passes: berth and the targets `spec` names at any level, every
/// other target at most [`DEPENDENCY_CAP`].
pub fn dependency_cap(spec: &str) -> Targets {
    let named = named_targets(spec);
    let mut cap = Targets::new().with_default(DEPENDENCY_CAP).with_target(OWN_TARGET, LevelFilter::TRACE);
    for target in named {
        cap = cap.with_target(target, LevelFilter::TRACE);
    }
    cap
}

/// The targets an `EnvFilter` spec names (`bollard` in `trace,bollard=trace`, `h2` in
/// `h2[conn]=debug`); a directive that is only a level, or only a span, names none.
pub fn named_targets(spec: &str) -> Vec<String> {
    spec.split(',')
        .filter_map(|directive| {
            let directive = directive.trim();
            let end = directive.find(['[', '=']).unwrap_or(directive.len());
            let target = directive[..end].trim();
            let is_level = target.parse::<LevelFilter>().is_ok();
            (!target.is_empty() && !is_level).then(|| target.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn targets_are_only_the_named_ones() {
        assert!(named_targets("trace").is_empty());
        assert!(named_targets("").is_empty());
        assert!(named_targets("[reconcile{app=shop}]=trace, DEBUG ,off").is_empty());
        assert_eq!(named_targets("trace,bollard=trace"), ["bollard"]);
        assert_eq!(named_targets("berth=debug,h2[conn]=trace,hyper"), ["berth", "h2", "hyper"]);
    }

    #[test]
    fn trace_reaches_berth_but_no_dependency_body_dump() {
        let cap = dependency_cap("trace");
        assert!(cap.would_enable("berth::engine", &Level::TRACE));
        for dep in
            ["bollard::docker", "hyper_util::client", "h2::codec", "tower::buffer", "tonic::transport", "etcd_client"]
        {
            assert!(!cap.would_enable(dep, &Level::DEBUG), "{dep} at debug");
            assert!(cap.would_enable(dep, &Level::INFO), "{dep} at info");
        }
    }

    #[test]
    fn a_named_dependency_is_the_users_choice() {
        let cap = dependency_cap("trace,bollard=trace");
        assert!(cap.would_enable("bollard::docker", &Level::TRACE));
        assert!(!cap.would_enable("hyper::proto", &Level::DEBUG));
    }
}
