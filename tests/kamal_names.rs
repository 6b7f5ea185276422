//! Kamal's role names converge: an App with role `web_new` and accessory `db_main` (underscores,
//! as Kamal users name them) runs on a real test-bed host through `berth converge`, with those
//! names in its container names, labels and network aliases, and converges to nothing to do.
mod common;

use common::specs::{host_doc, AppSpec, RoleSpec, IDLE};
use common::testbed::Testbed;
use common::world::Ctx;

#[test]
fn a_role_named_web_new_and_an_accessory_named_db_main_converge_on_a_real_host() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("kamal");
    let app = ctx.app("kamal");
    let host = &tb.hosts[0];
    let h = host.name.as_str();
    let spec = AppSpec::new(&app, "default", &tb.images.app_v1)
        .accessory("db_main", RoleSpec::on(&[h]).image(&tb.images.accessory))
        .role("web_new", RoleSpec::on(&[h]).depends_on(&["db_main"]).cmd(IDLE));
    let file = ctx.file("kamal.yaml", &format!("{}---\n{}", host_doc(h, &host.unix), spec.yaml()));
    // This app's containers on the host with `filter` (`label=berth.role=web_new`), as `ID NAME`.
    let containers = |filter: &str| ctx.ps(h, &app, &[filter], "{{.ID}} {{.Names}}");
    ctx.berth(&["validate", "-f", &file]).expect(0);
    ctx.berth(&["apply", "-f", &file]).expect(0);

    let r = ctx.berth(&["converge", &app]).expect(0);
    assert_eq!(r.changes(), "create 2, start 2", "{}", r.stdout);
    let web = containers("label=berth.role=web_new");
    let db = containers("label=berth.accessory=db_main");
    assert_eq!((web.len(), db.len()), (1, 1), "web_new: {web:?}, db_main: {db:?}");
    let (web_id, web_name) = web[0].split_once(' ').unwrap();
    assert!(web_name.starts_with(&format!("{app}-default-web_new-")), "{web_name}");
    // The accessory answers under its own name on the app network (busybox's own resolver: the
    // image's static wget cannot resolve names, so it is given the address).
    let answer = tb.docker_ok(&host.name, &["exec", web_id, "busybox", "nslookup", "db_main", "127.0.0.11"]);
    let ip = answer.lines().filter_map(|l| l.strip_prefix("Address: ")).next_back();
    let ip = ip.unwrap_or_else(|| panic!("db_main does not resolve:\n{answer}")).trim().to_string();
    let got = tb.docker_ok(&host.name, &["exec", web_id, "wget", "-q", "-O", "-", &format!("http://{ip}/")]);
    assert_eq!(got.trim(), "accessory", "db_main at {ip}");

    let r = ctx.berth(&["converge", &app]).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);

    ctx.berth(&["delete", "app", &app]).expect(0);
    let r = ctx.berth(&["converge", &app]).expect(0);
    assert!(r.stdout.contains("deleted"), "{}", r.stdout);
    assert!(containers("label=berth.managed-by=berth").is_empty());
}
