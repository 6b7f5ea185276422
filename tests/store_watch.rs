//! The store's list-then-watch, key watch and the apply lock's lease, against the real etcd of the
//! test bed, one key prefix per test (removed when it ends).
mod common;

use std::time::Duration;

use berth::spec::parse_str;
use berth::store::{KeyKind, Store, WatchEvent};
use common::specs::app_doc;
use common::testbed::{unique, Testbed};
use etcd_client::{Client, DeleteOptions};

/// A key prefix of this test alone; its keys are deleted on drop.
struct Prefix(String);

impl Drop for Prefix {
    fn drop(&mut self) {
        let (etcd, root) = (Testbed::get().etcd.clone(), format!("{}/", self.0));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = Client::connect([etcd], None).await {
                    let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
                }
            });
        })
        .join();
    }
}

async fn store() -> (Store, Prefix) {
    let prefix = format!("/{}", unique("berth-watch"));
    let store = Store::connect(&[Testbed::get().etcd.clone()], &prefix).await.expect("the test bed's etcd answers");
    (store, Prefix(prefix))
}

async fn raw() -> Client {
    Client::connect([Testbed::get().etcd.clone()], None).await.unwrap()
}

/// A bound on a wait that should end almost at once; reaching it fails the test.
const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_watcher_lists_then_brings_puts_and_deletes_of_berths_keys_only() {
    let (s, p) = store().await;
    let app = &parse_str("t", &app_doc("web", "prod", "reg.local/web:1", "h1", "8080:80", "")).unwrap()[0];
    s.apply(app, false).await.unwrap();
    let mut w = s.watch_all();
    let Ok(WatchEvent::Listed { entries, .. }) = tokio::time::timeout(SOON, w.next()).await.unwrap() else {
        panic!("the first event is a list")
    };
    let kinds: Vec<_> = entries.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds, vec![KeyKind::App { namespace: "prod".into(), name: "web".into() }]);

    let mut c = raw().await;
    c.put(format!("{}/not-berths/x", p.0), "1", None).await.unwrap();
    c.put(format!("{}/hosts/h1", p.0), "[]", None).await.unwrap();
    c.delete(format!("{}/apps/prod/web", p.0), None).await.unwrap();
    let next = tokio::time::timeout(SOON, w.next()).await.unwrap().unwrap();
    let WatchEvent::Put(put) = next else { panic!("{next:?}") };
    // Raw bytes: the reader decides what an undecodable value means.
    assert_eq!((put.kind, put.value), (KeyKind::Host { name: "h1".into() }, b"[]".to_vec()));
    let next = tokio::time::timeout(SOON, w.next()).await.unwrap().unwrap();
    let WatchEvent::Deleted { kind, .. } = next else { panic!("{next:?}") };
    assert_eq!(kind, KeyKind::App { namespace: "prod".into(), name: "web".into() });
}

#[tokio::test]
async fn a_key_watch_wakes_on_each_write() {
    let (s, p) = store().await;
    let key = s.keys().status("prod", "web");
    let mut writes = s.watch_key(&key).await.unwrap();
    raw().await.put(key.as_str(), "{}", None).await.unwrap();
    assert!(tokio::time::timeout(SOON, writes.changed()).await.unwrap());
    drop(p);
}

/// Dropping an apply that holds the lock (a cancelled command, a timeout around it) frees the lock
/// at once: the next apply does not wait out the 30 s lease.
#[tokio::test]
async fn a_dropped_apply_frees_the_lock_without_waiting_for_its_lease() {
    let (s, _p) = store().await;
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let holder = s.clone();
    let holding = tokio::spawn(async move {
        holder
            .with_apply_lock(|| async move {
                let _ = held_tx.send(());
                std::future::pending::<Result<(), berth::store::StoreError>>().await
            })
            .await
    });
    tokio::time::timeout(SOON, held_rx).await.unwrap().unwrap();
    holding.abort();
    let _ = holding.await;
    let next = tokio::time::timeout(SOON, s.with_apply_lock(|| async { Ok::<_, berth::store::StoreError>(7) })).await;
    assert_eq!(next.expect("the lock was freed when its holder was dropped").unwrap(), 7);
}
