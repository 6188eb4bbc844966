//! The recycling engine's numerics on the tiny fixtures: coefficient gradients against finite
//! differences (both the branch and the dense-ΔW paths, three granularities and activations),
//! zero-init leaky-ReLU coefficients reproducing the base model, LoraHub's batched candidate
//! scores against one-at-a-time scores and against the merged model, and the random-init
//! control's shapes and spreads.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use loracycle::adapter::Adapter;
use loracycle::adapter::random::{RandomInit, adapter_std, randomize};
use loracycle::eval::token_nll;
use loracycle::merge::{MergeMethod, merge_adapters};
use loracycle::tune::coef::{Activation, CoefficientBranches, Granularity, activate};
use loracycle::tune::lorahub::{StackedPool, score_batched, score_grouped, score_sequential};

#[path = "support/tiny.rs"]
mod tiny;
use tiny::{FIX, setup};

fn adapters() -> Vec<Adapter> {
    ["qv-r4", "all-r8-rslora", "mlp-r2"]
        .iter()
        .map(|n| Adapter::load(&Path::new(FIX).join("adapters").join(n), None).unwrap())
        .collect()
}

fn check_gradient(granularity: Granularity, activation: Activation, dense: bool) {
    let (mut model, codec, enc) = setup(DType::F64);
    model.set_differentiable(true);
    model.set_dense_delta_grad(dense);
    let ads = adapters();
    let refs: Vec<&Adapter> = ads.iter().collect();
    let layers = model.config().num_hidden_layers;
    let cb = CoefficientBranches::new(
        &refs,
        layers,
        granularity,
        activation,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let (g, k) = (cb.layout.groups, cb.layout.columns);
    // Values away from zero (leaky-ReLU's kink), of both signs.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let d = Normal::new(0.0, 0.6).unwrap();
    let c0: Vec<f64> = (0..g * k)
        .map(|_| {
            let v: f64 = d.sample(&mut rng);
            if v.abs() < 0.05 { 0.3 } else { v }
        })
        .collect();
    let loss_at = |c: &Tensor| {
        let br = cb.branches(c).unwrap();
        let (nll, _) = token_nll(&model, codec.pad_id(), &enc, Some(&br)).unwrap();
        nll.mean_all().unwrap()
    };
    let var =
        Var::from_tensor(&Tensor::from_vec(c0.clone(), (g, k), &Device::Cpu).unwrap()).unwrap();
    let grads = loss_at(var.as_tensor()).backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(var.as_tensor())
        .expect("coefficients have a gradient")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eps = 1e-5;
    let probes = [0, (g * k) / 2, g * k - 1];
    for &i in &probes {
        let f = |delta: f64| {
            let mut v = c0.clone();
            v[i] += delta;
            loss_at(&Tensor::from_vec(v, (g, k), &Device::Cpu).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (f(eps) - f(-eps)) / (2.0 * eps);
        assert!(
            (numeric - analytic[i]).abs() <= 1e-6 * numeric.abs().max(1e-4),
            "{granularity:?}/{activation:?}/dense={dense} coefficient {i}: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
    assert!(
        probes.iter().any(|&i| analytic[i].abs() > 1e-6),
        "a gradient of zero everywhere proves nothing"
    );
}

#[test]
fn coefficient_gradient_matches_finite_difference_per_module_leaky_relu() {
    check_gradient(Granularity::Module, Activation::LeakyRelu, false);
    check_gradient(Granularity::Module, Activation::LeakyRelu, true);
}

#[test]
fn coefficient_gradient_matches_finite_difference_per_rank_sigmoid() {
    check_gradient(Granularity::Rank, Activation::Sigmoid, true);
}

#[test]
fn coefficient_gradient_matches_finite_difference_per_layer_softmax() {
    check_gradient(Granularity::Layer, Activation::Softmax, false);
}

#[test]
fn leaky_relu_has_slope_one_hundredth_below_and_at_zero() {
    let c = Var::from_tensor(&Tensor::new(&[[-2.0f64, 0.0, 3.0]], &Device::Cpu).unwrap()).unwrap();
    let y = activate(c.as_tensor(), Activation::LeakyRelu).unwrap();
    assert_eq!(y.to_vec2::<f64>().unwrap(), vec![vec![-0.02, 0.0, 3.0]]);
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g.get(c.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
    assert_eq!(g, vec![vec![0.01, 0.01, 1.0]]);
}

#[test]
fn zero_init_leaky_relu_coefficients_reproduce_the_base_model() {
    let (model, codec, enc) = setup(DType::F32);
    let ads = adapters();
    let refs: Vec<&Adapter> = ads.iter().collect();
    let layers = model.config().num_hidden_layers;
    for granularity in [Granularity::Module, Granularity::Lora, Granularity::Rank] {
        let cb = CoefficientBranches::new(
            &refs,
            layers,
            granularity,
            Activation::LeakyRelu,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let c = cb
            .init(
                loracycle::tune::coef::Init::Zero,
                refs.len(),
                0,
                &Device::Cpu,
            )
            .unwrap();
        let br = cb.branches(&c).unwrap();
        let (with, _) = token_nll(&model, codec.pad_id(), &enc, Some(&br)).unwrap();
        let (base, _) = token_nll(&model, codec.pad_id(), &enc, None).unwrap();
        let diff = (with - base)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff == 0.0,
            "{granularity:?}: per-token losses differ by {diff}"
        );
    }
}

#[test]
fn lorahub_batched_scores_equal_one_candidate_at_a_time() {
    let (model, codec, enc) = setup(DType::F32);
    let ads = adapters();
    let refs: Vec<&Adapter> = ads.iter().collect();
    let pool = StackedPool::new(&refs, model.config(), DType::F32, &Device::Cpu).unwrap();
    let candidates = vec![
        vec![0.0, 0.0, 0.0],
        vec![1.0, -0.5, 0.25],
        vec![-1.5, 1.5, 0.7],
        vec![0.3, 0.3, -1.2],
    ];
    // Rows per forward smaller than the total, so chunks split candidates across forwards.
    let batched = score_batched(&model, codec.pad_id(), &pool, &enc, &candidates, 5).unwrap();
    let sequential = score_sequential(&model, codec.pad_id(), &pool, &enc, &candidates).unwrap();
    // Grouped dense updates, two candidates per forward.
    let grouped = score_grouped(
        &model,
        codec.pad_id(),
        &pool,
        &enc,
        &candidates,
        2 * enc.len(),
    )
    .unwrap();
    for ((b, g), s) in batched.iter().zip(&grouped).zip(&sequential) {
        assert!(
            (b - s).abs() < 1e-5 * s.abs().max(1.0),
            "batched {b} vs sequential {s}"
        );
        assert!(
            (g - s).abs() < 1e-5 * s.abs().max(1.0),
            "grouped {g} vs sequential {s}"
        );
    }
    // Each score is the loss of the model with `loracycle merge`'s LoraHub sum folded in
    // (A = Σ cᵢAᵢ, B = Σ cᵢsᵢBᵢ over mixed ranks and module sets), computed independently.
    for (c, s) in candidates.iter().zip(&sequential) {
        let sources: Vec<(&Adapter, f64)> = refs.iter().copied().zip(c.iter().copied()).collect();
        let merged = merge_adapters(&sources, &MergeMethod::LorahubSum, model.config())
            .unwrap()
            .apply(&model)
            .unwrap();
        let (nll, _) = token_nll(&merged, codec.pad_id(), &enc, None).unwrap();
        let want = nll.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(
            (s - want).abs() < 1e-5 * want.abs().max(1.0),
            "candidate {c:?}: scored {s}, merged model {want}"
        );
    }
    // Candidate 0 is the base model; the others move the loss.
    let (nll, _) = token_nll(&model, codec.pad_id(), &enc, None).unwrap();
    let base = nll.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((batched[0] - base).abs() < 1e-5);
    assert!(batched[1..].iter().all(|b| (b - base).abs() > 1e-4));
}

#[test]
fn random_init_keeps_shapes_and_spread() {
    let ads = adapters();
    let refs: Vec<&Adapter> = ads.iter().collect();
    let per = randomize(&refs, RandomInit::PerAdapter, 3).unwrap();
    for (real, fake) in ads.iter().zip(&per) {
        assert_eq!(fake.name, format!("random:{}", real.name));
        assert_eq!(fake.config.r, real.config.r);
        assert_eq!(fake.scale(), real.scale());
        assert_eq!(
            real.pairs.keys().collect::<Vec<_>>(),
            fake.pairs.keys().collect::<Vec<_>>()
        );
        for (key, p) in &real.pairs {
            let q = &fake.pairs[key];
            assert_eq!(p.a.dims(), q.a.dims());
            assert_eq!(p.b.dims(), q.b.dims());
            assert!(
                !q.a.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .eq(&p
                        .a
                        .to_dtype(DType::F32)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap())
            );
        }
        let (ra, rb) = adapter_std(real).unwrap();
        let (fa, fb) = adapter_std(fake).unwrap();
        // Thousands of draws per adapter: the sample std is within a few percent.
        assert!(
            (fa / ra - 1.0).abs() < 0.1,
            "{}: A std {fa} vs {ra}",
            real.name
        );
        assert!(
            (fb / rb - 1.0).abs() < 0.1,
            "{}: B std {fb} vs {rb}",
            real.name
        );
    }
    // Seeded: the same seed redraws the same values; another seed others.
    let again = randomize(&refs, RandomInit::PerAdapter, 3).unwrap();
    let other = randomize(&refs, RandomInit::PerAdapter, 4).unwrap();
    let first = |v: &[Adapter]| -> Vec<f32> {
        v[0].pairs
            .values()
            .next()
            .unwrap()
            .a
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    assert_eq!(first(&again), first(&per));
    assert_ne!(first(&other), first(&per));
    // Pooled: every adapter touching a module gets that module's pooled σ, so two adapters of
    // very different spreads come out with the same one.
    let pooled = randomize(&refs, RandomInit::Pooled, 3).unwrap();
    let key = *ads[0].pairs.keys().next().unwrap();
    let std_of = |t: &Tensor| {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
    };
    let mut all_a: Vec<f32> = Vec::new();
    for ad in &ads {
        if let Some(p) = ad.pairs.get(&key) {
            all_a.extend(p.a.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }
    let n = all_a.len() as f32;
    let m = all_a.iter().sum::<f32>() / n;
    let pooled_sigma = (all_a.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n).sqrt();
    for ad in &pooled {
        if let Some(p) = ad.pairs.get(&key) {
            let s = std_of(&p.a);
            assert!(
                (s / pooled_sigma - 1.0).abs() < 0.25,
                "{}: {s} vs pooled {pooled_sigma}",
                ad.name
            );
        }
    }
}

#[test]
fn similarity_is_the_cosine_of_the_dense_updates() {
    use loracycle::select::{delta_cosine, delta_dot};
    let ads = adapters();
    let (a, b) = (&ads[0], &ads[1]);
    // Against the dense ΔW = s·B·A of every shared (layer, module), summed.
    let mut dot = 0.0;
    for (key, pa) in &a.pairs {
        if let Some(pb) = b.pairs.get(key) {
            let da = (pa.b.matmul(&pa.a).unwrap() * a.scale()).unwrap();
            let db = (pb.b.matmul(&pb.a).unwrap() * b.scale()).unwrap();
            dot += (da * db)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
        }
    }
    let got = delta_dot(a, b).unwrap();
    assert!(
        (got - dot).abs() <= 1e-5 * dot.abs().max(1e-6),
        "{got} vs {dot}"
    );
    assert!((delta_cosine(a, a).unwrap() - 1.0).abs() < 1e-6);
    let mut neg = a.clone();
    for p in neg.pairs.values_mut() {
        p.b = p.b.neg().unwrap();
    }
    assert!((delta_cosine(a, &neg).unwrap() + 1.0).abs() < 1e-6);
    // mlp-r2 touches no attention module; qv-r4 touches only attention: orthogonal.
    assert_eq!(delta_cosine(&ads[0], &ads[2]).unwrap(), 0.0);
}
