//! End to end on the real test bed, `berth converge` by hand: images. A host that runs only
//! accessories never pulls the app image; an image forced off a host is pulled again; each
//! namespace keeps the image its status pinned when the tag moves in the registry, until `berth
//! repin`. Checked with `docker inspect`, `docker image ls` and HTTP against the published ports.
//!
//! Isolation as in every engine binary: [`Ctx`] per test, [`Ctx::app`] names, this binary's own
//! host ports ([`port`]), [`Testbed::shared`] held throughout.
mod common;

use std::sync::atomic::AtomicU16;

use common::containers::one;
use common::ports::host_port;
use common::specs::{unix_hosts, AppSpec, RoleSpec, HTTPD, WEB_HEALTH};
use common::testbed::{http_body, secs, unique, wait_for_http, Testbed};
use common::world::Ctx;

/// A host port no other test of this run publishes: `26000 + (pid % 150) * 20 + n`, n < 20 (the
/// engine binaries share 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 26000, 150, 20, "engine_images")
}

/// A host that runs only accessories never pulls the app image, and the converge succeeds.
#[test]
fn a_host_with_only_accessories_never_holds_the_app_image() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-img");
    let ns = "prod";
    let web_port = port();

    // An app image no other test uses, not on host1 either: host1 pulls it like any other host.
    let (image, image_id) = tb.private_app_image("e2e-app");
    let repo = image.trim_end_matches(":v1").to_string();

    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = |with_worker: bool| {
        let mut s = AppSpec::new(&app, ns, &image)
            .accessory("cache", RoleSpec::on(&["host3"]).image(&tb.images.accessory).cmd(HTTPD).health(WEB_HEALTH));
        if with_worker {
            s = s.role("worker", RoleSpec::on(&["host1"]).cmd(HTTPD));
        }
        s.role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).publish(web_port)).yaml()
    };
    ctx.apply("app.yaml", &spec(false));
    ctx.converge(&app, ns).expect(0);

    let web = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(web.image_id, image_id, "host1 runs another image");
    assert!(web.image.starts_with(&format!("{repo}@sha256:")), "{}", web.image);
    assert_eq!(wait_for_http(&tb.host("host1").address, web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(one(tb, "host3", &app, ns, "accessory/cache").status, "running");

    let listing = tb.docker_ok(
        "host3",
        &["image", "ls", "--digests", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}"],
    );
    assert!(!listing.contains(&repo) && !listing.contains(&image_id), "host3 holds the app image:\n{listing}");
    assert!(!tb.docker("host3", &["image", "inspect", &image_id]).status.success(), "host3 holds {image_id}");

    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert_eq!(status["images"][&image].as_str(), Some(web.image.as_str()), "{status:#}");

    // Someone forces the image's reference off host1 while web still uses it: a new role there
    // still comes up (berth pulls the pinned image again rather than trusting what web runs).
    tb.docker_ok("host1", &["rmi", "-f", &web.image]);
    ctx.apply("app.yaml", &spec(true));
    ctx.converge(&app, ns).expect(0);
    let worker = one(tb, "host1", &app, ns, "role/worker");
    assert_eq!((worker.status.as_str(), worker.image_id.as_str()), ("running", image_id.as_str()));
    assert_eq!(one(tb, "host1", &app, ns, "role/web").id, web.id, "web was touched");

    ctx.delete(&app, ns);
    let _ = tb.docker("host1", &["rmi", &web.image]);
}

/// One app in staging and in production on one host: both run; a change to production leaves
/// staging's containers alone; once the tag moves in the registry, staging still runs (and a
/// `docker restart` still serves) the image its status pinned, and so does production through a
/// spec change that leaves `image` alone. `berth repin` moves production alone to the new image.
#[test]
fn staging_and_production_on_one_host_stay_apart_and_keep_their_pinned_image() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-dest");
    let tag = format!("{}/berth-test/app:{}", tb.registry, unique("e2e-tag"));
    let point_tag_at = |source: &str| tb.point_tag(&tag, source);
    point_tag_at(&tb.images.app_v1);
    let (staging_port, production_port) = (port(), port());
    let spec = |ns: &str, port: u16, greeting: &str| {
        AppSpec::new(&app, ns, &tag)
            .env("GREETING", greeting)
            .role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).publish(port).health(WEB_HEALTH))
            .yaml()
    };
    let has_env = |c: &common::containers::Ctr, kv: &str| c.env.contains(&kv.to_string());
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("staging.yaml", &spec("staging", staging_port, "hello-staging"));
    ctx.apply("production.yaml", &spec("production", production_port, "hello-production"));
    ctx.converge(&app, "staging").expect(0);
    ctx.converge(&app, "production").expect(0);
    let host = tb.host("host1").address.clone();
    for p in [staging_port, production_port] {
        assert_eq!(wait_for_http(&host, p, "/", "v1", secs(10)).trim(), "v1");
    }
    let staging = one(tb, "host1", &app, "staging", "role/web");
    let production = one(tb, "host1", &app, "production", "role/web");
    assert!(has_env(&staging, "GREETING=hello-staging"));
    assert!(has_env(&production, "GREETING=hello-production"));

    // Production changes; staging is not touched.
    ctx.apply("production.yaml", &spec("production", production_port, "bonjour-production"));
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let production2 = one(tb, "host1", &app, "production", "role/web");
    assert_ne!(production2.id, production.id);
    assert!(has_env(&production2, "GREETING=bonjour-production"));
    let staging2 = one(tb, "host1", &app, "staging", "role/web");
    assert_eq!((&staging2.id, &staging2.started), (&staging.id, &staging.started), "staging was touched");

    // The tag moves to v2 in the registry: neither namespace follows it without a spec change.
    point_tag_at(&tb.images.app_v2);
    let pinned = format!("{}/berth-test/app@{}", tb.registry, tb.digests.app_v1);
    for ns in ["staging", "production"] {
        let r = ctx.converge(&app, ns).expect(0);
        assert_eq!(r.actions(), "no changes", "{ns}: {}", r.stdout);
        let status = ctx.current_status(&app, ns);
        assert_eq!(status["images"][&tag].as_str(), Some(pinned.as_str()), "{ns}: {status:#}");
    }
    assert_eq!(staging.image, pinned);
    tb.docker_ok("host1", &["restart", "-t", "1", &staging.id]);
    let staging3 = one(tb, "host1", &app, "staging", "role/web");
    assert_eq!(staging3.id, staging.id);
    assert_ne!(staging3.started, staging.started, "docker restart did not restart");
    assert_eq!(wait_for_http(&host, staging_port, "/", "v", secs(10)).trim(), "v1", "staging left its pinned image");
    assert_eq!(http_body(&host, production_port).as_deref(), Some("v1"));

    // An env change replaces production's container, on the image it already pinned.
    ctx.apply("production.yaml", &spec("production", production_port, "hallo-production"));
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let production3 = one(tb, "host1", &app, "production", "role/web");
    assert!(has_env(&production3, "GREETING=hallo-production"));
    assert_eq!(production3.image, pinned, "an env change swapped the image");
    assert_eq!(wait_for_http(&host, production_port, "/", "v", secs(10)).trim(), "v1");

    // `berth repin` resolves production's tag again: it rolls to v2; staging stays on v1.
    let r = ctx.berth(&["repin", &app, "-n", "production"]).expect(0);
    assert!(r.stdout.contains("repin requested"), "{}", r.stdout);
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let moved = format!("{}/berth-test/app@{}", tb.registry, tb.digests.app_v2);
    let status = ctx.current_status(&app, "production");
    assert_eq!(status["images"][&tag].as_str(), Some(moved.as_str()), "{status:#}");
    assert_eq!(one(tb, "host1", &app, "production", "role/web").image, moved);
    assert_eq!(wait_for_http(&host, production_port, "/", "v2", secs(10)).trim(), "v2");
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.actions(), "no changes", "a repin is done once: {}", r.stdout);
    assert_eq!(ctx.current_status(&app, "staging")["images"][&tag].as_str(), Some(pinned.as_str()));
    assert_eq!(http_body(&host, staging_port).as_deref(), Some("v1"));
    // A repin of an app that does not exist names it and exits 3.
    let r = ctx.berth(&["repin", "no-such-app", "-n", "production"]).expect(3);
    assert!(r.stderr.contains("app/no-such-app -n production"), "{}", r.stderr);

    ctx.delete(&app, "staging");
    ctx.delete(&app, "production");
}

