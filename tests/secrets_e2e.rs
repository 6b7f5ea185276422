//! End to end on the real test bed: sealed Secrets. An operator with a sealing key publishes its
//! recipient; `berth apply` seals stringData with it (etcd never holds a plain value); an App reads
//! a Secret in its env and in a file (mode 0400, written before the start); a changed value rolls
//! only its users; `get`, `status` and the operator's log never show a value; a Secret in use is
//! not deleted; an operator without the identity reports SecretUnavailable; a private registry is
//! pulled from with imagePullSecrets, and refused by name without them.
mod common;

use common::containers::app_containers;
use common::specs::{unix_hosts, IDLE};
use common::testbed::{secs, unique, wait_until, Testbed};
use common::world::{ready_at, Ctx};

fn secret_doc(name: &str, ns: &str, key: &str, value: &str) -> String {
    format!("apiVersion: berth.dev/v1alpha1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n  {key}: \"{value}\"\n")
}

/// An App on host1 reading `db.password` in env DB_PASSWORD and as /run/secrets/db.
fn user_app(tb: &Testbed, app: &str, ns: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {{name: {app}, namespace: {ns}}}
spec:
  image: {image}
  roles:
    worker:
      hosts: [host1]
      cmd: {IDLE}
      env:
        DB_PASSWORD: {{secretKeyRef: {{name: db, key: password}}}}
        MODE: plain
      files:
        /run/secrets/db: {{secretKeyRef: {{name: db, key: password}}}}
        /etc/app.conf: {{content: \"level=info\\n\", mode: \"0644\"}}
",
        image = tb.images.app_v1
    )
}

fn plain_app(tb: &Testbed, app: &str, ns: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  image: {}\n  roles:\n    worker: {{hosts: [host1], cmd: {IDLE}}}\n",
        tb.images.app_v1
    )
}

#[test]
fn a_sealed_secret_reaches_env_and_files_and_never_any_output() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("secrets");
    let (app, other) = (ctx.app("sec-user"), ctx.app("sec-other"));
    let ns = "prod";
    let value = unique("hunter2-value");
    let key_file = ctx.dir.path().join("sealing.key");
    let r = ctx.berth(&["keygen", "--out", key_file.to_str().unwrap()]).expect(0);
    assert!(r.stdout.trim().starts_with("age1"), "{}", r.stdout);
    let mode = std::fs::metadata(&key_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);

    ctx.apply("hosts.yaml", &unix_hosts(tb));
    // No recipient published yet: a plain value is refused, nothing written.
    let early = ctx.file("early.yaml", &secret_doc("db", ns, "password", &value));
    let r = ctx.berth(&["apply", "-f", &early]).expect(1);
    assert!(r.stderr.contains("no sealing recipient is published"), "{}", r.stderr);

    let op = ctx.operator("a", &["--sealing-key", key_file.to_str().unwrap()]);
    assert!(wait_until(secs(30), || ctx.keys().iter().any(|k| k.ends_with("/config/recipients"))), "{}", op.log());
    ctx.apply("secret.yaml", &secret_doc("db", ns, "password", &value));
    ctx.apply("app.yaml", &user_app(tb, &app, ns));
    ctx.apply("other.yaml", &plain_app(tb, &other, ns));
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
    ctx.wait_status(&other, ns, secs(90), "Ready", |s| ready_at(s, 1));

    let c = &app_containers(tb, "host1", &app)[0];
    assert!(c.env.contains(&format!("DB_PASSWORD={value}")), "{:?}", c.env);
    let file = tb.docker_ok("host1", &["exec", &c.id, "cat", "/run/secrets/db"]);
    assert_eq!(file.trim(), value);
    let perms = tb.docker_ok("host1", &["exec", &c.id, "ls", "-ln", "/run/secrets/db"]);
    let fields: Vec<&str> = perms.split_whitespace().collect();
    assert_eq!((fields[0], fields[2], fields[3]), ("-r--------", "0", "0"), "{perms}");
    assert_eq!(tb.docker_ok("host1", &["exec", &c.id, "cat", "/etc/app.conf"]).trim(), "level=info");

    // Nowhere in etcd, get, status or the operator's log.
    let dump = ctx.dump();
    assert!(!dump.contains(&value), "a plain value is stored in etcd");
    assert!(dump.contains("BEGIN AGE ENCRYPTED FILE"), "no sealed value stored");
    for args in [
        vec!["get", "secrets", "-n", ns, "-o", "yaml"],
        vec!["get", "apps", "-n", ns, "-o", "json"],
        vec!["status", &app, "-n", ns, "-o", "json"],
    ] {
        let out = ctx.berth(&args).expect(0);
        assert!(!out.stdout.contains(&value) && !out.stderr.contains(&value), "{args:?} shows the value");
    }
    let listed = ctx.berth(&["get", "secrets", "-n", ns]).expect(0).stdout;
    assert!(listed.contains("db") && listed.contains("password") && listed.contains("opaque"), "{listed}");

    // A changed value rolls the App that uses it, and only that one.
    let before_other = app_containers(tb, "host1", &other)[0].clone();
    let new_value = unique("hunter3-value");
    ctx.apply("secret.yaml", &secret_doc("db", ns, "password", &new_value));
    assert!(
        wait_until(secs(90), || app_containers(tb, "host1", &app)
            .iter()
            .any(|c| c.status == "running" && c.env.contains(&format!("DB_PASSWORD={new_value}")))),
        "the new value did not roll out\n{}",
        op.log()
    );
    let after_other = app_containers(tb, "host1", &other)[0].clone();
    assert_eq!((before_other.id, before_other.started), (after_other.id, after_other.started), "the other App rolled");
    assert!(!op.log().contains(&value) && !op.log().contains(&new_value), "a value reached the operator's log");

    // In use: not deleted, and the refusal names the App.
    let r = ctx.berth(&["delete", "secret", "db", "-n", ns]).expect(2);
    assert!(r.stderr.contains(&format!("app/{app} -n {ns}")), "{}", r.stderr);
}

