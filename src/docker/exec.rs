//! `berth exec`'s Docker side: a command run in a container (Docker's exec API), its streams wired to
//! the caller's, and its exit code. The terminal itself (raw mode, its size) is the CLI's.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::ResizeExecOptions;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::connect::{DockerError, HostClient};

/// How to run the command.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    /// A pseudo-terminal in the container (stdout and stderr become one stream).
    pub tty: bool,
    /// Send the caller's stdin to the command.
    pub stdin: bool,
    /// The terminal's size (columns, rows), when it has one.
    pub size: Option<(u16, u16)>,
}

/// Runs `opts.cmd` in container `id` and returns its exit code. Output is copied to `stdout` and
/// `stderr` as it comes; `input` is copied to the command while it runs (with `opts.stdin`); each
/// size sent on `resizes` is passed to the command's terminal.
pub async fn run<I, O, E>(
    client: &HostClient,
    id: &str,
    opts: &ExecOptions,
    input: I,
    mut stdout: O,
    mut stderr: E,
    mut resizes: mpsc::Receiver<(u16, u16)>,
) -> Result<i64, DockerError>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let create = CreateExecOptions {
        attach_stdin: Some(opts.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(opts.tty),
        cmd: Some(opts.cmd.clone()),
        ..Default::default()
    };
    let mut config: bollard::models::ExecConfig = create.into();
    config.console_size = opts.size.filter(|_| opts.tty).map(|(w, h)| vec![h as usize, w as usize]);
    let exec = client.call("create exec", client.docker.create_exec(id, config)).await?.id;
    let start = StartExecOptions { detach: false, tty: opts.tty, output_capacity: None };
    // The attach lasts as long as the command: outside the call timeout.
    let started = client
        .docker
        .start_exec(&exec, Some(start))
        .await
        .map_err(|e| DockerError::from_bollard(&client.name, "start exec", e))?;
    let StartExecResults::Attached { mut output, input: mut to_cmd } = started else {
        return Err(DockerError::new(&client.name, "start exec", "Docker did not attach"));
    };
    if let (true, Some(size)) = (opts.tty, opts.size) {
        resize(client, &exec, size).await;
    }
    let pump = opts.stdin.then(|| {
        let mut input = input;
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut input, &mut to_cmd).await;
            // End of input: the command sees EOF on its stdin.
            let _ = to_cmd.shutdown().await;
        })
    });
    let result = loop {
        tokio::select! {
            frame = output.next() => match frame {
                None => break Ok(()),
                Some(Err(e)) => break Err(DockerError::from_bollard(&client.name, "exec output", e)),
                Some(Ok(LogOutput::StdErr { message })) => {
                    let _ = stderr.write_all(&message).await;
                    let _ = stderr.flush().await;
                }
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    let _ = stdout.write_all(&message).await;
                    let _ = stdout.flush().await;
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
            },
            Some(size) = resizes.recv() => resize(client, &exec, size).await,
        }
    };
    if let Some(p) = pump {
        p.abort();
    }
    result?;
    let inspected = client.call("inspect exec", client.docker.inspect_exec(&exec)).await?;
    Ok(inspected.exit_code.unwrap_or(0))
}

/// Passes a terminal size on; a failure only leaves the old size.
async fn resize(client: &HostClient, exec: &str, (w, h): (u16, u16)) {
    let options = ResizeExecOptions { h: h.into(), w: w.into() };
    if let Err(e) = client.call("resize exec", client.docker.resize_exec(exec, options)).await {
        tracing::debug!(error = %e, "resize exec");
    }
}

/// What a short command berth runs itself (in the proxy container) printed, and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in container `id` without a terminal or input and collects its output. The whole run
/// is bounded by `limit`: a command that hangs is an error, not a stuck converge.
pub async fn capture(
    client: &HostClient,
    id: &str,
    cmd: &[&str],
    limit: std::time::Duration,
) -> Result<Captured, DockerError> {
    let opts = ExecOptions { cmd: cmd.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (_keep, resizes) = mpsc::channel(1);
    let op = format!("exec {}", cmd.first().copied().unwrap_or_default());
    let ran = tokio::time::timeout(limit, run(client, id, &opts, tokio::io::empty(), &mut out, &mut err, resizes))
        .await
        .map_err(|_| DockerError::new(&client.name, &op, format!("gave no answer within {} s", limit.as_secs())))??;
    Ok(Captured {
        exit_code: ran,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}
