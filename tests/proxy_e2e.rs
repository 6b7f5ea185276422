//! End to end, with `berth operator` on the real test bed and the bed's Caddy image as each host's
//! proxy: proxied roles deploy without a failed request (start-first, route switched once the new
//! container answers, old one drained), a deploy that never turns healthy never moves traffic nor
//! stops the old container, two apps share one proxy by host name, a TLS route serves a Secret's
//! certificate, the proxy is repaired when removed by hand and removed when no route needs it.
//!
//! The tests share host1's proxy (one per host, by design), so they run one at a time.
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::containers::component;
use common::proxy::{failures, get_host, served_sequence, RequestLoop};
use common::specs::{unix_hosts, HTTPD};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};
use serde_json::Value;

/// One test at a time: they share host1's proxy and its ports.
static PROXY: Mutex<()> = Mutex::new(());

/// The proxy's host ports on the bed (no other test binary publishes these).
const HTTP_PORT: u16 = 18480;
const HTTPS_PORT: u16 = 18443;

fn hosts(tb: &Testbed) -> String {
    let h = tb.host("host1");
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Host
metadata:
  name: host1
spec:
  endpoint: {}
  proxy: {{image: {}, httpPort: {HTTP_PORT}, httpsPort: {HTTPS_PORT}}}
",
        h.unix, tb.images.proxy
    )
}

/// A role `web` on host1 routed by `name`, serving `image`; `extra` adds lines under the role.
fn proxied_app(app: &str, ns: &str, image: &str, name: &str, extra: &str, tls: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
{extra}      proxy:
        hosts: [{name}]
        appPort: 80
        healthcheck: {{path: /, interval: 200ms, timeout: 2s}}
        drainTimeout: 5s
{tls}  rollout:
    healthTimeout: 15s
"
    )
}

fn addr(tb: &Testbed) -> String {
    tb.host("host1").address.clone()
}

/// The body `name` serves through host1's proxy right now.
fn served(tb: &Testbed, name: &str) -> Result<(u16, String), String> {
    get_host(&addr(tb), HTTP_PORT, name, "/")
}

fn wait_served(tb: &Testbed, name: &str, body: &str) {
    let ok = wait_until(secs(30), || matches!(served(tb, name), Ok((200, b)) if b == body));
    assert!(ok, "{name} never served {body:?}; last: {:?}", served(tb, name));
}

fn route_container(s: &Value) -> Option<String> {
    s["hosts"]["host1"]["routes"][0]["container"].as_str().map(str::to_string)
}

