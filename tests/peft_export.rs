//! Writing PEFT adapters: the weighted sum of the three fixture adapters written as one
//! rank-concatenated adapter must load back (here) and in peft (tests/fixtures/peft_check.json,
//! made by `make_golden.py --check-written`) with the reference logits.
//!
//! `LORACYCLE_BLESS=1 cargo test --release --test peft_export` rewrites the committed copy.

use std::path::Path;

use candle_core::{DType, Device};

use loracycle::adapter::write::{concatenated, write_peft};
use loracycle::adapter::{self, Adapter};
use loracycle::model::weights::read_config;
use loracycle::model::{Batch, Llama, Template, TextCodec};

#[path = "support/logits.rs"]
mod logits;
use logits::logits_rel_err;

const FIX: &str = "tests/fixtures";
const BASE: &str = "loracycle-fixtures/tiny-llama";

fn write_weighted(out: &Path) {
    let cfg = read_config(&Path::new(FIX).join("tiny")).unwrap();
    let adapters: Vec<Adapter> = ["qv-r4", "all-r8-rslora", "mlp-r2"]
        .iter()
        .map(|n| {
            Adapter::load(
                &Path::new(FIX).join("adapters").join(n),
                Some((&cfg, Some(BASE))),
            )
            .unwrap()
        })
        .collect();
    let sources = [
        (&adapters[0], 0.7),
        (&adapters[1], -0.4),
        (&adapters[2], 1.3),
    ];
    let (pairs, rank) = concatenated(&sources, &cfg).unwrap();
    write_peft(out, &pairs, rank, rank as f64, BASE, DType::F32).unwrap();
}

#[test]
fn written_adapter_reproduces_weighted_logits_and_matches_committed_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("weighted");
    write_weighted(&out);

    let committed = Path::new(FIX).join("written-by-loracycle");
    if std::env::var_os("LORACYCLE_BLESS").is_some() {
        write_weighted(&committed);
    }
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(committed.join(f)).unwrap(),
            "{f} differs from the committed copy that peft was checked on"
        );
    }

    let dir = Path::new(FIX).join("tiny");
    let cfg = read_config(&dir).unwrap();
    let written = Adapter::load(&out, Some((&cfg, Some(BASE)))).unwrap();
    assert_eq!(written.rank(), 14);
    assert_eq!(written.scale(), 1.0);
    assert_eq!(written.modules().len(), 7);
    assert!(written.warnings.is_empty());

    let codec = TextCodec::load(&dir, Template::Raw, &cfg).unwrap();
    let model = Llama::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let rows: Vec<Vec<u32>> = loracycle::eval::read_jsonl(&Path::new(FIX).join("data.jsonl"))
        .unwrap()
        .iter()
        .map(|e| {
            codec
                .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                .unwrap()
                .ids
        })
        .collect();
    let batch = Batch::new(&rows, codec.pad_id(), &Device::Cpu).unwrap();
    let branches =
        adapter::branches_for(&[(&written, 1.0)], &cfg, DType::F32, &Device::Cpu).unwrap();
    let logits = model.forward(&batch, Some(&branches)).unwrap();
    let golden =
        candle_core::safetensors::load(Path::new(FIX).join("golden.safetensors"), &Device::Cpu)
            .unwrap();
    let reference = &golden["logits.raw.weighted"];
    let err = logits_rel_err(&logits, reference, &golden["attention_mask.raw"]);
    assert!(err <= 1e-4, "relative error {err:.3e}");
}

#[test]
fn peft_loaded_the_committed_adapter_with_the_same_logits() {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIX).join("peft_check.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["max_abs_diff"].as_f64().unwrap() <= 1e-4 * v["max_abs_logit"].as_f64().unwrap_or(1.0),
        "{v}"
    );
}
