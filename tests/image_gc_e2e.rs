//! Image clean-up on the real test bed: after five deploys of five different images through a
//! running operator, host1 keeps the last three images berth pulled for the app plus one a
//! container still uses, the others berth pulled are gone, and an image pulled by hand stays.
mod common;

use common::containers::app_containers;
use common::specs::{unix_hosts, IDLE};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};

fn app_doc(app: &str, ns: &str, image: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  image: {image}\n  roles:\n    worker: {{hosts: [host1], cmd: {IDLE}}}\n"
    )
}

fn on_host1(tb: &Testbed, image: &str) -> bool {
    tb.docker("host1", &["image", "inspect", image]).status.success()
}

#[test]
fn the_last_three_pulls_and_the_images_in_use_stay() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("imagegc");
    let (app, ns) = (ctx.app("gc-app"), "prod");
    let tags: Vec<String> = (1..=5).map(|i| tb.private_app_image(&format!("gc-v{i}")).0).collect();
    let (by_hand, _) = tb.private_app_image("gc-hand");
    tb.docker_ok("host1", &["pull", "-q", &by_hand]);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("a", &[]);
    let mut pinned = Vec::new();
    let hand_container = format!("{app}-by-hand");
    let _rm = tb.container("host1", &hand_container);
    for (i, tag) in tags.iter().enumerate() {
        ctx.apply("app.yaml", &app_doc(&app, ns, tag));
        let generation = i as i64 + 1;
        ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, generation));
        let running = app_containers(tb, "host1", &app);
        assert_eq!(running.len(), 1, "deploy {generation}: {:?}", common::containers::shorts(&running));
        assert!(running[0].image.contains("@sha256:"), "berth runs pinned images: {}", running[0].image);
        pinned.push(running[0].image.clone());
        if generation == 3 {
            // A container of someone else's keeps the first image in use, beyond the retention.
            tb.docker_ok("host1", &["create", "--name", &hand_container, &pinned[0]]);
        }
    }
    let cleaned = wait_until(secs(60), || !on_host1(tb, &pinned[1]));
    assert!(cleaned, "the second image is still on host1\n{}", op.log());
    for (i, image) in pinned.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(on_host1(tb, image), "image {} ({image}) is gone from host1", i + 1);
    }
    assert!(on_host1(tb, &by_hand), "the image pulled by hand ({by_hand}) is gone");
    let metrics = op.metrics();
    assert!(metrics.contains("berth_images_removed_total{host=\"host1\"} 1\n"), "{metrics}");
    let bytes = metrics.lines().find(|l| l.starts_with("berth_image_bytes_reclaimed_total{host=\"host1\"}"));
    let bytes: f64 = bytes.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0.0);
    assert!(bytes > 0.0, "no bytes reclaimed on host1: {metrics}");
    drop(op);
    ctx.delete(&app, ns);
    for image in pinned.iter().chain(tags.iter()).chain([&by_hand]) {
        let _ = tb.docker("host1", &["rmi", image]);
    }
}

#[test]
fn a_converge_run_by_hand_records_what_it_pulled() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("imagegc");
    let (app, ns) = (ctx.app("gc-cli"), "prod");
    let (tag, _) = tb.private_app_image("gc-cli");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &app_doc(&app, ns, &tag));
    ctx.converge(&app, ns).expect(0);
    let running = app_containers(tb, "host1", &app);
    assert_eq!(running.len(), 1, "{:?}", common::containers::shorts(&running));
    let pinned = &running[0].image;
    // The host's record of berth's pulls (what the clean-up may ever remove) holds it.
    let dump = ctx.dump();
    let record = dump.lines().find(|l| l.contains("/images/host1 ")).unwrap_or_else(|| panic!("no record:\n{dump}"));
    assert!(record.contains(pinned.as_str()), "{pinned} is not in host1's record: {record}");
    ctx.delete(&app, ns);
}
