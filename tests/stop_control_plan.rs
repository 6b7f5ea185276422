//! Stop control as plain data: `stopTimeout` and `stopSignal` reach the container template and
//! Docker's create body, count in the config hash when set, and leave every hash without them as it
//! was (tests/plan_hash.rs pins those); validation names the field.

mod plan_support;

use berth::docker::ops::create_body;
use berth::plan;
use plan_support::{app, hosts, images_for};
use serde_json::{json, Value};

fn spec(worker_extra: Value, db_extra: Value) -> berth::spec::App {
    let mut worker = json!({"hosts": ["h1"], "cmd": "bin/worker"});
    let mut db = json!({"image": "postgres:16", "hosts": ["h1"]});
    worker.as_object_mut().unwrap().extend(worker_extra.as_object().unwrap().clone());
    db.as_object_mut().unwrap().extend(db_extra.as_object().unwrap().clone());
    app("shop", "prod", json!({"image": "shop:v1", "roles": {"worker": worker}, "accessories": {"db": db}}))
}

/// `component` → (hash, stop timeout, stop signal, create body's StopTimeout and StopSignal).
type Stop = (String, Option<u32>, Option<String>, Option<i64>, Option<String>);

fn stops(a: &berth::spec::App) -> Vec<(String, Stop)> {
    let containers = plan::desired(a, &hosts(&["h1"]), &images_for(a)).expect("desired");
    containers
        .iter()
        .map(|c| {
            let body = create_body(c);
            let t = (c.hash.clone(), c.stop_timeout, c.stop_signal.clone(), body.stop_timeout, body.stop_signal);
            (c.component.to_string(), t)
        })
        .collect()
}

#[test]
fn stop_fields_reach_the_template_and_the_create_body() {
    let set = spec(json!({"stopTimeout": "2m", "stopSignal": "quit"}), json!({"stopSignal": "SIGINT"}));
    let got = stops(&set);
    let (db, worker) = (&got[0].1, &got[1].1);
    assert_eq!((got[0].0.as_str(), got[1].0.as_str()), ("accessory/db", "role/worker"));
    assert_eq!(
        (worker.1, worker.2.as_deref(), worker.3, worker.4.as_deref()),
        (Some(120), Some("SIGQUIT"), Some(120), Some("SIGQUIT"))
    );
    assert_eq!((db.1, db.2.as_deref(), db.3, db.4.as_deref()), (None, Some("SIGINT"), None, Some("SIGINT")));
}

#[test]
fn stop_fields_change_the_hash_only_when_set() {
    let hash_of = |w: Value, d: Value| stops(&spec(w, d)).into_iter().map(|(_, s)| s.0).collect::<Vec<_>>();
    let plain = hash_of(json!({}), json!({}));
    assert_eq!(plain, hash_of(json!({}), json!({})), "the hash is stable");
    let timeout = hash_of(json!({"stopTimeout": "30s"}), json!({}));
    assert_eq!(timeout[0], plain[0], "the accessory is untouched");
    assert_ne!(timeout[1], plain[1], "a stop timeout is part of the container's config");
    let signal = hash_of(json!({"stopSignal": "SIGTERM"}), json!({}));
    assert_ne!(signal[1], plain[1]);
    assert_ne!(signal[1], timeout[1]);
    // How the signal is written does not matter: `term`, `TERM` and `SIGTERM` are one config.
    assert_eq!(hash_of(json!({"stopSignal": "term"}), json!({}))[1], signal[1]);
}

#[test]
fn validation_names_the_bad_stop_field() {
    let bad = spec(json!({"stopTimeout": "1.5s"}), json!({"stopSignal": "SIGKILL"}));
    let err = format!("{:?}", berth::spec::validate_app(&bad).unwrap_err());
    assert!(err.contains("spec.roles.worker.stopTimeout"), "{err}");
    assert!(err.contains("spec.accessories.db.stopSignal"), "{err}");
    assert!(err.contains("SIGKILL"), "{err}");
}
