//! How long planning takes for a large app, so the converge loop's pure part stays negligible
//! next to Docker round trips. Needs `[[bench]] name = "plan", harness = false` in Cargo.toml.
#![allow(dead_code)] // Under the default libtest harness `main` below is unused; the bench still compiles.

mod common;

use std::hint::black_box;

use berth::plan;
use common::{big_app, empty, hosts, images};
use criterion::{criterion_group, criterion_main, Criterion};

const HOSTS: usize = 100;

fn bench(c: &mut Criterion) {
    let (hs, imgs) = (hosts(HOSTS), images());
    let empty = empty(&hs);
    let v1 = big_app(HOSTS, "1");
    let mut converged = empty.clone();
    plan::simulate(&plan::plan(&v1, &hs, &imgs, &empty).unwrap(), &mut converged);
    let v2 = big_app(HOSTS, "2");

    c.bench_function("desired/100 hosts", |b| b.iter(|| plan::desired(black_box(&v1), &hs, &imgs).unwrap()));
    c.bench_function("plan/fresh 100 hosts", |b| b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &empty).unwrap()));
    c.bench_function("plan/no-op 100 hosts", |b| {
        b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &converged).unwrap())
    });
    c.bench_function("plan/rolling 100 hosts", |b| {
        b.iter(|| plan::plan(black_box(&v2), &hs, &imgs, &converged).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
