//! End to end on the real test bed: GitOps apply sets. `berth apply -f DIR --prune --set NAME`
//! removes what left the folder (its containers go, its volumes stay) and nothing else; empty or
//! broken input and mass prunes are refused with nothing written; `berth diff` shows what an apply
//! would change and exits 1, then 0 once applied.
mod common;

use std::path::Path;

use common::containers::app_containers;
use common::specs::{unix_hosts, AppSpec, RoleSpec, IDLE};
use common::testbed::Testbed;
use common::world::Ctx;

/// An App with one idle role on host1 and host2, a named volume, and RELEASE in its env.
fn app(tb: &Testbed, name: &str, release: &str) -> String {
    AppSpec::new(name, "prod", &tb.images.app_v1)
        .env("RELEASE", release)
        .role("web", RoleSpec::on(&["host1", "host2"]).cmd(IDLE).volume("data:/data"))
        .yaml()
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn volumes(tb: &Testbed, host: &str, app: &str) -> Vec<String> {
    let out = tb.docker_ok(host, &["volume", "ls", "-q", "--filter", &format!("name={app}-")]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_set_prunes_only_what_left_its_files_and_keeps_volumes() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("applyset");
    let (a, b, c, hand) = (ctx.app("set-a"), ctx.app("set-b"), ctx.app("set-c"), ctx.app("set-hand"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "hosts.yaml", &unix_hosts(tb));
    for name in [&a, &b, &c] {
        write(dir.path(), &format!("{name}.yaml"), &app(tb, name, "one"));
    }
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "web"]).expect(0);
    assert!(r.stdout.contains(&format!("app/{c} -n prod created")), "{}", r.stdout);
    ctx.apply("hand.yaml", &app(tb, &hand, "one"));
    for name in [&a, &b, &c, &hand] {
        ctx.converge(name, "prod").expect(0);
    }
    let before: Vec<_> = [&a, &b, &hand].iter().map(|n| app_containers(tb, "host1", n)).collect();
    assert!(!volumes(tb, "host1", &c).is_empty(), "no volume for {c}");

    // c's file leaves the folder: c is pruned, nothing else is touched.
    std::fs::remove_file(dir.path().join(format!("{c}.yaml"))).unwrap();
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "web", "--dry-run"]).expect(0);
    assert!(r.stdout.contains(&format!("app/{c} -n prod pruned (marked for deletion) (dry run)")), "{}", r.stdout);
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "web"]).expect(0);
    assert!(r.stdout.contains(&format!("app/{c} -n prod pruned (marked for deletion)")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("app/{a} -n prod unchanged")), "{}", r.stdout);
    let done = ctx.converge(&c, "prod").expect(0);
    assert!(done.stdout.contains(&format!("app/{c} -n prod deleted")), "{}", done.stdout);
    for h in ["host1", "host2"] {
        assert!(app_containers(tb, h, &c).is_empty(), "{c} still has containers on {h}");
        assert!(!volumes(tb, h, &c).is_empty(), "the prune removed {c}'s volume on {h}");
    }
    let after: Vec<_> = [&a, &b, &hand].iter().map(|n| app_containers(tb, "host1", n)).collect();
    let ids = |cs: &Vec<Vec<common::containers::Ctr>>| -> Vec<Vec<String>> {
        cs.iter().map(|v| v.iter().map(|c| format!("{} {}", c.id, c.started)).collect()).collect()
    };
    assert_eq!(ids(&before), ids(&after), "a prune touched another app");
    let sets = ctx.berth(&["get", "applysets"]).expect(0);
    let line = sets.stdout.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("{}", sets.stdout));
    assert_eq!(line.split_whitespace().take(3).collect::<Vec<_>>(), ["web", "2", "3"], "{}", sets.stdout);
    // The hand-applied App survives every apply of the set.
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "web"]).expect(0);
    assert!(!r.stdout.contains(&hand), "{}", r.stdout);
    assert_eq!(ctx.current_status(&hand, "prod")["phase"], "Ready");
}

