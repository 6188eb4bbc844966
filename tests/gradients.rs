//! Gradients through the differentiable path: a side-branch gate's gradient against a central
//! finite difference (in f64), and LoRA training that actually lowers the loss. candle's fused
//! kernels drop gradients without an error; these tests catch a forward that uses one.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use loracycle::adapter::{self, Adapter};
use loracycle::eval::token_nll;
use loracycle::model::{Branches, Module};
use loracycle::tune::{LoraTrainSpec, train_lora};

#[path = "support/tiny.rs"]
mod tiny;
use tiny::{FIX, setup};

#[test]
fn gate_gradient_matches_finite_difference() {
    let (mut model, codec, enc) = setup(DType::F64);
    model.set_differentiable(true);
    let cfg = model.config().clone();
    let ad = Adapter::load(&Path::new(FIX).join("adapters/all-r8-rslora"), None).unwrap();
    let base = adapter::branches_for(&[(&ad, 0.3)], &cfg, DType::F64, &Device::Cpu).unwrap();
    // Make the gate of layer 0's v_proj a variable; every other branch stays fixed.
    let probe = base.get(0, Module::V).unwrap().clone();
    let gate = Var::from_tensor(&probe.gate).unwrap();
    let loss_with = |g: &Tensor| {
        let mut br: Branches = base.clone();
        let mut b = probe.clone();
        b.gate = g.clone();
        br.set(0, Module::V, Some(b));
        let (nll, _) = token_nll(&model, codec.pad_id(), &enc, Some(&br)).unwrap();
        nll.mean_all().unwrap()
    };
    let loss = loss_with(gate.as_tensor());
    let grads = loss.backward().unwrap();
    let analytic = grads
        .get(gate.as_tensor())
        .expect("gate has a gradient")
        .to_vec1::<f64>()
        .unwrap();
    let g0 = probe.gate.to_vec1::<f64>().unwrap();
    let eps = 1e-5;
    for i in [0, 3, 7] {
        let mut plus = g0.clone();
        plus[i] += eps;
        let mut minus = g0.clone();
        minus[i] -= eps;
        let f = |v: Vec<f64>| {
            loss_with(&Tensor::from_vec(v, g0.len(), &Device::Cpu).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (f(plus) - f(minus)) / (2.0 * eps);
        assert!(
            (numeric - analytic[i]).abs() <= 1e-6 * numeric.abs().max(1e-3),
            "slot {i}: analytic {} vs numeric {numeric}",
            analytic[i]
        );
        assert!(numeric.abs() > 1e-6, "a gradient of zero proves nothing");
    }
}

/// A trained LoRA's pairs as side branches with gate `scale` (alpha / rank).
fn lora_branches(
    model: &loracycle::model::Llama,
    trained: &loracycle::tune::TrainedLora,
    scale: f64,
) -> Branches {
    let mut br = Branches::empty(model.config().num_hidden_layers);
    for (&(l, m), (a, b)) in &trained.pairs {
        br.set(
            l,
            m,
            Branches::concat(
                &[loracycle::model::branch::Slice { a, b, gate: scale }],
                DType::F32,
                &Device::Cpu,
            )
            .unwrap(),
        );
    }
    br
}

#[test]
fn training_a_lora_lowers_the_loss() {
    let (model, codec, enc) = setup(DType::F32);
    let mean_loss = |br: Option<&Branches>| {
        let (nll, _) = token_nll(&model, codec.pad_id(), &enc, br).unwrap();
        nll.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64
    };
    let before = mean_loss(None);
    let spec = LoraTrainSpec {
        rank: 4,
        alpha: 8.0,
        modules: Module::ALL.to_vec(),
        lr: 1e-2,
        steps: 40,
        batch_size: 6,
        warmup_frac: 0.1,
        final_lr_frac: 0.1,
        best_every: 0,
        weight_decay: 0.0,
        seed: 1,
        early_stop: None,
        check_every: 0,
    };
    let mut losses = Vec::new();
    let trained = train_lora(
        &model,
        codec.pad_id(),
        &enc,
        &[],
        &[],
        &spec,
        0.0,
        &mut |_, l, _| losses.push(l),
        None,
    )
    .unwrap();
    assert_eq!(trained.steps, 40);
    assert_eq!(losses.len(), 40);
    // B starts at zero: the first step sees exactly the base model's loss.
    assert!(
        (losses[0] - before).abs() < 1e-4,
        "{} vs {before}",
        losses[0]
    );
    let br = lora_branches(&model, &trained, 2.0);
    let after = mean_loss(Some(&br));
    assert!(after < 0.3 * before, "loss {before} → {after}");
}

/// The paper's new-LoRA baseline keeps the checkpoint with the best validation loss: with a
/// learning rate high enough to overshoot, the kept LoRA is the one measured best, not the last.
#[test]
fn a_new_lora_keeps_its_best_checkpoint_by_validation_loss() {
    let (model, codec, enc) = setup(DType::F32);
    let (train, val) = enc.split_at(enc.len() / 2);
    let spec = LoraTrainSpec {
        rank: 4,
        alpha: 8.0,
        modules: Module::ALL.to_vec(),
        lr: 0.3,
        steps: 30,
        batch_size: 4,
        warmup_frac: 0.1,
        final_lr_frac: 0.0,
        best_every: 5,
        weight_decay: 0.0,
        seed: 3,
        early_stop: None,
        check_every: 0,
    };
    let mut measured = Vec::new();
    let trained = train_lora(
        &model,
        codec.pad_id(),
        train,
        val,
        &[],
        &spec,
        0.0,
        &mut |step, _, v| {
            if let Some(v) = v {
                measured.push((step, v));
            }
        },
        None,
    )
    .unwrap();
    let steps: Vec<usize> = measured.iter().map(|m| m.0).collect();
    assert_eq!(steps, [5, 10, 15, 20, 25, 30]);
    let best = measured
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(trained.best.unwrap().0, best.0);
    // The kept pairs give that validation loss again.
    let br = lora_branches(&model, &trained, 2.0);
    let again =
        loracycle::eval::mean_token_loss(&model, codec.pad_id(), val, Some(&br), 32).unwrap();
    assert!(
        (again - best.1).abs() < 1e-4 * best.1.max(1.0),
        "kept checkpoint's loss {again} vs measured {}",
        best.1
    );
    assert_ne!(
        best.0, 30,
        "the overshooting rate makes an earlier checkpoint best"
    );
}

/// Gradient merging keeps its best checkpoint's coefficients, not the last step's: the kept
/// coefficients give the best validation loss the tuning measured.
#[test]
fn gradient_merging_keeps_the_best_coefficients() {
    use loracycle::tune::coef::{
        CoefficientBranches, GradientSpec, Granularity, tune_coefficients,
    };
    let (model, codec, enc) = setup(DType::F32);
    let (train, val) = enc.split_at(enc.len() / 2);
    let cfg = model.config().clone();
    let ads: Vec<Adapter> = ["all-r8-rslora", "qv-r4", "mlp-r2"]
        .iter()
        .map(|n| Adapter::load(&Path::new(FIX).join("adapters").join(n), None).unwrap())
        .collect();
    let refs: Vec<&Adapter> = ads.iter().collect();
    let spec = GradientSpec {
        lr: 20.0,
        steps: 24,
        eval_every: 4,
        batch_size: 4,
        ..GradientSpec::default()
    };
    let cb = CoefficientBranches::new(
        &refs,
        cfg.num_hidden_layers,
        Granularity::Module,
        spec.activation,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let tuned = tune_coefficients(
        &model,
        codec.pad_id(),
        &cb,
        refs.len(),
        train,
        val,
        &spec,
        5,
        &mut |_| {},
        None,
    )
    .unwrap();
    let vals: Vec<(usize, f64)> = tuned
        .curve
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (r.step, v)))
        .collect();
    assert_eq!(vals.len(), 6);
    assert_ne!(
        tuned.best_step, 24,
        "an earlier checkpoint is best: {vals:?}"
    );
    let again = loracycle::eval::mean_token_loss(
        &model,
        codec.pad_id(),
        val,
        Some(&cb.branches(&tuned.raw).unwrap()),
        32,
    )
    .unwrap();
    assert!(
        (again - tuned.best_val_loss).abs() < 1e-5 * tuned.best_val_loss.max(1.0),
        "kept coefficients give {again}, the best measured was {} (step {})",
        tuned.best_val_loss,
        tuned.best_step
    );
}

/// π-Tuning trains the coefficients and every member's A and B together: one backward reaches
/// each, and the fresh slot (A ~ N(0, 0.01), B = 0) in place of the first adapter gets a gradient
/// on B (its A's is exactly zero while B is zero, as in any fresh LoRA).
#[test]
fn pi_tuning_gradient_reaches_coefficients_a_and_b() {
    use loracycle::tune::pituning::{Fresh, PiBranches};
    let (mut model, codec, enc) = setup(DType::F32);
    model.set_differentiable(true);
    let cfg = model.config().clone();
    let qv = Adapter::load(&Path::new(FIX).join("adapters/qv-r4"), None).unwrap();
    let all = Adapter::load(&Path::new(FIX).join("adapters/all-r8-rslora"), None).unwrap();
    let fresh = Fresh {
        replaces: Some(0),
        rank: 16,
        alpha: 16.0,
    };
    let pi = PiBranches::new(
        &[&qv, &all],
        cfg.num_hidden_layers,
        Some(fresh),
        |m| cfg.module_shape(m),
        7,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        pi.columns,
        [
            "fresh (in place of tests/fixtures/adapters/qv-r4)",
            "tests/fixtures/adapters/all-r8-rslora"
        ]
    );
    let br = pi.branches().unwrap();
    let (nll, _) = token_nll(&model, codec.pad_id(), &enc, Some(&br)).unwrap();
    let grads = nll.mean_all().unwrap().backward().unwrap();
    let norm = |v: &Var| {
        grads
            .get(v.as_tensor())
            .map(|g| {
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .unwrap_or(0.0)
    };
    // The coefficients of q_proj (two columns there) move; k_proj's single column's softmax is
    // constant, so its row does not.
    let c = grads.get(pi.coefficients.as_tensor()).unwrap();
    let q_row = c.get(Module::Q.index()).unwrap().to_vec1::<f32>().unwrap();
    let k_row = c.get(Module::K.index()).unwrap().to_vec1::<f32>().unwrap();
    assert!(q_row.iter().all(|g| g.abs() > 1e-9), "{q_row:?}");
    assert!(
        (q_row[0] + q_row[1]).abs() <= 1e-6 * q_row[0].abs(),
        "a softmax's gradient sums to zero: {q_row:?}"
    );
    assert_eq!(k_row, vec![0.0, 0.0]);
    for l in 0..cfg.num_hidden_layers {
        for m in Module::ALL {
            let (a, b) = pi.halves(l, m, 1).expect("all-r8-rslora has every module");
            assert!(norm(&a) > 1e-12 && norm(&b) > 1e-12, "layer {l} {m:?}");
        }
        let (a, b) = pi
            .halves(l, Module::V, 0)
            .expect("the fresh slot covers v_proj");
        assert!(norm(&b) > 1e-12, "layer {l}: fresh B");
        assert_eq!(norm(&a), 0.0, "layer {l}: fresh A while B = 0");
        assert!(
            pi.halves(l, Module::Up, 0).is_none(),
            "qv-r4 has no up_proj"
        );
    }
}