/// Image pins have a key of their own: a status corrupted by hand is replaced, but never makes berth
/// resolve a moved tag again; unreadable pins are the App's error (named, nothing touched), never a
/// reason to resolve either.
#[test]
fn a_corrupt_status_never_resolves_a_moved_tag_again() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-pins");
    let ns = "prod";
    let tag = format!("{}/berth-test/app:{}", tb.registry, unique("e2e-pintag"));
    let point_tag_at = |source: &str| tb.point_tag(&tag, source);
    point_tag_at(&tb.images.app_v1);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = AppSpec::new(&app, ns, &tag).role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).health(WEB_HEALTH));
    ctx.apply("app.yaml", &spec.yaml());
    ctx.converge(&app, ns).expect(0);
    let first = one(tb, "host1", &app, ns, "role/web");
    assert!(first.image.contains("@sha256:"), "not pinned: {}", first.image);
    assert!(ctx.keys().iter().any(|k| k.ends_with(&format!("/pins/{ns}/{app}"))), "no pins key: {:?}", ctx.keys());

    point_tag_at(&tb.images.app_v2);
    ctx.put_raw(&format!("status/apps/{ns}/{app}"), "{not json");
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "", "{}", r.stdout);
    let again = one(tb, "host1", &app, ns, "role/web");
    assert_eq!((&again.id, &again.image), (&first.id, &first.image), "the moved tag was resolved again");
    assert_eq!(ctx.current_status(&app, ns)["images"][&tag].as_str(), Some(first.image.as_str()));

    ctx.put_raw(&format!("pins/{ns}/{app}"), "[]");
    let r = ctx.converge(&app, ns).expect(4);
    assert!(r.stderr.contains("image pins at") && r.stderr.contains("unreadable"), "{}", r.stderr);
    let still = one(tb, "host1", &app, ns, "role/web");
    assert_eq!((&still.id, &still.image), (&first.id, &first.image), "unreadable pins touched the container");
    ctx.delete(&app, ns);
}
