//! Screening a pool on a task: every adapter scored alone on the task's train + validation
//! examples — many adapters per forward ([`super::screen_adapters`]) on a GPU, one at a time on
//! a CPU — with the scores kept on disk
//! by (adapter revision, task data hash) — `screen-cache.json` in the cache folder, rewritten
//! atomically every few seconds — so a second screen of the same pool and task is instant and an
//! interrupted one resumes where it stopped. Both metrics come from the same forward, so one
//! entry serves exact-match and loss ranking alike.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Score, screen_adapters};
use crate::adapter::Adapter;
use crate::eval::Result;
use crate::model::Llama;
use crate::model::template::EncodedExample;

/// Rows per screening forward on a GPU unless told otherwise.
pub const DEFAULT_ROWS: usize = 256;

/// How a screen batches: `Auto` scores one adapter at a time (folded into the weights) on a CPU,
/// where batching across adapters measured slower (BENCHMARKS.md), and `DEFAULT_ROWS` rows of
/// many adapters per forward on a GPU; `Rows(n)` forces batches of n rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    Auto,
    OneAtATime,
    Rows(usize),
}

/// The screening cache, `screen-cache.json`: both metrics per (adapter revision, task data hash).
pub type ScreenCache = crate::pool::cache::JsonCache<Score>;

/// `screen-cache.json` in the cache folder.
pub fn open_cache() -> ScreenCache {
    ScreenCache::open_named("screen-cache.json")
}

/// An adapter's revision: the Hub commit when it sits in an HF cache snapshot, else its folder
/// with the size and modification time of its weights and config.
pub fn adapter_revision(a: &Adapter) -> String {
    let dir = a.dir.canonicalize().unwrap_or_else(|_| a.dir.clone());
    let stamp = |f: &str| {
        std::fs::metadata(dir.join(f))
            .ok()
            .map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}.{t}", m.len())
            })
            .unwrap_or_default()
    };
    format!(
        "{}#{}#{}",
        dir.display(),
        stamp("adapter_model.safetensors"),
        stamp("adapter_config.json")
    )
}

