//! The connection: endpoints that answer, and transactions fenced by the leader lease.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

use super::config::EtcdConfig;
use super::{Keys, Store, StoreError};

/// How long a user waits before "etcd unreachable" instead of a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every single etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Plain endpoints without TLS files or a user (tests, benchmarks); see [`Store::connect_with`].
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Store, StoreError> {
        Store::connect_with(EtcdConfig::new(endpoints, prefix)).await
    }

    /// Connects as `config` says and proves etcd answers and accepts berth's certificate and user,
    /// so later errors are about requests, not reachability or credentials.
    pub async fn connect_with(config: EtcdConfig) -> Result<Store, StoreError> {
        let joined = config.endpoints.join(",");
        let keys = Keys::new(&config.prefix);
        let unreachable = |reason: String| StoreError::Unreachable { endpoints: joined.clone(), reason };
        let options = connect_options(&config).map_err(unreachable)?;
        let client = open_live(&config, &options, &keys.root()).await.map_err(|f| match f.refused {
            true => StoreError::Refused { endpoint: f.endpoint, reason: f.reason },
            false => unreachable(f.reason),
        })?;
        Ok(Store { client, keys, endpoints: joined, fence: None })
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

/// The options every connection uses; with a user, an expired auth token is renewed on the next
/// request (etcd's simple tokens expire after 5 idle minutes, the operator runs for months).
fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    if let Some(tls) = config.tls_options()? {
        options = options.with_tls(tls);
    }
    if let Some(c) = &config.credentials {
        options = options.with_user(c.user.clone(), c.password().to_string()).with_auto_token_refresh(true);
    }
    Ok(options)
}

/// Why an endpoint could not be used: `refused` when it answered but turned down berth's
/// certificate or user (nothing a retry fixes), else it did not answer.
struct EndpointFailure {
    endpoint: String,
    reason: String,
    refused: bool,
}

/// A client over the endpoints that answer.
///
/// etcd-client spreads requests over every endpoint it was given and fails those routed to a dead
/// one, so with `--etcd a,b,c` and `a` down about every other command would fail. Each endpoint is
/// probed first and only the live ones are used; the error is the first endpoint's.
async fn open_live(config: &EtcdConfig, options: &ConnectOptions, root: &str) -> Result<Client, EndpointFailure> {
    let endpoints = &config.endpoints;
    if endpoints.len() <= 1 {
        return open(config, endpoints, options, root).await;
    }
    let probes =
        futures::future::join_all(endpoints.iter().map(|e| open(config, std::slice::from_ref(e), options, root))).await;
    let mut live = Vec::new();
    let mut first_error = None;
    for (endpoint, probe) in endpoints.iter().zip(probes) {
        match probe {
            Ok(client) => live.push((endpoint.clone(), client)),
            Err(failure) => {
                first_error.get_or_insert(failure);
            }
        }
    }
    match live.len() {
        0 => Err(first_error.expect("every endpoint failed")),
        1 => Ok(live.remove(0).1),
        _ => open(config, &live.into_iter().map(|(e, _)| e).collect::<Vec<_>>(), options, root).await,
    }
}

/// One client over `endpoints`, proven to answer a read under berth's `root` (so later errors are
/// about requests, not reachability, certificates or the user). The read is serializable: a member
/// without quorum still answers it, as it answered the status request this proof replaced.
async fn open(
    config: &EtcdConfig,
    endpoints: &[String],
    options: &ConnectOptions,
    root: &str,
) -> Result<Client, EndpointFailure> {
    let endpoint = endpoints.join(",");
    let timed_out = || EndpointFailure {
        endpoint: endpoint.clone(),
        reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        refused: false,
    };
    let connect = Client::connect(endpoints, Some(options.clone()));
    let mut client = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(failure(config, &endpoint, &e).await),
        Err(_) => return Err(timed_out()),
    };
    let proof = GetOptions::new().with_prefix().with_count_only().with_serializable();
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get(root, Some(proof))).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(failure(config, &endpoint, &e).await),
        Err(_) => Err(timed_out()),
    }
}

async fn failure(config: &EtcdConfig, endpoint: &str, e: &etcd_client::Error) -> EndpointFailure {
    let (reason, refused) = super::refusal::describe(config, endpoint, e).await;
    EndpointFailure { endpoint: endpoint.to_string(), reason, refused }
}
