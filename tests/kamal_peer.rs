//! The real Kamal 2.11 as a peer on the test bed (`tests/common/kamal.rs`): Kamal deploys over real
//! sshds in the bed's hosts; what `berth import kamal` makes of a Kamal file is checked against what
//! Kamal itself resolves and runs for the same file and destination; and an imported app runs under
//! berth over `ssh://` Hosts through the same sshds.
mod common;

use common::kamal::KamalProject;
use common::testbed::{secs, Testbed};

/// Every container's command: exits at once on SIGTERM (httpd as PID 1 would ignore it), so Kamal's
/// stops and the clean-up are quick.
const CMD: &str = r#"sh -c "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait""#;

/// A small app: accessory `db` on host1, role `web` on every host, role `jobs` on host2 and host3,
/// clear env for all and one of each role's own.
fn small_app(k: &KamalProject) -> String {
    let [h1, h2, h3] = ["host1", "host2", "host3"].map(|h| k.address(h).to_string());
    format!(
        "service: {service}\nimage: {image}\n{registry}{builder}{ssh}\
         servers:\n  web:\n    hosts: [{h1}, {h2}, {h3}]\n    cmd: {CMD}\n    proxy: false\n    env:\n      clear:\n        ROLE_NAME: web\n\
         \x20 jobs:\n    hosts: [{h2}, {h3}]\n    cmd: {CMD}\n    proxy: false\n\
         env:\n  clear:\n    GREETING: hello\n\
         accessories:\n  db:\n    image: {accessory}\n    host: {h1}\n    cmd: {CMD}\n    env:\n      clear:\n        DB_NAME: demo\n",
        service = k.service,
        image = k.image_name(),
        registry = k.registry_yaml(),
        builder = k.builder_yaml(),
        ssh = k.ssh_yaml(),
        accessory = k.tb.images.accessory,
    )
}

/// (a) The harness is right: Kamal sets the small app up over the sshds, every container runs where
/// the file says with the env it says, and Kamal's own view (`kamal config`, `server exec -r`) agrees.
#[test]
fn kamal_sets_up_an_accessory_and_two_roles_over_the_beds_sshds() {
    let tb = Testbed::get();
    let _hosts = tb.shared();
    let k = KamalProject::new("kpeer-smoke");
    k.push_image("v1");
    k.write("config/deploy.yml", &small_app(&k));

    let config = k.config(None);
    let roles: Vec<&str> = config[":roles"].as_sequence().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert_eq!(roles, ["jobs", "web"], "{config:?}");
    assert_eq!(k.role_hosts("jobs", None), [k.address("host2"), k.address("host3")]);

    let r = k.kamal_ok(&["setup", "--skip-push"], secs(300));
    eprintln!("kamal setup took {:?}", r.elapsed);
    for host in ["host1", "host2", "host3"] {
        let web = k.running(host, "web");
        assert_eq!(web.len(), 1, "web on {host}: {:?}", k.containers(host));
        assert_eq!(web[0].name, format!("{}-web-v1", k.service));
        assert_eq!(web[0].env.get("GREETING").map(String::as_str), Some("hello"));
        assert_eq!(web[0].env.get("ROLE_NAME").map(String::as_str), Some("web"));
        let jobs = k.running(host, "jobs");
        assert_eq!(jobs.len(), usize::from(host != "host1"), "jobs on {host}: {:?}", k.containers(host));
        if let Some(j) = jobs.first() {
            assert_eq!(j.env.get("ROLE_NAME"), None, "{j:?}");
            assert_eq!(j.cmd, ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]);
        }
    }
    assert_eq!(k.accessory_hosts("db"), ["host1"]);
    let db = k.containers("host1").into_iter().find(|c| c.service == format!("{}-db", k.service)).unwrap();
    assert_eq!(db.env.get("DB_NAME").map(String::as_str), Some("demo"), "{db:?}");
    assert_eq!(db.image, tb.images.accessory);
}