/// The hash of a task's screening data as the model sees it: the model's identity and every
/// example's token ids and answer start.
pub fn task_hash(model_identity: &str, examples: &[EncodedExample]) -> String {
    let mut h = Sha256::new();
    h.update(model_identity.as_bytes());
    h.update([0]);
    for e in examples {
        h.update((e.answer_start as u64).to_le_bytes());
        h.update((e.ids.len() as u64).to_le_bytes());
        for id in &e.ids {
            h.update(id.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn key(adapter: &Adapter, task: &str) -> String {
    format!("{task}|{}", adapter_revision(adapter))
}

/// What a screen reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ScreenProgress {
    /// Adapters in all, and how many of them came from the cache.
    Start { total: usize, cached: usize },
    /// Adapter `index` scored (`cached`: from the cache); `done` of `total` so far.
    Scored {
        index: usize,
        score: Score,
        cached: bool,
        done: usize,
        total: usize,
    },
    /// The scores could not be written to the screening cache (they are still returned).
    CacheNotSaved(String),
}

#[allow(clippy::too_many_arguments)]
/// Scores every adapter on `examples`, from the cache where it can, the rest batched
/// `rows_per_forward` rows at a time; results are in the adapters' order. A set `cancel` stops
/// between adapters (between forwards when batched), the scores so far kept in the cache.
pub fn screen(
    model: &Llama,
    pad_id: u32,
    adapters: &[&Adapter],
    examples: &[EncodedExample],
    task: &str,
    cache: &mut ScreenCache,
    batching: Batching,
    progress: &mut dyn FnMut(ScreenProgress),
    cancel: Option<&AtomicBool>,
) -> Result<Vec<Score>> {
    let keys: Vec<String> = adapters.iter().map(|a| key(a, task)).collect();
    let mut out: Vec<Option<Score>> = keys.iter().map(|k| cache.get(k).copied()).collect();
    let total = adapters.len();
    let cached = out.iter().filter(|s| s.is_some()).count();
    progress(ScreenProgress::Start { total, cached });
    let mut done = 0;
    for (i, s) in out.iter().enumerate() {
        if let Some(score) = s {
            done += 1;
            progress(ScreenProgress::Scored {
                index: i,
                score: *score,
                cached: true,
                done,
                total,
            });
        }
    }
    let missing: Vec<usize> = (0..total).filter(|&i| out[i].is_none()).collect();
    if !missing.is_empty() {
        let refs: Vec<&Adapter> = missing.iter().map(|&i| adapters[i]).collect();
        let mut last_save = Instant::now();
        let mut save_error = None;
        let rows = match batching {
            Batching::Rows(n) => Some(n),
            Batching::Auto if !model.device().is_cpu() => Some(DEFAULT_ROWS),
            _ => None,
        };
        let mut on_score = |j: usize, score: Score| {
            let i = missing[j];
            out[i] = Some(score);
            cache.put(keys[i].clone(), score);
            if last_save.elapsed() > Duration::from_secs(2) {
                last_save = Instant::now();
                if let Err(e) = cache.save() {
                    save_error = Some(e);
                }
            }
            done += 1;
            progress(ScreenProgress::Scored {
                index: i,
                score,
                cached: false,
                done,
                total,
            });
        };
        let scored = match rows {
            Some(n) => screen_adapters(model, pad_id, &refs, examples, n, &mut on_score, cancel),
            None => refs.iter().enumerate().try_for_each(|(j, a)| {
                let s =
                    super::score_adapters(model, pad_id, &[*a], examples, &mut |_, _| {}, cancel)?;
                on_score(j, s[0]);
                Ok(())
            }),
        };
        // What was scored before a cancel (or an error) is kept for the next screen.
        if let Err(e) = scored {
            let _ = cache.save();
            return Err(e);
        }
        // A cache that cannot be written costs a re-screen next time, not this result.
        if let Some(e) = cache.save().err().or(save_error) {
            progress(ScreenProgress::CacheNotSaved(e.to_string()));
        }
    }
    Ok(out
        .into_iter()
        .map(|s| s.expect("every adapter scored"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_hash_sees_model_ids_and_answer_start() {
        let e = |ids: Vec<u32>, s: usize| EncodedExample {
            ids,
            answer_start: s,
        };
        let a = task_hash("m", &[e(vec![1, 2, 3], 2)]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, task_hash("m", &[e(vec![1, 2, 3], 2)]));
        assert_ne!(a, task_hash("n", &[e(vec![1, 2, 3], 2)]));
        assert_ne!(a, task_hash("m", &[e(vec![1, 2, 4], 2)]));
        assert_ne!(a, task_hash("m", &[e(vec![1, 2, 3], 1)]));
        assert_ne!(a, task_hash("m", &[e(vec![1, 2], 2), e(vec![3], 0)]));
    }

    #[test]
    fn cache_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/screen-cache.json");
        let mut c = ScreenCache::open(&p);
        assert!(c.is_empty());
        let s = Score {
            exact_match: 0.25,
            loss: 1.5,
        };
        c.put("t|a".into(), s);
        c.save().unwrap();
        let c = ScreenCache::open(&p);
        assert_eq!(c.get("t|a"), Some(&s));
        std::fs::write(&p, "{not json").unwrap();
        assert!(ScreenCache::open(&p).is_empty());
    }

    #[test]
    fn processes_sharing_the_cache_keep_each_others_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("screen-cache.json");
        let s = |x: f64| Score {
            exact_match: x,
            loss: x,
        };
        // Two processes open the same (empty) cache, score different adapters, save in turn.
        let mut one = ScreenCache::open(&p);
        let mut two = ScreenCache::open(&p);
        one.put("t|a".into(), s(0.1));
        two.put("t|b".into(), s(0.2));
        one.save().unwrap();
        two.save().unwrap();
        let both = ScreenCache::open(&p);
        assert_eq!(
            (both.get("t|a"), both.get("t|b")),
            (Some(&s(0.1)), Some(&s(0.2)))
        );
        // The later saver also sees the other's entries now.
        assert_eq!(two.get("t|a"), Some(&s(0.1)));
        // A newer score of the same key wins.
        one.put("t|b".into(), s(0.3));
        one.save().unwrap();
        assert_eq!(ScreenCache::open(&p).get("t|b"), Some(&s(0.3)));
    }
}
