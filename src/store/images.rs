//! The images berth pulled onto each host (`<prefix>/images/<host>`), for the operator's clean-up:
//! only what is recorded here is ever removed.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Store, StoreError};

impl Store {
    fn images_key(&self, host: &str) -> String {
        format!("{}/images/{}", self.keys().prefix(), host)
    }

    /// A host's record of pulled images (any shape the controller owns); `None` before the first pull.
    pub async fn get_host_images<T: DeserializeOwned>(&self, host: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.images_key(host)).await?.map(|v| v.value))
    }

    /// Writes a host's record, fenced like the status.
    pub async fn put_host_images<T: Serialize>(&self, host: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("image records always serialize");
        self.fenced_txn(Vec::new(), vec![etcd_client::TxnOp::put(self.images_key(host), body, None)]).await?;
        Ok(())
    }
}