#[test]
fn empty_or_broken_input_and_mass_prunes_are_refused_with_nothing_written() {
    let tb = Testbed::get();
    let ctx = Ctx::new("applyset");
    let names: Vec<String> = (0..3).map(|i| ctx.app(&format!("guard{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "hosts.yaml", &unix_hosts(tb));
    for n in &names {
        write(dir.path(), &format!("{n}.yaml"), &app(tb, n, "one"));
    }
    ctx.berth(&["apply", "-f", d, "--prune", "--set", "guard"]).expect(0);
    let stored = || ctx.berth(&["get", "apps", "-n", "prod"]).expect(0).stdout;
    let before = stored();

    // A checkout that lost every file: an empty folder, or a file with no resource in it.
    let empty = tempfile::tempdir().unwrap();
    let r = ctx.berth(&["apply", "-f", empty.path().to_str().unwrap(), "--prune", "--set", "guard"]).expect(1);
    assert!(r.stderr.contains("folder has no .yaml"), "{}", r.stderr);
    write(empty.path(), "nothing.yaml", "# nothing here\n");
    let r = ctx.berth(&["apply", "-f", empty.path().to_str().unwrap(), "--prune", "--set", "guard"]).expect(6);
    assert!(
        r.stderr.contains("apply set guard: the files hold no resource") && r.stderr.contains("--allow-mass-prune")
    );

    // A broken file: nothing is written, nothing pruned.
    std::fs::remove_file(dir.path().join(format!("{}.yaml", names[2]))).unwrap();
    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {name: x}\nspec: {imagee: y}\n",
    );
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "guard"]).expect(1);
    assert!(r.stderr.contains("broken.yaml"), "{}", r.stderr);
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();

    // Two of three Apps at once is more than half.
    std::fs::remove_file(dir.path().join(format!("{}.yaml", names[1]))).unwrap();
    let r = ctx.berth(&["apply", "-f", d, "--prune", "--set", "guard"]).expect(6);
    assert!(r.stderr.contains("would prune 2 of its 3 Apps"), "{}", r.stderr);
    assert_eq!(stored(), before, "a refused apply changed the store");
    assert!(!stored().contains("yes"), "an App was marked for deletion");

    // A set never takes another set's App without --force-adopt.
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "a.yaml", &app(tb, &names[0], "one"));
    let o = other.path().to_str().unwrap();
    let r = ctx.berth(&["apply", "-f", o, "--prune", "--set", "other"]).expect(6);
    assert!(r.stderr.contains("belongs to apply set guard") && r.stderr.contains("--force-adopt"), "{}", r.stderr);
    ctx.berth(&["apply", "-f", o, "--set", "other", "--force-adopt"]).expect(0);
    let sets = ctx.berth(&["get", "applysets", "-o", "json"]).expect(0).stdout;
    let sets: serde_json::Value = serde_json::from_str(&sets).unwrap();
    let guard = sets.as_array().unwrap().iter().find(|s| s["name"] == "guard").unwrap();
    assert!(!guard.to_string().contains(&names[0]), "the adopted App is still in its old set: {guard}");
}

#[test]
fn diff_shows_changes_and_prunes_then_nothing_once_applied() {
    let tb = Testbed::get();
    let ctx = Ctx::new("applyset");
    let (a, b) = (ctx.app("diff-a"), ctx.app("diff-b"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "hosts.yaml", &unix_hosts(tb));
    write(dir.path(), "a.yaml", &app(tb, &a, "one"));
    write(dir.path(), "b.yaml", &app(tb, &b, "one"));
    let r = ctx.berth(&["diff", "-f", d]).expect(1);
    assert!(r.stdout.contains(&format!("app/{a} -n prod (not stored)")), "{}", r.stdout);
    ctx.berth(&["apply", "-f", d, "--prune", "--set", "diff"]).expect(0);
    let r = ctx.berth(&["diff", "-f", d, "--prune", "--set", "diff"]).expect(0);
    assert!(r.stdout.contains("no differences"), "{}", r.stdout);

    write(dir.path(), "a.yaml", &app(tb, &a, "two"));
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let r = ctx.berth(&["diff", "-f", d, "--prune", "--set", "diff"]).expect(1);
    assert!(r.stdout.contains("-    RELEASE: one") && r.stdout.contains("+    RELEASE: two"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("app/{b} -n prod would be pruned")), "{}", r.stdout);
    ctx.berth(&["apply", "-f", d, "--prune", "--set", "diff"]).expect(0);
    ctx.berth(&["diff", "-f", d, "--prune", "--set", "diff"]).expect(0);
    // Bad input is not "differs".
    write(dir.path(), "bad.yaml", "kind: App\n");
    ctx.berth(&["diff", "-f", d]).expect(7);
}