fn proxy_id(tb: &Testbed) -> Option<String> {
    let out = tb.docker("host1", &["inspect", "-f", "{{.Id}}", "berth-proxy"]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn five_deploys_fail_no_request_and_a_failed_one_moves_no_traffic() {
    let _one = PROXY.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = Ctx::new("proxy");
    let tb = ctx.tb;
    let (app, ns) = (ctx.app("px"), ctx.namespace("pxn"));
    let name = format!("{app}.test");
    ctx.apply("hosts.yaml", &hosts(tb));
    let op = ctx.operator("a", &["--resync", "2s"]);
    let images = [&tb.images.app_v1, &tb.images.app_v2];
    let body = |i: usize| if i % 2 == 0 { "v1" } else { "v2" };
    ctx.apply("app.yaml", &proxied_app(&app, &ns, images[0], &name, "", ""));
    ctx.wait_status(&app, &ns, secs(120), "Ready", |s| ready_at(s, 1));
    wait_served(tb, &name, "v1");

    let requests = RequestLoop::start(&addr(tb), HTTP_PORT, &name, Duration::from_millis(20), secs(600));
    for deploy in 1..=5 {
        let before = component(tb, "host1", &app, "berth.role=web");
        ctx.apply("app.yaml", &proxied_app(&app, &ns, images[deploy % 2], &name, "", ""));
        let s = ctx.wait_status(&app, &ns, secs(120), "Ready", |s| ready_at(s, deploy as i64 + 1));
        wait_served(tb, &name, body(deploy));
        let after = component(tb, "host1", &app, "berth.role=web");
        assert_eq!(after.len(), 1, "the old container is gone after deploy {deploy}: {after:?}");
        assert_ne!(after[0].id, before[0].id, "deploy {deploy} made a new container");
        assert_eq!(route_container(&s).as_deref(), Some(after[0].name.as_str()), "status names the route's container");
    }
    // A deploy whose container never answers its health path: traffic stays, the old one keeps running.
    let serving = component(tb, "host1", &app, "berth.role=web");
    let broken = proxied_app(&app, &ns, images[0], &name, "      env: {BROKEN: \"1\"}\n", "")
        .replace(&format!("cmd: {HTTPD}"), "cmd: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]");
    ctx.apply("app.yaml", &broken);
    let s = ctx.wait_status(&app, &ns, secs(120), "RolloutFailed", |s| {
        s["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["reason"] == "RolloutFailed"))
    });
    let answers = requests.finish();
    let now = component(tb, "host1", &app, "berth.role=web");
    assert_eq!(now.len(), 1, "only the old container is left: {now:?}");
    assert_eq!(now[0].id, serving[0].id, "the old container was never replaced");
    assert_eq!(now[0].started, serving[0].started, "the old container was never stopped");
    assert_eq!(served(tb, &name), Ok((200, "v2".to_string())), "traffic never moved");
    assert!(s["rolloutFailure"]["reason"].as_str().unwrap_or("").contains("health path"), "{s}");

    let failed = failures(&answers);
    assert!(answers.len() > 100, "the loop ran through the deploys: {} requests", answers.len());
    assert!(failed.is_empty(), "{} of {} requests failed:\n{}", failed.len(), answers.len(), failed.join("\n"));
    let sequence = served_sequence(&answers);
    assert_eq!(sequence, ["v1", "v2", "v1", "v2", "v1", "v2"], "the version changed exactly at each switch");
    let switches = op.metric("berth_proxy_route_switches_total", &[("host", "host1")]);
    assert!(switches >= 5.0, "berth_proxy_route_switches_total{{host=host1}} = {switches}");
    drop(op);
    ctx.delete(&app, &ns);
}

#[test]
fn apps_share_the_proxy_by_host_name_tls_comes_from_a_secret_and_the_proxy_is_kept_converged() {
    let _one = PROXY.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = Ctx::new("proxy");
    let tb = ctx.tb;
    let ns = ctx.namespace("pxs");
    let (one, two, secure) = (ctx.app("pxa"), ctx.app("pxb"), ctx.app("pxt"));
    let (name_one, name_two, name_secure) = (format!("{one}.test"), format!("{two}.test"), format!("{secure}.test"));
    ctx.apply("hosts.yaml", &hosts(tb));
    // A self-signed certificate for the TLS route, as a Secret of type tls.
    let dir = ctx.dir.path();
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name_secure}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name_secure}"))
        .args(["-keyout", "tls.key", "-out", "tls.crt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let pem = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let indent = |t: String| t.lines().map(|l| format!("      {l}\n")).collect::<String>();
    let key_file = ctx.dir.path().join("sealing.key");
    let key_path = key_file.to_str().unwrap();
    let recipient = ctx.berth(&["keygen", "--out", key_path]).expect(0).stdout.trim().to_string();
    let secret = format!(
        "apiVersion: berth.dev/v1alpha1
kind: Secret
metadata:
  name: site-cert
  namespace: {ns}
type: tls
stringData:
  cert: |
{}  key: |
{}",
        indent(pem("tls.crt")),
        indent(pem("tls.key"))
    );
    let plain = ctx.file("secret.yaml", &secret);
    let sealed = ctx.berth(&["seal", "-f", &plain, "--recipient", &recipient]).expect(0).stdout;
    ctx.apply("sealed.yaml", &sealed);
    let op = ctx.operator("a", &["--resync", "2s", "--sealing-key", key_path]);
    ctx.apply("one.yaml", &proxied_app(&one, &ns, &tb.images.app_v1, &name_one, "", ""));
    ctx.apply("two.yaml", &proxied_app(&two, &ns, &tb.images.app_v2, &name_two, "", ""));
    let tls = "        tls: {secretRef: site-cert}\n";
    ctx.apply("secure.yaml", &proxied_app(&secure, &ns, &tb.images.app_v2, &name_secure, "", tls));
    for app in [&one, &two, &secure] {
        ctx.wait_status(app, &ns, secs(120), "Ready", |s| ready_at(s, 1));
    }
    wait_served(tb, &name_one, "v1");
    wait_served(tb, &name_two, "v2");
    assert_eq!(served(tb, "nobody.test").map(|(code, _)| code), Ok(404), "an unknown host name gets a 404");
    assert_eq!(served(tb, &name_secure).map(|(code, _)| code), Ok(404), "a TLS route is not served over HTTP");
    let https = || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(dir.join("tls.crt"))
            .arg("--resolve")
            .arg(format!("{name_secure}:{HTTPS_PORT}:{}", addr(tb)))
            .arg(format!("https://{name_secure}:{HTTPS_PORT}/"))
            .output()
            .unwrap()
    };
    assert!(
        wait_until(secs(30), || String::from_utf8_lossy(&https().stdout).trim() == "v2"),
        "https://{name_secure} never answered v2 with the Secret's certificate: {:?}",
        https()
    );
    // No certificate or key in the status or the log.
    let key_line = pem("tls.key").lines().nth(1).unwrap().to_string();
    let shown = ctx.berth(&["status", &secure, "-n", &ns, "-o", "json"]).stdout + &op.log();
    assert!(!shown.contains(&key_line), "the TLS key leaked into the status or the log");

    // A second App may not claim a routed host name on the same Host.
    let thief = ctx.app("pxc");
    let f = ctx.file("thief.yaml", &proxied_app(&thief, &ns, &tb.images.app_v1, &name_one, "", ""));
    let refused = ctx.berth(&["apply", "-f", &f]);
    assert_ne!(refused.code, Some(0), "a second claim of {name_one} was accepted");
    assert!(
        refused.stderr.contains(&format!("app/{one} -n {ns}")) && refused.stderr.contains(&format!("app/{thief}")),
        "the refusal names both apps: {}",
        refused.stderr
    );

    // An App with nothing proxied on host1, whose Host has other proxy settings (the defaults),
    // converges without touching the proxy.
    let before = proxy_id(tb).expect("a proxy runs on host1");
    let other = Ctx::new("proxy-other");
    other.apply("hosts.yaml", &unix_hosts(tb));
    let plain = other.app("pxp");
    let doc = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {plain}, namespace: {ns}}}\n\
         spec: {{image: {}, roles: {{web: {{hosts: [host1], cmd: {HTTPD}}}}}}}\n",
        tb.images.app_v1
    );
    other.apply("plain.yaml", &doc);
    other.converge(&plain, &ns).expect(0);
    assert_eq!(proxy_id(tb).as_deref(), Some(before.as_str()), "a converge of an unproxied App re-created the proxy");
    wait_served(tb, &name_one, "v1");
    other.delete(&plain, &ns);

    // Removed by hand: the proxy comes back, with every app's route.
    tb.docker_ok("host1", &["rm", "-f", "berth-proxy"]);
    assert!(
        wait_until(secs(30), || proxy_id(tb).is_some_and(|id| id != before)),
        "the proxy was not re-created\n{}",
        op.log()
    );
    wait_served(tb, &name_one, "v1");
    wait_served(tb, &name_two, "v2");

    // Once no App routes through host1 any more, its proxy goes.
    drop(op);
    for app in [&one, &two, &secure] {
        ctx.delete(app, &ns);
    }
    assert_eq!(proxy_id(tb), None, "the proxy outlived every route on host1");
}
