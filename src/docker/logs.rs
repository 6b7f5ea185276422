//! What `berth logs` and `berth exec` read from a host: the containers of one app's component, and a
//! container's log lines with Docker's own timestamps (the key the CLI merges hosts on).

use std::collections::HashMap;
use std::time::SystemTime;

use bollard::container::LogOutput;
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use futures::StreamExt;

use super::connect::{DockerError, HostClient};
use crate::plan::labels::{self, Component};

/// One container of the app on a host, as `logs` and `exec` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppContainer {
    pub id: String,
    pub name: String,
    pub component: Component,
    pub running: bool,
    /// Creation time (seconds since the epoch): the newest container of a component is its current one.
    pub created: i64,
}

/// The app's containers on this host (every state), only `component`'s when given, oldest first.
pub async fn containers(
    client: &HostClient,
    app: &str,
    namespace: &str,
    component: Option<&Component>,
) -> Result<Vec<AppContainer>, DockerError> {
    let mut filters = vec![
        format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
        format!("{}={app}", labels::APP),
        format!("{}={namespace}", labels::NAMESPACE),
    ];
    if let Some(c) = component {
        filters.push(format!("{}={}", c.label_key(), c.name()));
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), filters)])),
        ..Default::default()
    };
    let listed = client.call("list containers", client.docker.list_containers(Some(options))).await?;
    let mut out: Vec<AppContainer> = listed
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default().into_iter().collect();
            Some(AppContainer {
                component: labels::component_of(&labels)?,
                id: c.id.unwrap_or_default(),
                name: super::ops::name_of(c.names),
                running: c.state.map(|s| s.to_string()) == Some("running".to_string()),
                created: c.created.unwrap_or_default(),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// Which lines of a container's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogsFrom {
    /// Keep the stream open for new lines while the container runs.
    pub follow: bool,
    /// Only lines from this second on (seconds since the epoch; 0: from the start).
    pub since: i64,
    /// Only the last N lines of what is already there.
    pub tail: Option<u64>,
}

/// One log line: Docker's timestamp, as sent and parsed, and the text without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    /// The timestamp as Docker wrote it (RFC 3339, nanoseconds), shown by `--timestamps`.
    pub stamp: String,
    pub text: String,
    pub stderr: bool,
}

/// Splits Docker's `TIMESTAMP TEXT` (what `timestamps=true` gives); a line without a readable stamp
/// keeps its text and gets `fallback` as time.
pub fn parse_line(raw: &str, stderr: bool, fallback: SystemTime) -> LogLine {
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    match raw.split_once(' ').map(|(s, t)| (s, t, humantime::parse_rfc3339(s))) {
        Some((stamp, text, Ok(at))) => LogLine { at, stamp: stamp.to_string(), text: text.to_string(), stderr },
        _ => LogLine { at: fallback, stamp: String::new(), text: raw.to_string(), stderr },
    }
}

/// Reads a container's log, calling `each` per line, until it ends (at once without `follow`; when
/// the container stops with it). Not bounded by the call timeout: a followed log lasts as long as
/// the container.
pub async fn read(
    client: &HostClient,
    id: &str,
    from: &LogsFrom,
    mut each: impl FnMut(LogLine),
) -> Result<(), DockerError> {
    let options = LogsOptions {
        follow: from.follow,
        stdout: true,
        stderr: true,
        since: i32::try_from(from.since).unwrap_or(i32::MAX),
        until: 0,
        timestamps: true,
        tail: from.tail.map(|n| n.to_string()).unwrap_or_else(|| "all".to_string()),
    };
    let mut stream = client.docker.logs(id, Some(options));
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| DockerError::from_bollard(&client.name, "logs", e))?;
        let (bytes, stderr) = match frame {
            LogOutput::StdErr { message } => (message, true),
            LogOutput::StdOut { message } | LogOutput::Console { message } => (message, false),
            LogOutput::StdIn { .. } => continue,
        };
        let now = SystemTime::now();
        // A TTY container's frames may hold several lines: each gets its own stamp from Docker.
        for raw in String::from_utf8_lossy(&bytes).split_inclusive('\n') {
            each(parse_line(raw, stderr, now));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn docker_stamps_are_split_off_and_parsed() {
        let l = parse_line("2026-01-02T03:04:05.123456789Z hello world\n", false, SystemTime::UNIX_EPOCH);
        assert_eq!(l.text, "hello world");
        assert_eq!(l.stamp, "2026-01-02T03:04:05.123456789Z");
        let want = humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap() + Duration::from_nanos(123_456_789);
        assert_eq!(l.at, want);
        let odd = parse_line("no stamp here", true, SystemTime::UNIX_EPOCH);
        assert_eq!((odd.text.as_str(), odd.at, odd.stderr), ("no stamp here", SystemTime::UNIX_EPOCH, true));
    }
}
