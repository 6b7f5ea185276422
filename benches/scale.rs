//! Planning at fleet scale (issue 6, figure 6): one app over 1,000 hosts, and a resync of 1,000 apps
//! over 100 hosts whose observations hold every app's containers (as a real host list does).
//! Needs `[[bench]] name = "scale", harness = false`; `scripts/bench` reads criterion's medians
//! from `target/criterion/scale/*/new/estimates.json`.
//!
//! Measured in thread CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: the bench shares two cores
//! with test runs, and time spent waiting for a core is not the planner's. On an idle core the two
//! are the same.
#![allow(dead_code)] // Under the default libtest harness `main` below is unused.

mod common;

use std::hint::black_box;
use std::time::Duration;

use berth::plan;
use berth::spec::App;
use common::{big_app, empty, hosts, images};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpuTime(WallTime);

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

fn thread_cpu_ns() -> u64 {
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; x86_64/aarch64 Linux layout.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter() // nanoseconds, shown like wall time
    }
}

/// App `i` of a 1,000-app fleet: a web role on 3 of the 100 hosts and a cache accessory on one.
fn small_app(i: usize, n_hosts: usize) -> App {
    let on: Vec<String> = (0..3).map(|k| format!("h{}", (i + k * 33) % n_hosts)).collect();
    serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "App",
        "metadata": {"name": format!("app{i}"), "namespace": "production", "generation": 1},
        "spec": {
            "image": "registry.local/shop:1",
            "env": {"APP": format!("app{i}")},
            "roles": {"web": {"hosts": on, "healthcheck": {"cmd": "curl -f localhost/up"}}},
            "accessories": {"cache": {"image": "redis:7", "hosts": [format!("h{}", (i + 7) % n_hosts)]}}
        }
    }))
    .unwrap()
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let imgs = images();
    let mut g = c.benchmark_group("scale");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));

    // One app over 1,000 hosts.
    let hs = hosts(1000);
    let fresh = empty(&hs);
    let v1 = big_app(1000, "1");
    let mut converged = fresh.clone();
    plan::simulate(&plan::plan(&v1, &hs, &imgs, &fresh).unwrap(), &mut converged);
    assert!(plan::plan(&v1, &hs, &imgs, &converged).unwrap().is_empty(), "converged means nothing to do");
    let v2 = big_app(1000, "2");
    g.bench_function("one_app_1000_hosts_noop", |b| {
        b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &converged).unwrap())
    });
    g.bench_function("one_app_1000_hosts_fresh", |b| {
        b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &fresh).unwrap())
    });
    g.bench_function("one_app_1000_hosts_rolling", |b| {
        b.iter(|| plan::plan(black_box(&v2), &hs, &imgs, &converged).unwrap())
    });

    // 1,000 apps over 100 hosts: every app planned once against hosts that list all apps' containers.
    // Built inside the closure, so filtering on another benchmark (or profiling one) skips it.
    g.bench_function("thousand_apps_100_hosts_noop", |b| {
        let hs = hosts(100);
        let apps: Vec<App> = (0..1000).map(|i| small_app(i, 100)).collect();
        let mut fleet = empty(&hs);
        for a in &apps {
            let p = plan::plan(a, &hs, &imgs, &fleet).unwrap();
            plan::simulate(&p, &mut fleet);
        }
        assert!(apps.iter().all(|a| plan::plan(a, &hs, &imgs, &fleet).unwrap().is_empty()));
        b.iter(|| {
            for a in &apps {
                black_box(plan::plan(black_box(a), &hs, &imgs, &fleet).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime(WallTime));
    targets = bench
}
criterion_main!(benches);