#[test]
fn without_the_identity_an_app_is_blocked_naming_the_secret() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("secrets");
    let app = ctx.app("sec-blind");
    let ns = "prod";
    let key_file = ctx.dir.path().join("sealing.key");
    let recipient = ctx.berth(&["keygen", "--out", key_file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let plain = ctx.file("plain.yaml", &secret_doc("db", ns, "password", "s3cr3t-offline"));
    let sealed = ctx.berth(&["seal", "-f", &plain, "--recipient", &recipient]).expect(0).stdout;
    assert!(!sealed.contains("s3cr3t-offline") && sealed.contains("sealedData"), "{sealed}");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("sealed.yaml", &sealed);
    ctx.apply("app.yaml", &user_app(tb, &app, ns));
    let _op = ctx.operator("blind", &[]);
    let s = ctx.wait_status(&app, ns, secs(60), "Blocked", |s| s["phase"] == "Blocked");
    assert_eq!(s["conditions"][0]["reason"], "SecretUnavailable", "{s:#}");
    assert!(s["message"].as_str().unwrap().contains("secret db"), "{s:#}");
    assert!(app_containers(tb, "host1", &app).is_empty(), "a container started without its Secret");
}

#[test]
fn a_private_registry_is_pulled_from_with_image_pull_secrets_only() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("secrets");
    let ns = "prod";
    let reg = &tb.private_registry;
    let image = tb.private_image("sec-private");
    let key_file = ctx.dir.path().join("sealing.key");
    let recipient = ctx.berth(&["keygen", "--out", key_file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let app_doc = |app: &str, pull: &str| {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  image: {image}\n{pull}  roles:\n    worker: {{hosts: [host2], cmd: {IDLE}}}\n"
        )
    };
    let creds = |password: &str| {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Secret\nmetadata: {{name: regcred, namespace: {ns}}}\ntype: registry\nstringData: {{server: \"{}\", username: \"{}\", password: \"{password}\"}}\n",
            reg.address, reg.user
        )
    };
    let key = key_file.to_str().unwrap();
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    for (name, password) in [("good.yaml", reg.password.as_str()), ("bad.yaml", "wrong-password")] {
        let plain = ctx.file(&format!("plain-{name}"), &creds(password));
        let sealed = ctx.berth(&["seal", "-f", &plain, "--recipient", &recipient]).expect(0).stdout;
        ctx.file(name, &sealed);
    }
    let (none, good) = (ctx.app("sec-nocred"), ctx.app("sec-cred"));
    ctx.apply("none.yaml", &app_doc(&none, ""));
    let env = [("BERTH_SEALING_KEY_FILE", key)];
    let r = ctx.berth_env(&["converge", &none, "-n", ns], &env).expect(4);
    assert!(r.stdout.contains(&format!("registry {} requires credentials", reg.address)), "{}", r.stdout);

    ctx.berth(&["apply", "-f", &ctx.dir.path().join("bad.yaml").to_string_lossy()]).expect(0);
    ctx.apply("good-app.yaml", &app_doc(&good, "  imagePullSecrets: [regcred]\n"));
    let r = ctx.berth_env(&["converge", &good, "-n", ns], &env).expect(4);
    assert!(r.stdout.contains(&format!("refused the credentials of {}", reg.user)), "{}", r.stdout);
    assert!(!r.stdout.contains("wrong-password") && !r.stderr.contains("wrong-password"));

    ctx.berth(&["apply", "-f", &ctx.dir.path().join("good.yaml").to_string_lossy()]).expect(0);
    let r = ctx.berth_env(&["converge", &good, "-n", ns], &env).expect(0);
    assert!(!r.stdout.contains(&reg.password) && !r.stderr.contains(&reg.password));
    assert_eq!(app_containers(tb, "host2", &good).len(), 1);
}
