//! Each merge on small cases computed by hand.

use candle_core::{DType, Device, Tensor};

use super::*;

fn m(rows: &[&[f32]]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
}

fn eye2() -> Tensor {
    m(&[&[1.0, 0.0], &[0.0, 1.0]])
}

fn part<'a>(a: &'a Tensor, b: &'a Tensor) -> Part<'a> {
    Part {
        a,
        b,
        scale: 1.0,
        weight: 1.0,
    }
}

fn dense(u: &Update) -> Vec<Vec<f32>> {
    u.dense()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

fn close(got: &[Vec<f32>], want: &[&[f32]]) {
    for (g, w) in got.iter().zip(want) {
        for (x, y) in g.iter().zip(w.iter()) {
            assert!((x - y).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }
}

/// Three full-rank 2 × 2 task vectors (A = I, B = τ).
fn taus() -> [Tensor; 3] {
    [
        m(&[&[3.0, -1.0], &[2.0, 0.5]]),
        m(&[&[-1.5, -4.0], &[1.0, 0.2]]),
        m(&[&[2.0, 1.0], &[-3.0, 0.1]]),
    ]
}

#[test]
fn average_and_task_arithmetic() {
    let (a1, b1) = (m(&[&[1.0, 0.0]]), m(&[&[1.0], &[0.0]]));
    let (a2, b2) = (m(&[&[0.0, 1.0]]), m(&[&[0.0], &[3.0]]));
    let parts = [part(&a1, &b1), part(&a2, &b2)];
    let avg = merge_module(
        &parts,
        &MergeMethod::Average {
            over: Divisor::Touching,
        },
        (2, 2),
        parts.len(),
        0,
    )
    .unwrap();
    close(&dense(&avg), &[&[0.5, 0.0], &[0.0, 1.5]]);
    assert_eq!(avg.rank(), Some(2));
    let ta = merge_module(
        &parts,
        &MergeMethod::TaskArithmetic { lambda: 2.0 },
        (2, 2),
        parts.len(),
        0,
    );
    close(&dense(&ta.unwrap()), &[&[2.0, 0.0], &[0.0, 6.0]]);
    // Scale and weight both multiply B·A.
    let scaled = [
        Part {
            scale: 2.0,
            weight: -0.5,
            ..part(&a1, &b1)
        },
        part(&a2, &b2),
    ];
    let sum = merge_module(&scaled, &MergeMethod::Sum, (2, 2), scaled.len(), 0).unwrap();
    close(&dense(&sum), &[&[-1.0, 0.0], &[0.0, 3.0]]);
}

#[test]
fn ties_trims_elects_by_total_and_averages_agreeing_entries() {
    let i = eye2();
    let t = taus();
    let parts: Vec<Part<'_>> = t.iter().map(|b| part(&i, b)).collect();
    let method = MergeMethod::Ties {
        density: 0.5,
        sign: SignElection::Total,
        lambda: 1.0,
        weights: Weights::One,
    };
    // Trimmed: [[3,0],[2,0]], [[-1.5,-4],[0,0]], [[2,0],[-3,0]]; sums 3.5, -4, -1, 0.
    let u = merge_module(&parts, &method, (2, 2), parts.len(), 0).unwrap();
    close(&dense(&u), &[&[2.5, -4.0], &[-3.0, 0.0]]);
    assert_eq!(u.rank(), None);
    let by_count = MergeMethod::Ties {
        density: 0.5,
        sign: SignElection::Count,
        lambda: 2.0,
        weights: Weights::One,
    };
    // Entry (1,0) has one vote each way: no sign, nothing kept.
    let u = merge_module(&parts, &by_count, (2, 2), parts.len(), 0).unwrap();
    close(&dense(&u), &[&[5.0, -8.0], &[0.0, 0.0]]);
}

#[test]
fn trim_keeps_exactly_the_largest_magnitudes() {
    let mut v = vec![0.1, -5.0, 2.0, -2.0, 0.0, 3.0];
    ties::trim(&mut v, 0.5);
    assert_eq!(v, vec![0.0, -5.0, 2.0, 0.0, 0.0, 3.0]);
}

#[test]
fn dare_at_full_density_is_the_sum_and_drops_about_half_at_half() {
    let i = eye2();
    let t = taus();
    let parts: Vec<Part<'_>> = t.iter().map(|b| part(&i, b)).collect();
    let full = MergeMethod::Dare {
        density: 1.0,
        seed: 7,
        consensus: false,
        lambda: 1.0,
    };
    close(
        &dense(&merge_module(&parts, &full, (2, 2), parts.len(), 0).unwrap()),
        &[&[3.5, -4.0], &[0.0, 0.8]],
    );
    // With consensus and nothing dropped: TIES without trimming.
    let cons = MergeMethod::Dare {
        density: 1.0,
        seed: 7,
        consensus: true,
        lambda: 1.0,
    };
    close(
        &dense(&merge_module(&parts, &cons, (2, 2), parts.len(), 0).unwrap()),
        &[&[2.5, -2.5], &[0.0, 0.8 / 3.0]],
    );
    // One 100 × 100 adapter of ones at density 0.5: every entry is 0 or 2, about half are 2.
    let a = Tensor::eye(100, DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
    let half = MergeMethod::Dare {
        density: 0.5,
        seed: 1,
        consensus: false,
        lambda: 1.0,
    };
    let u = merge_module(&[part(&a, &b)], &half, (100, 100), 1, 3).unwrap();
    let v: Vec<f32> = u.dense().unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|&x| x == 0.0 || x == 2.0));
    let kept = v.iter().filter(|&&x| x == 2.0).count() as f64 / v.len() as f64;
    assert!((0.47..0.53).contains(&kept), "kept {kept}");
    // Same seed and salt, same mask; another salt, another mask.
    let again = merge_module(&[part(&a, &b)], &half, (100, 100), 1, 3).unwrap();
    let other = merge_module(&[part(&a, &b)], &half, (100, 100), 1, 4).unwrap();
    let to_vec =
        |u: &Update| -> Vec<f32> { u.dense().unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    assert_eq!(to_vec(&again), v);
    assert_ne!(to_vec(&other), v);
}

#[test]
fn svd_truncates_the_sum() {
    // Sum = diag(3, 1): rank 1 keeps the 3.
    let (a1, b1) = (m(&[&[1.0, 0.0]]), m(&[&[3.0], &[0.0]]));
    let (a2, b2) = (m(&[&[0.0, 1.0]]), m(&[&[0.0], &[1.0]]));
    let parts = [part(&a1, &b1), part(&a2, &b2)];
    let u = merge_module(
        &parts,
        &MergeMethod::Svd { rank: 1 },
        (2, 2),
        parts.len(),
        0,
    )
    .unwrap();
    assert_eq!(u.rank(), Some(1));
    close(&dense(&u), &[&[3.0, 0.0], &[0.0, 0.0]]);
}

#[test]
fn tsv_keeps_orthogonal_tasks_and_orthogonalises_overlapping_ones() {
    // Orthogonal rank-1 tasks come back unchanged.
    let (a1, b1) = (m(&[&[1.0, 0.0]]), m(&[&[2.0], &[0.0]]));
    let (a2, b2) = (m(&[&[0.0, 1.0]]), m(&[&[0.0], &[3.0]]));
    let parts = [part(&a1, &b1), part(&a2, &b2)];
    let u = merge_module(
        &parts,
        &MergeMethod::Tsv {
            m: 8,
            lambda: 1.0,
            weights: Weights::One,
        },
        (2, 2),
        parts.len(),
        0,
    )
    .unwrap();
    close(&dense(&u), &[&[2.0, 0.0], &[0.0, 3.0]]);
    // Overlapping tasks: left vectors e₁ and (e₁+e₂)/√2, both σ = 1, both right vectors e₁.
    // The polar factor of [e₁, (e₁+e₂)/√2] is the orthonormal pair at -22.5° and 67.5°; that of
    // [e₁, e₁] is [e₁, e₁]/√2. So ΔW = (u₁ + u₂) e₁ᵀ/√2 = [[cos 22.5°, 0], [sin 22.5°, 0]],
    // whatever signs the SVDs pick.
    let r = std::f32::consts::FRAC_1_SQRT_2;
    let (a3, b3) = (m(&[&[1.0, 0.0]]), m(&[&[1.0], &[0.0]]));
    let (a4, b4) = (m(&[&[1.0, 0.0]]), m(&[&[r], &[r]]));
    let parts = [part(&a3, &b3), part(&a4, &b4)];
    let u = merge_module(
        &parts,
        &MergeMethod::Tsv {
            m: 1,
            lambda: 1.0,
            weights: Weights::One,
        },
        (2, 2),
        parts.len(),
        0,
    )
    .unwrap();
    let (c, s) = (22.5f32.to_radians().cos(), 22.5f32.to_radians().sin());
    close(&dense(&u), &[&[c, 0.0], &[s, 0.0]]);
}

#[test]
fn lorahub_sum_adds_a_and_b_separately_with_cross_terms() {
    let (a1, b1) = (m(&[&[1.0, 0.0]]), m(&[&[1.0], &[0.0]]));
    let (a2, b2) = (m(&[&[0.0, 1.0]]), m(&[&[0.0], &[2.0]]));
    let parts = [
        part(&a1, &b1),
        Part {
            weight: 0.5,
            ..part(&a2, &b2)
        },
    ];
    // A = [1, 0.5], B = [1, 1]ᵀ: B·A = [[1, .5], [1, .5]], not the sum [[1, 0], [0, 1]].
    let u = merge_module(&parts, &MergeMethod::LorahubSum, (2, 2), parts.len(), 0).unwrap();
    close(&dense(&u), &[&[1.0, 0.5], &[1.0, 0.5]]);
    // A rank-2 adapter with a rank-1 one: the rank-1 one is zero-padded.
    let i = eye2();
    let t = m(&[&[1.0, 2.0], &[3.0, 4.0]]);
    let parts = [part(&i, &t), part(&a1, &b1)];
    let u = merge_module(&parts, &MergeMethod::LorahubSum, (2, 2), parts.len(), 0).unwrap();
    assert_eq!(u.rank(), Some(2));
    // A = I + [[1,0],[0,0]] = diag(2,1); B = t + [[1,0],[0,0]] = [[2,2],[3,4]].
    close(&dense(&u), &[&[4.0, 2.0], &[6.0, 4.0]]);
}

#[test]
fn export_truncates_dense_results_and_reports_the_error() {
    let i = eye2();
    let t = taus();
    let parts: Vec<Part<'_>> = t.iter().map(|b| part(&i, b)).collect();
    let ties = MergeMethod::Ties {
        density: 0.5,
        sign: SignElection::Total,
        lambda: 1.0,
        weights: Weights::One,
    };
    let mut merged = Merged::default();
    merged.updates.insert(
        (0, Module::Q),
        merge_module(&parts, &ties, (2, 2), parts.len(), 0).unwrap(),
    );
    let (pairs, err) = merged.to_lora(2).unwrap();
    assert!(err < 1e-6, "rank 2 of a 2 × 2 matrix is exact, error {err}");
    let (a, b) = &pairs[&(0, Module::Q)];
    close(
        &b.matmul(a).unwrap().to_vec2::<f32>().unwrap(),
        &[&[2.5, -4.0], &[-3.0, 0.0]],
    );
    // Rank 1 loses the smaller singular value: error = σ₂ / ‖M‖.
    let (_, err1) = merged.to_lora(1).unwrap();
    let mm = linalg::to_matrix(&m(&[&[2.5, -4.0], &[-3.0, 0.0]])).unwrap();
    let sv = mm.singular_values();
    let (hi, lo) = (sv.max(), sv.min());
    let want = lo / (hi * hi + lo * lo).sqrt();
    assert!((err1 - want).abs() < 1e-6, "error {err1}, want {want}");
}

#[test]
fn settings_out_of_range_are_named() {
    let bad = MergeMethod::Ties {
        density: 1.5,
        sign: SignElection::Total,
        lambda: 1.0,
        weights: Weights::One,
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "method.density: must be in (0, 1], got 1.5"
    );
    assert_eq!(
        MergeMethod::Svd { rank: 0 }
            .validate()
            .unwrap_err()
            .to_string(),
        "method.rank: must be between 1 and 65536, got 0"
    );
}

#[test]
fn the_paper_s_average_and_tsv_divide_by_every_adapter_merged() {
    // Two adapters merged, only the first touching this module: τ₁ = diag(2, 4).
    let (a1, b1) = (
        m(&[&[1.0, 0.0], &[0.0, 1.0]]),
        m(&[&[2.0, 0.0], &[0.0, 4.0]]),
    );
    let parts = [part(&a1, &b1)];
    let avg =
        |over| dense(&merge_module(&parts, &MergeMethod::Average { over }, (2, 2), 2, 0).unwrap());
    // The paper: (1/N) Σ τᵢ with N = 2 merged adapters.
    close(&avg(Divisor::Selected), &[&[1.0, 0.0], &[0.0, 2.0]]);
    // Earlier: divided by the one adapter on the module.
    close(&avg(Divisor::Touching), &[&[2.0, 0.0], &[0.0, 4.0]]);
    // TSV of a lone full-rank task is the task itself, times 1/N with equal weights.
    let tsv = |weights| {
        let method = MergeMethod::Tsv {
            m: 8,
            lambda: 1.0,
            weights,
        };
        dense(&merge_module(&parts, &method, (2, 2), 2, 0).unwrap())
    };
    close(&tsv(Weights::Equal), &[&[1.0, 0.0], &[0.0, 2.0]]);
    close(&tsv(Weights::One), &[&[2.0, 0.0], &[0.0, 4.0]]);
}

/// TIES and TSV weigh each task vector as the paper's `weight_init` does: one weight each
/// (TIES' default), 1/N each (TSV's default), a number, or a list per adapter.
#[test]
fn ties_and_tsv_take_per_adapter_weights() {
    let i = eye2();
    let t = taus();
    let parts: Vec<Part<'_>> = t.iter().map(|b| part(&i, b)).collect();
    let ties = |weights| MergeMethod::Ties {
        density: 0.5,
        sign: SignElection::Total,
        lambda: 1.0,
        weights,
    };
    // Unweighted: [[2.5, -4], [-3, 0]] (see above); weights scale every trimmed entry alike,
    // so the disjoint mean scales with them.
    let u = merge_module(&parts, &ties(Weights::Equal), (2, 2), 3, 0).unwrap();
    close(&dense(&u), &[&[2.5 / 3.0, -4.0 / 3.0], &[-1.0, 0.0]]);
    let u = merge_module(&parts, &ties(Weights::Each(2.0)), (2, 2), 3, 0).unwrap();
    close(&dense(&u), &[&[5.0, -8.0], &[-6.0, 0.0]]);

    // A list reaches the tasks one by one through merge_adapters: weights (1, 0, 0) keep τ₁'s
    // top half alone, [[3, 0], [2, 0]].
    let cfg: crate::model::LlamaConfig = serde_json::from_str(
        r#"{"hidden_size": 2, "intermediate_size": 2, "num_attention_heads": 1,
            "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": 4}"#,
    )
    .unwrap();
    let config: crate::adapter::AdapterConfig =
        serde_json::from_str(r#"{"r": 2, "lora_alpha": 2}"#).unwrap();
    let adapters: Vec<Adapter> = t
        .iter()
        .enumerate()
        .map(|(n, b)| Adapter {
            name: format!("t{n}"),
            dir: Default::default(),
            config: config.clone(),
            pairs: [(
                (0, Module::Q),
                crate::adapter::LoraPair {
                    a: i.clone(),
                    b: b.clone(),
                },
            )]
            .into(),
            storage_dtype: "F32".into(),
            file_size: 0,
            warnings: Vec::new(),
        })
        .collect();
    let sources: Vec<(&Adapter, f64)> = adapters.iter().map(|a| (a, 1.0)).collect();
    let merged = merge_adapters(&sources, &ties(Weights::List(vec![1.0, 0.0, 0.0])), &cfg).unwrap();
    close(
        &dense(&merged.updates[&(0, Module::Q)]),
        &[&[3.0, 0.0], &[2.0, 0.0]],
    );
    let tsv = |weights| MergeMethod::Tsv {
        m: 8,
        lambda: 1.0,
        weights,
    };
    // TSV of one task at weight 0.5 (the others at 0) is half of it.
    let merged = merge_adapters(&sources, &tsv(Weights::List(vec![0.0, 0.5, 0.0])), &cfg).unwrap();
    close(
        &dense(&merged.updates[&(0, Module::Q)]),
        &[&[-0.75, -2.0], &[0.5, 0.1]],
    );
    let err = merge_adapters(&sources, &tsv(Weights::List(vec![1.0])), &cfg).unwrap_err();
    assert!(
        err.to_string()
            .contains("method.weights lists 1 weights for 3 adapters merged"),
        "{err}"
    );
    // As a spec writes them.
    for (text, want) in [
        ("\"equal\"", Weights::Equal),
        ("\"one\"", Weights::One),
        ("0.5", Weights::Each(0.5)),
        ("[1.0, -0.5]", Weights::List(vec![1.0, -0.5])),
    ] {
        let m: MergeMethod =
            toml::from_str(&format!("kind = \"tsv\"\nweights = {text}\n")).unwrap();
        assert_eq!(m, tsv(want.clone()), "{text}");
        assert_eq!(
            toml::to_string(&m).unwrap(),
            format!("kind = \"tsv\"\nm = 8\nlambda = 1.0\nweights = {}\n", text)
        );
    }
    let err = toml::from_str::<MergeMethod>("kind = \"ties\"\nweights = \"half\"\n").unwrap_err();
    assert!(
        err.message()
            .contains("weights must be \"equal\", \"one\", a number or a list of numbers"),
        "{err}"
    );
    assert_eq!(
        ties(Weights::List(vec![1.0, f64::NAN]))
            .validate()
            .unwrap_err()
            .to_string(),
        "method.weights: must be a finite number, got nan"
    );
}
