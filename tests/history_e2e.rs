//! End to end on the real test bed, `berth converge` by hand: history and rollback. Two deploys
//! are recorded with their outcomes and change causes; once v1's tag has moved in the registry,
//! `berth rollback` brings back generation 1 as generation 3 on v1's ORIGINAL digest (checked with
//! `docker inspect` and the status pin); a generation never recorded is refused (exit 3); the
//! history keys go with the App.
mod common;

use common::containers::one;
use common::specs::{unix_hosts, AppSpec, RoleSpec, HTTPD};
use common::testbed::{unique, Testbed};
use common::world::Ctx;
use serde_json::Value;

#[test]
fn rollback_runs_the_original_digest_of_an_earlier_generation() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("history");
    let app = ctx.app("e2e-hist");
    let ns = "prod";
    // A tag of this test's own, so moving it in the registry moves nobody else.
    let tag = format!("{}/berth-test/app:{}", tb.registry, unique("hist-v1"));
    let point_tag_at = |source: &str| {
        tb.docker_ok("host1", &["pull", "-q", source]);
        tb.docker_ok("host1", &["tag", source, &tag]);
        tb.docker_ok("host1", &["push", &tag]);
        tb.docker_ok("host1", &["rmi", &tag]);
    };
    point_tag_at(&tb.images.app_v1);
    let v1_pin = format!("{}/berth-test/app@{}", tb.registry, tb.digests.app_v1);
    let spec = |image: &str| {
        AppSpec::new(&app, ns, image).env("GREETING", "hello").role("web", RoleSpec::on(&["host1"]).cmd(HTTPD)).yaml()
    };
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let deploy = |image: &str, cause: &str| {
        let f = ctx.file("app.yaml", &spec(image));
        ctx.berth(&["apply", "-f", &f, "--cause", cause]).expect(0);
        ctx.converge(&app, ns).expect(0);
    };
    deploy(&tag, "deploy v1");
    assert_eq!(one(tb, "host1", &app, ns, "role/web").image, v1_pin);
    deploy(&tb.images.app_v2, "deploy v2");
    let v2 = one(tb, "host1", &app, ns, "role/web");
    assert_ne!(v2.image, v1_pin);

    // Both generations, with their outcomes and causes; a resync records nothing new.
    ctx.converge(&app, ns).expect(0);
    let listed = ctx.berth(&["history", &app, "-n", ns]).expect(0).stdout;
    // GENERATION OUTCOME WHEN IMAGES CAUSE (the cause last: it may hold spaces).
    let rows: Vec<Vec<String>> = listed
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mut row: Vec<String> = f.iter().take(4).map(|s| s.to_string()).collect();
            row.push(f[4..].join(" "));
            row
        })
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!((&*rows[0][0], &*rows[0][1], &*rows[0][4]), ("1", "Ready", "deploy v1"), "{listed}");
    assert_eq!((&*rows[1][0], &*rows[1][1], &*rows[1][4]), ("2*", "Ready", "deploy v2"), "{listed}");
    assert!(rows[0][3].contains(&tb.digests.app_v1.trim_start_matches("sha256:")[..12]), "{listed}");
    // The list never shows a spec (env values); one generation in json does.
    assert!(!listed.contains("hello"), "{listed}");
    let json = ctx.berth(&["history", &app, "-n", ns, "-o", "json"]).expect(0).stdout;
    assert!(!json.contains("hello") && !json.contains("\"spec\""), "{json}");
    let one_gen: Value = serde_json::from_str(
        &ctx.berth(&["history", &app, "-n", ns, "--generation", "1", "-o", "json"]).expect(0).stdout,
    )
    .unwrap();
    assert_eq!(one_gen["spec"]["image"], tag.as_str(), "{one_gen:#}");
    assert_eq!(one_gen["images"][&tag], v1_pin.as_str(), "{one_gen:#}");

    // v1's tag moves to v2's image; the rollback still runs v1's original digest.
    point_tag_at(&tb.images.app_v2);
    let r = ctx.berth(&["rollback", &app, "-n", ns]).expect(0);
    assert!(r.stdout.contains("rolled back to generation 1 as generation 3"), "{}", r.stdout);
    ctx.converge(&app, ns).expect(0);
    let rolled = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(rolled.image, v1_pin, "the rollback resolved the moved tag");
    assert_eq!(rolled.image_id, one_image_id(tb, &v1_pin));
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["observedGeneration"], 3, "{status:#}");
    assert_eq!(status["images"][&tag], v1_pin.as_str(), "{status:#}");
    let listed = ctx.berth(&["history", &app, "-n", ns]).expect(0).stdout;
    assert!(listed.lines().any(|l| l.starts_with("3*") && l.contains("rollback to generation 1")), "{listed}");

    // A generation never recorded is refused, naming what is.
    let r = ctx.berth(&["rollback", &app, "-n", ns, "--to-generation", "99"]).expect(3);
    assert!(r.stderr.contains("no recorded generation 99 (recorded: 1, 2, 3)"), "{}", r.stderr);
    ctx.berth(&["rollback", "no-such-app", "-n", ns]).expect(3);

    // The history goes with the App.
    assert!(ctx.keys().iter().any(|k| k.contains("/history/")));
    ctx.delete(&app, ns);
    let left: Vec<String> = ctx.keys().into_iter().filter(|k| k.contains("/history/")).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The image id a pinned reference names on host1.
fn one_image_id(tb: &Testbed, pinned: &str) -> String {
    tb.docker_ok("host1", &["image", "inspect", "--format", "{{.Id}}", pinned]).trim().to_string()
}
