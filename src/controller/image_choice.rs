//! Which of the images berth pulled onto a host may go: the pure choice behind the operator's image
//! clean-up ([`super::image_gc`]), on plain data.
//!
//! A host's record lists every pinned image berth pulled there, with the app it pulled it for and
//! a sequence number (later pulls, higher numbers). An image stays while it is among the last
//! `retention` pulls of any app and namespace on that host (so a rollback to a recent generation
//! never waits for a pull) or any container uses it; images berth did not pull are never recorded,
//! so never chosen.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One image berth pulled onto a host for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    /// The pinned reference (`repo@sha256:…`) berth pulled.
    pub image: String,
    pub namespace: String,
    pub app: String,
    /// Later pulls have higher numbers.
    pub seq: u64,
}

/// What berth pulled onto one host (`<prefix>/images/<host>` in etcd).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostImages {
    /// The next sequence number.
    pub next: u64,
    pub images: Vec<Pulled>,
}

impl HostImages {
    /// Records a pull of `image` for an app: its newest, whether or not it was recorded before.
    pub fn note(&mut self, image: &str, namespace: &str, app: &str) {
        let seq = self.next;
        self.next += 1;
        match self.images.iter_mut().find(|p| p.image == image && p.namespace == namespace && p.app == app) {
            Some(p) => p.seq = seq,
            None => self.images.push(Pulled {
                image: image.to_string(),
                namespace: namespace.to_string(),
                app: app.to_string(),
                seq,
            }),
        }
    }

    /// Drops an image from the record (removed, or gone from the host).
    pub fn forget(&mut self, image: &str) {
        self.images.retain(|p| p.image != image);
    }

    /// Whether any recorded image is past the retention: only then may anything go, so only then is
    /// the host asked (a resync with nothing to remove makes no Docker call).
    pub fn beyond_retention(&self, retention: usize) -> bool {
        let keep = self.retained(retention);
        self.images.iter().any(|p| !keep.contains(p.image.as_str()))
    }

    /// The recorded images among the last `retention` pulls of some app and namespace.
    pub fn retained(&self, retention: usize) -> BTreeSet<&str> {
        let mut by_app: BTreeMap<(&str, &str), Vec<&Pulled>> = BTreeMap::new();
        for p in &self.images {
            by_app.entry((&p.namespace, &p.app)).or_default().push(p);
        }
        let mut keep = BTreeSet::new();
        for pulls in by_app.values_mut() {
            pulls.sort_by_key(|p| std::cmp::Reverse(p.seq));
            keep.extend(pulls.iter().take(retention).map(|p| p.image.as_str()));
        }
        keep
    }
}

/// What the host holds of one recorded image: its id, or nothing (removed by someone else).
pub type OnHost = Option<String>;

/// The outcome of one choice for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Recorded images to remove, in reference order.
    pub remove: Vec<String>,
    /// Recorded images the host no longer holds: dropped from the record.
    pub gone: Vec<String>,
}

/// Chooses what to remove on one host: recorded images present on it (`on_host`: reference → id)
/// that are neither retained nor run by any container (`in_use`: image ids of every container,
/// running or not).
pub fn choose(
    record: &HostImages,
    retention: usize,
    on_host: &BTreeMap<String, OnHost>,
    in_use: &BTreeSet<String>,
) -> Choice {
    let keep = record.retained(retention);
    let mut choice = Choice::default();
    let recorded: BTreeSet<&str> = record.images.iter().map(|p| p.image.as_str()).collect();
    for image in recorded {
        match on_host.get(image) {
            Some(None) => choice.gone.push(image.to_string()),
            Some(Some(id)) if !keep.contains(image) && !in_use.contains(id) => choice.remove.push(image.to_string()),
            _ => {}
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pulls: &[(&str, &str)]) -> HostImages {
        let mut r = HostImages::default();
        for (app, image) in pulls {
            r.note(image, "prod", app);
        }
        r
    }

    fn present(images: &[&str]) -> BTreeMap<String, OnHost> {
        images.iter().map(|i| (i.to_string(), Some(format!("id-{i}")))).collect()
    }

    #[test]
    fn the_last_pulls_of_each_app_stay() {
        let r =
            record(&[("shop", "a1"), ("shop", "a2"), ("shop", "a3"), ("shop", "a4"), ("shop", "a5"), ("blog", "b1")]);
        let all = present(&["a1", "a2", "a3", "a4", "a5", "b1"]);
        let c = choose(&r, 3, &all, &BTreeSet::new());
        assert_eq!(c.remove, vec!["a1", "a2"]);
        assert!(c.gone.is_empty());
        assert_eq!(choose(&r, 1, &all, &BTreeSet::new()).remove, vec!["a1", "a2", "a3", "a4"]);
        assert!(r.beyond_retention(3));
        assert!(!r.beyond_retention(5), "five pulls of shop, one of blog: nothing past 5");
    }

    #[test]
    fn an_image_in_use_stays_and_a_repull_is_the_newest() {
        let mut r = record(&[("shop", "a1"), ("shop", "a2"), ("shop", "a3")]);
        r.note("a1", "prod", "shop");
        let all = present(&["a1", "a2", "a3"]);
        assert_eq!(choose(&r, 2, &all, &BTreeSet::new()).remove, vec!["a2"]);
        let in_use = BTreeSet::from(["id-a2".to_string()]);
        assert!(choose(&r, 2, &all, &in_use).remove.is_empty());
    }

    #[test]
    fn an_image_retained_by_another_app_stays() {
        let r = record(&[("shop", "x"), ("shop", "a2"), ("blog", "x")]);
        assert!(choose(&r, 1, &present(&["x", "a2"]), &BTreeSet::new()).remove.is_empty());
        let other_ns = {
            let mut r = record(&[("shop", "x"), ("shop", "a2")]);
            r.note("x", "staging", "shop");
            r
        };
        assert!(choose(&other_ns, 1, &present(&["x", "a2"]), &BTreeSet::new()).remove.is_empty());
    }

    #[test]
    fn unrecorded_images_are_never_chosen_and_vanished_ones_are_dropped() {
        let r = record(&[("shop", "a1"), ("shop", "a2")]);
        let mut host = present(&["a2", "by-hand"]);
        host.insert("a1".into(), None);
        let c = choose(&r, 0, &host, &BTreeSet::new());
        assert_eq!((c.remove, c.gone), (vec!["a2".to_string()], vec!["a1".to_string()]));
        let mut r = r;
        r.forget("a1");
        assert_eq!(r.images.len(), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<HostImages>(&json).unwrap(), r);
    }
}
