//! Requests through a host's proxy as a user's client sends them (by Host header), and a bounded
//! request loop that records every answer while deploys happen.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::testbed::secs;

/// One HTTP/1.0 GET of `path` on `ip:port` with `Host: host`; (status, trimmed body).
pub fn get_host(ip: &str, port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, secs(3)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("not HTTP: {head:?}"))?;
    Ok((status, body.trim().to_string()))
}

/// What one request of a [`RequestLoop`] got.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub result: Result<(u16, String), String>,
}

/// Requests sent one after another (a fresh connection each) until stopped, at most `cap` long.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Answer>>>,
}

impl RequestLoop {
    /// Starts asking `http://ip:port/` with `Host: host`, pausing `pause` between requests.
    pub fn start(ip: &str, port: u16, host: &str, pause: Duration, cap: Duration) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (ip, host, flag) = (ip.to_string(), host.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let end = Instant::now() + cap;
            let mut answers = Vec::new();
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                answers.push(Answer { at: Instant::now(), result: get_host(&ip, port, &host, "/") });
                std::thread::sleep(pause);
            }
            answers
        });
        RequestLoop { stop, handle: Some(handle) }
    }

    /// Stops the loop and hands back every answer, in order.
    pub fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The answers that were not a 200, as lines for a failure message.
pub fn failures(answers: &[Answer]) -> Vec<String> {
    let start = answers.first().map(|a| a.at);
    answers
        .iter()
        .filter(|a| !matches!(&a.result, Ok((200, _))))
        .map(|a| format!("+{:?}: {:?}", a.at - start.unwrap(), a.result))
        .collect()
}

/// The bodies served, with runs of the same body collapsed: `["v1", "v2", "v1"]`.
pub fn served_sequence(answers: &[Answer]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in answers {
        if let Ok((200, body)) = &a.result {
            if out.last() != Some(body) {
                out.push(body.clone());
            }
        }
    }
    out
}
