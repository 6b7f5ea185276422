//! Spec documents (YAML) that several test binaries write and apply.
use super::testbed::Testbed;

/// A Host document named `name` whose Docker endpoint is `endpoint` (e.g. `unix:///…/docker.sock`).
pub fn host_doc(name: &str, endpoint: &str) -> String {
    format!("apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  endpoint: {endpoint}\n")
}

/// Host documents for every host of the bed, over their unix sockets, as one multi-document stream.
pub fn unix_hosts(tb: &Testbed) -> String {
    tb.hosts.iter().map(|h| host_doc(&h.name, &h.unix)).collect::<Vec<_>>().join("---\n")
}

/// An App with one role `web` on `hosts` (a comma-separated list) publishing `port`; `meta` is
/// extra YAML lines for `metadata` (indented by two), or "".
pub fn app_doc(name: &str, ns: &str, image: &str, hosts: &str, port: &str, meta: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {name}
  namespace: {ns}
{meta}spec:
  image: {image}
  roles:
    web:
      hosts: [{hosts}]
      ports: [\"{port}\"]
"
    )
}
