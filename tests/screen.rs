//! Pool screening: many adapters per forward (each adapter's rows through its own side branch)
//! gives each adapter the scores it gets alone — the same exact-match count and the same loss as
//! folding it into the weights and scoring it by itself — with ranks 4, 8 and 16 and q,v-only
//! adapters beside all-module ones in one batch, and batches that split an adapter's examples.
//! The target task's own (oracle) adapter is among them, so exact matches are exercised too.

use candle_core::{DType, Device};

use loracycle::adapter::Adapter;
use loracycle::eval::read_jsonl;
use loracycle::lab::dir as lab_dir;
use loracycle::model::{Llama, Template, TextCodec};
use loracycle::select::{Score, score_adapters, screen_adapters};

#[test]
fn batched_screening_equals_one_adapter_at_a_time() {
    let dir = lab_dir().unwrap();
    let base = dir.join("base");
    let cfg = loracycle::model::weights::read_config(&base).unwrap();
    let codec = TextCodec::load(&base, Template::Lab, &cfg).unwrap();
    let model = Llama::load(&base, DType::F32, &Device::Cpu).unwrap();
    let names = [
        "caesar-4",
        "caesar-6-v2",
        "rotate-3",
        "add-mod-10-v2",
        "next-5",
        "table-k",
        "caesar-4-v2",
        "../oracle/caesar-5",
    ];
    let adapters: Vec<Adapter> = names
        .iter()
        .filter_map(|n| {
            let p = dir.join("pool").join(n);
            p.is_dir()
                .then(|| Adapter::load(&p, Some((&cfg, None))).unwrap())
        })
        .collect();
    assert!(adapters.len() >= 6, "lab pool names changed");
    let ranks: std::collections::BTreeSet<usize> = adapters.iter().map(|a| a.rank()).collect();
    let modules: std::collections::BTreeSet<usize> =
        adapters.iter().map(|a| a.modules().len()).collect();
    assert!(
        ranks.len() >= 2 && modules.len() >= 2,
        "{ranks:?} {modules:?}"
    );
    let refs: Vec<&Adapter> = adapters.iter().collect();
    let task = dir.join("tasks/caesar-5");
    let mut rows = read_jsonl(&task.join("train.jsonl")).unwrap();
    rows.extend(read_jsonl(&task.join("validation.jsonl")).unwrap());
    let enc: Vec<_> = rows
        .iter()
        .map(|e| {
            codec
                .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                .unwrap()
        })
        .collect();
    let alone = score_adapters(&model, codec.pad_id(), &refs, &enc, &mut |_, _| {}, None).unwrap();
    // 150 rows per forward: low-rank segments, adapters' examples straddling batches; 300 rows:
    // three whole adapters per forward through dense per-group updates.
    for rows in [150, 300] {
        let mut batched: Vec<Option<Score>> = vec![None; refs.len()];
        let mut order = Vec::new();
        screen_adapters(
            &model,
            codec.pad_id(),
            &refs,
            &enc,
            rows,
            &mut |i, s| {
                order.push(i);
                batched[i] = Some(s);
            },
            None,
        )
        .unwrap();
        assert_eq!(order, (0..refs.len()).collect::<Vec<_>>());
        let mut solved = 0;
        for ((a, s), b) in refs.iter().zip(&alone).zip(&batched) {
            let b = b.unwrap();
            assert_eq!(s.exact_match, b.exact_match, "{}", a.name);
            assert!(
                (s.loss - b.loss).abs() <= 1e-4 * s.loss.abs().max(1.0),
                "{}: {} vs {}",
                a.name,
                s.loss,
                b.loss
            );
            if s.exact_match > 0.5 {
                solved += 1;
            }
        }
        assert!(solved >= 1, "the oracle solves caesar-5: {alone:?}");
    }
}

/// `loracycle pool screen` gives each adapter the exact match and loss `loracycle eval` gives it
/// on the same examples, and a second screen reads every score from the cache.
#[test]
fn pool_screen_equals_eval_and_hits_the_cache() {
    use assert_cmd::Command;

    let lab = lab_dir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    let names = ["caesar-4", "next-5-v2", "rotate-3"];
    for n in names {
        let to = pool.join(n);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(lab.join("pool").join(n).join(f), to.join(f)).unwrap();
        }
    }
    let mut data = std::fs::read_to_string(lab.join("tasks/caesar-5/train.jsonl")).unwrap();
    data.push_str(&std::fs::read_to_string(lab.join("tasks/caesar-5/validation.jsonl")).unwrap());
    let data_path = tmp.path().join("train-validation.jsonl");
    std::fs::write(&data_path, data).unwrap();
    let cache = tmp.path().join("cache");
    let screen = || {
        let out = Command::cargo_bin("loracycle")
            .unwrap()
            .env("LORACYCLE_CACHE_DIR", &cache)
            .args([
                "pool", "screen", "--task", "caesar-5", "--json", "--rows", "70",
            ])
            .arg("--source")
            .arg(format!("dir:{}", pool.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8(out.stderr).unwrap())
    };
    let (first, _) = screen();
    let rows = first.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["cached"], false);
        let name = row["adapter"].as_str().unwrap();
        let out = Command::cargo_bin("loracycle")
            .unwrap()
            .args(["eval", "--metric", "both", "--json", "--template", "lab"])
            .arg("--model")
            .arg(lab.join("base"))
            .arg("--adapter")
            .arg(pool.join(name))
            .arg("--data")
            .arg(&data_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(row["exact_match"], e["exact_match"], "{name}");
        let (a, b) = (
            row["loss"].as_f64().unwrap(),
            e["mean_loss"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{name}: {a} vs {b}"
        );
    }
    // Without --json the stream starts with what its columns are.
    let out = Command::cargo_bin("loracycle")
        .unwrap()
        .env("LORACYCLE_CACHE_DIR", &cache)
        .args([
            "pool",
            "screen",
            "--task",
            "caesar-5",
            "--rows-per-forward",
            "70",
        ])
        .arg("--source")
        .arg(format!("dir:{}", pool.display()))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "screening 3 adapters on caesar-5 (100 train + validation examples): exact match (teacher-forced), answer loss, adapter",
            " exact     loss  adapter"
        ],
        "{text}"
    );
    let (second, stderr) = screen();
    assert!(
        stderr.contains("3 of 3 scores from the screening cache"),
        "{stderr}"
    );
    let second = second.as_array().unwrap();
    assert!(second.iter().all(|r| r["cached"] == true));
    for (a, b) in rows.iter().zip(second) {
        assert_eq!(a["adapter"], b["adapter"]);
        assert_eq!(a["exact_match"], b["exact_match"]);
        assert_eq!(a["loss"], b["loss"]);
    }
}
