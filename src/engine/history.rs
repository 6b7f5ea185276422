//! The history of an App: every generation it reached (or failed) with its spec, the images it ran
//! and the outcome, so `berth rollback` can write an earlier one back with exactly its digests.
//! Recorded at the end of a converge, once per (generation, outcome): a resync that finds the same
//! outcome writes nothing. The last `history_limit` generations are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::images::Pins;
use super::status::{AppStatus, Phase, Reason};
use crate::spec::{App, AppSpec, CHANGE_CAUSE_ANNOTATION};
use crate::store::{now_rfc3339, Store, StoreError};

/// How many generations an App's history keeps unless `--history-limit` says otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 10;

/// What a converge is asked to do beside converging (flags of the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeOptions {
    /// Generations kept in the App's history; 0 records none.
    pub history_limit: usize,
}

impl Default for ConvergeOptions {
    fn default() -> ConvergeOptions {
        ConvergeOptions { history_limit: DEFAULT_HISTORY_LIMIT }
    }
}

/// One recorded generation. Holds the spec (env values), so only `berth history --generation N
/// -o yaml|json` prints it; [`Revision::summary`] is what every other output shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub generation: i64,
    /// `Ready`, `RolloutFailed`, or the phase (`Degraded`, `Blocked`).
    pub outcome: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// When this outcome was recorded (RFC 3339).
    pub at: String,
    /// The `berth.dev/change-cause` annotation of that generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Spec image reference → the pinned `repo@sha256:…` this generation ran.
    pub images: BTreeMap<String, String>,
    pub spec: AppSpec,
}

/// A [`Revision`] without its spec: safe to print anywhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub generation: i64,
    pub outcome: String,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub images: BTreeMap<String, String>,
}

impl Revision {
    pub fn summary(&self) -> Summary {
        Summary {
            generation: self.generation,
            outcome: self.outcome.clone(),
            phase: self.phase,
            reason: self.reason,
            at: self.at.clone(),
            cause: self.cause.clone(),
            images: self.images.clone(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether this record already says what a new one would (the time aside).
    fn same_outcome(&self, other: &Revision) -> bool {
        self.phase == other.phase && self.reason == other.reason && self.images == other.images
    }
}

/// The one word `berth history` shows: `Ready`, `RolloutFailed`, else the phase.
pub fn outcome_word(phase: Phase, reason: Option<Reason>) -> String {
    match (phase, reason) {
        (Phase::Ready, _) => "Ready".into(),
        (_, Some(Reason::RolloutFailed)) => "RolloutFailed".into(),
        (phase, _) => phase.to_string(),
    }
}

/// Which generations to delete so that at most `limit` remain: the oldest.
pub fn to_prune(generations: &[i64], limit: usize) -> Vec<i64> {
    let mut sorted = generations.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(limit);
    sorted.truncate(excess);
    sorted
}

/// `berth rollback`'s default target: the newest Ready generation before `current`.
pub fn default_target(history: &[Revision], current: i64) -> Option<&Revision> {
    history.iter().filter(|r| r.generation < current && r.is_ready()).max_by_key(|r| r.generation)
}

/// Records how this converge left `app`'s generation, unless the history already says so.
/// Progressing is no outcome (the next converge tells), and a deleted App records nothing.
pub async fn record(
    store: &Store,
    app: &App,
    pins: &BTreeMap<String, String>,
    status: &AppStatus,
    limit: usize,
) -> Result<(), StoreError> {
    let generation = app.metadata.generation.unwrap_or(0);
    if limit == 0 || generation == 0 || status.phase == Phase::Progressing || app.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let (ns, name) = (app.namespace(), app.metadata.name.as_str());
    let reason = status.conditions.iter().find(|c| c.kind == "Ready").map(|c| c.reason);
    // While a failed rollout is held, the converge ran the last Ready generation's pins; the
    // failed generation's own pins stay in the pins key (nothing re-pins while it is held).
    let images = match reason {
        Some(Reason::RolloutFailed) => match store.get_pins::<Pins>(ns, name).await {
            Ok(Some(p)) => p.images,
            _ => pins.clone(),
        },
        _ => pins.clone(),
    };
    let revision = Revision {
        generation,
        outcome: outcome_word(status.phase, reason),
        phase: status.phase,
        reason,
        at: now_rfc3339(),
        cause: app.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION).cloned(),
        images,
        spec: app.spec.clone(),
    };
    // A record that does not decode (written around berth) is replaced.
    let stored: Option<Revision> = store.get_history(ns, name, generation).await.unwrap_or(None);
    if stored.is_some_and(|s| s.same_outcome(&revision) && s.spec == revision.spec) {
        return Ok(());
    }
    let mut generations = store.history_generations(ns, name).await?;
    generations.push(generation);
    let prune = to_prune(&generations, limit);
    store.put_history(ns, name, generation, &revision, &prune).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(generation: i64, phase: Phase) -> Revision {
        Revision {
            generation,
            outcome: outcome_word(phase, None),
            phase,
            reason: None,
            at: "2026-01-01T00:00:00Z".into(),
            cause: None,
            images: BTreeMap::new(),
            spec: serde_json::from_str(r#"{"image":"app:v1","roles":{}}"#).unwrap(),
        }
    }

    #[test]
    fn pruning_drops_the_oldest_beyond_the_limit() {
        assert_eq!(to_prune(&[3, 1, 2], 10), Vec::<i64>::new());
        assert_eq!(to_prune(&(1..=11).collect::<Vec<_>>(), 10), vec![1]);
        assert_eq!(to_prune(&[12, 4, 9, 7, 4], 2), vec![4, 7]);
        assert_eq!(to_prune(&[1, 2], 0), vec![1, 2]);
    }

    #[test]
    fn default_target_is_the_newest_ready_generation_before_the_current_one() {
        let h = vec![rev(1, Phase::Ready), rev(2, Phase::Ready), rev(3, Phase::Degraded), rev(4, Phase::Ready)];
        assert_eq!(default_target(&h, 4).map(|r| r.generation), Some(2));
        assert_eq!(default_target(&h, 5).map(|r| r.generation), Some(4));
        assert_eq!(default_target(&h, 1).map(|r| r.generation), None);
        assert_eq!(default_target(&[rev(1, Phase::Blocked)], 2).map(|r| r.generation), None);
    }

    #[test]
    fn outcomes_are_one_word() {
        assert_eq!(outcome_word(Phase::Ready, Some(Reason::Converged)), "Ready");
        assert_eq!(outcome_word(Phase::Degraded, Some(Reason::RolloutFailed)), "RolloutFailed");
        assert_eq!(outcome_word(Phase::Blocked, Some(Reason::RolloutFailed)), "RolloutFailed");
        assert_eq!(outcome_word(Phase::Degraded, Some(Reason::ConvergeFailed)), "Degraded");
    }

    #[test]
    fn the_summary_leaves_the_spec_out() {
        let json = serde_json::to_string(&rev(1, Phase::Ready).summary()).unwrap();
        assert!(!json.contains("spec") && !json.contains("app:v1"), "{json}");
    }
}
