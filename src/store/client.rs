//! The connection: endpoints that answer, and transactions fenced by the leader lease.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

use super::error::one_line;
use super::{Keys, Store, StoreError};

/// How long a user waits before "etcd unreachable" instead of a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every single etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects and proves etcd answers, so later errors are about requests, not reachability.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Store, StoreError> {
        let joined = endpoints.join(",");
        let unreachable = |reason: String| StoreError::Unreachable { endpoints: joined.clone(), reason };
        let client = open_live(endpoints).await.map_err(unreachable)?;
        Ok(Store { client, keys: Keys::new(prefix), endpoints: joined, fence: None })
    }

    /// A copy whose status writes and key removals are fenced by the leader lease `lease`.
    pub fn fenced(&self, lease: i64) -> Store {
        Store { fence: Some(lease), ..self.clone() }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The compare that makes a write conditional on still leading, when fenced.
    fn fence_compare(&self) -> Vec<Compare> {
        match self.fence {
            Some(lease) => vec![Compare::lease(self.keys.leader(), CompareOp::Equal, lease)],
            None => Vec::new(),
        }
    }

    /// Runs a fenced transaction; a failed fence is reported as lost leadership.
    pub(super) async fn fenced_txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let fence = self.fence_compare();
        if fence.is_empty() {
            let txn = Txn::new().when(compares).and_then(ops);
            return Ok(self.client.kv_client().txn(txn).await?.succeeded());
        }
        // Check the fence first, then the caller's own condition, so the two failures are told apart.
        let mut all = fence.clone();
        all.extend(compares.clone());
        let txn = Txn::new().when(all).and_then(ops);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            return Ok(true);
        }
        let check = Txn::new().when(fence).and_then(Vec::<TxnOp>::new());
        if !self.client.kv_client().txn(check).await?.succeeded() {
            return Err(StoreError::NotLeader);
        }
        Ok(false)
    }
}

/// A client over the endpoints that answer.
///
/// etcd-client spreads requests over every endpoint it was given and fails those routed to a dead
/// one, so with `--etcd a,b,c` and `a` down about every other command would fail. Each endpoint is
/// probed first and only the live ones are used; the error is the first endpoint's reason.
async fn open_live(endpoints: &[String]) -> Result<Client, String> {
    if endpoints.len() <= 1 {
        return open(endpoints).await;
    }
    let probes = futures::future::join_all(endpoints.iter().map(|e| open(std::slice::from_ref(e)))).await;
    let mut live = Vec::new();
    let mut first_error = None;
    for (endpoint, probe) in endpoints.iter().zip(probes) {
        match probe {
            Ok(client) => live.push((endpoint.clone(), client)),
            Err(reason) => {
                first_error.get_or_insert(reason);
            }
        }
    }
    match live.len() {
        0 => Err(first_error.unwrap_or_default()),
        1 => Ok(live.remove(0).1),
        _ => open(&live.into_iter().map(|(e, _)| e).collect::<Vec<_>>()).await,
    }
}

/// One client over `endpoints`, proven to answer (so later errors are about requests, not reachability).
async fn open(endpoints: &[String]) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    let timed_out = || format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
    let mut client = match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(endpoints, Some(options))).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(one_line(&e)),
        Err(_) => return Err(timed_out()),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, client.status()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(one_line(&e)),
        Err(_) => Err(timed_out()),
    }
}
