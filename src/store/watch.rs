//! Everything under the prefix as a stream of typed events (kube-runtime's `watcher`): one list,
//! then a watch from that list's revision; a compacted revision or a broken watch means the next
//! event is a fresh list. Values stay raw bytes here: the reader decodes them once, the same way
//! for a list and for a watch.

use std::collections::VecDeque;

use etcd_client::{EventType, GetOptions, WatchOptions, WatchStream};

use super::{KeyKind, Store, StoreError};

/// One key berth owns, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: KeyKind,
    /// The full etcd key, for messages.
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What the store said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A full, consistent list at `revision` (the first, or after the watch broke): it replaces
    /// everything known, and a key missing from it is gone.
    Listed { revision: i64, entries: Vec<Entry> },
    /// A key was created or changed.
    Put(Entry),
    /// A key was removed.
    Deleted { kind: KeyKind, key: String },
}

/// Why no event came; the next call starts over with a list.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The list failed: etcd is not answering.
    #[error("cannot list the store: {0}")]
    List(#[source] StoreError),
    /// The watch could not start, broke, or its revision was compacted.
    #[error("{0}")]
    Ended(String),
}

/// A list-then-watch of every key under the prefix; see [`Store::watch_all`].
pub struct Watcher {
    store: Store,
    state: State,
    pending: VecDeque<WatchEvent>,
}

enum State {
    /// Next: a full list.
    Unlisted,
    /// Listed at `revision`; next: open the watch after it.
    Listed { revision: i64 },
    /// Boxed: a stream is large, and a watcher spends most of its life in this state anyway.
    Watching { stream: Box<WatchStream>, from: i64 },
}

impl Store {
    /// Every key berth owns, listed then watched; the first event is always [`WatchEvent::Listed`].
    pub fn watch_all(&self) -> Watcher {
        Watcher { store: self.clone(), state: State::Unlisted, pending: VecDeque::new() }
    }

    /// Wakes on every write of one key from now on; see [`KeyWatch::changed`].
    pub async fn watch_key(&self, key: &str) -> Result<KeyWatch, StoreError> {
        let mut client = self.client.clone();
        Ok(KeyWatch { stream: Some(client.watch(key, None).await?) })
    }
}

impl Watcher {
    /// The next event. After an error, the next call lists again.
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            match &mut self.state {
                State::Unlisted => {
                    let (revision, entries) = self.list().await.map_err(WatchError::List)?;
                    self.state = State::Listed { revision };
                    return Ok(WatchEvent::Listed { revision, entries });
                }
                State::Listed { revision } => {
                    let from = *revision + 1;
                    self.state = State::Unlisted;
                    let options = WatchOptions::new().with_prefix().with_start_revision(from).with_prev_key();
                    let mut client = self.store.client.clone();
                    let stream = client
                        .watch(self.store.keys.root(), Some(options))
                        .await
                        .map_err(|e| WatchError::Ended(format!("cannot watch: {e}")))?;
                    self.state = State::Watching { stream: Box::new(stream), from };
                }
                State::Watching { stream, from } => {
                    let from = *from;
                    let answer = stream.message().await;
                    let ended = |reason: String| WatchError::Ended(reason);
                    let resp = match answer {
                        Ok(Some(r)) => r,
                        Ok(None) => return Err(self.restart(ended("watch stream closed".into()))),
                        Err(e) => return Err(self.restart(ended(format!("watch failed: {e}")))),
                    };
                    if resp.compact_revision() > 0 {
                        let why = format!("revision {from} was compacted (now {})", resp.compact_revision());
                        return Err(self.restart(ended(why)));
                    }
                    if resp.canceled() {
                        return Err(self.restart(ended(format!("watch canceled: {}", resp.cancel_reason()))));
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let key = String::from_utf8_lossy(kv.key()).to_string();
                        let Some(kind) = self.store.keys.parse(&key) else { continue };
                        self.pending.push_back(match event.event_type() {
                            EventType::Put => WatchEvent::Put(Entry {
                                kind,
                                key,
                                value: kv.value().to_vec(),
                                mod_revision: kv.mod_revision(),
                            }),
                            EventType::Delete => WatchEvent::Deleted { kind, key },
                        });
                    }
                }
            }
        }
    }

    /// Forgets the broken watch (and anything not yet handed out), so the next call lists.
    fn restart(&mut self, why: WatchError) -> WatchError {
        self.state = State::Unlisted;
        self.pending.clear();
        why
    }

    async fn list(&self) -> Result<(i64, Vec<Entry>), StoreError> {
        let keys = &self.store.keys;
        let mut kv = self.store.client.kv_client();
        let resp = kv.get(keys.root(), Some(GetOptions::new().with_prefix())).await?;
        let revision = resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Corrupt {
            key: keys.root(),
            reason: "the list answered without a revision".into(),
        })?;
        let entries = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).to_string();
                let kind = keys.parse(&key)?;
                Some(Entry { kind, key, value: kv.value().to_vec(), mod_revision: kv.mod_revision() })
            })
            .collect();
        Ok((revision, entries))
    }
}

/// Writes of one key, as wake-ups (the CLI's wait for a status).
pub struct KeyWatch {
    /// `None` once the watch ended.
    stream: Option<WatchStream>,
}

impl KeyWatch {
    /// Waits for the next write of the key; `false` (at once, from then on) once the watch ended,
    /// so the caller falls back to polling.
    pub async fn changed(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else { return false };
        match stream.message().await {
            Ok(Some(_)) => true,
            _ => {
                self.stream = None;
                false
            }
        }
    }
}
