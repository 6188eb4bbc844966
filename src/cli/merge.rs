//! `loracycle merge`: merge adapters with a non-adaptive method and write a PEFT adapter.

use std::path::PathBuf;

use anyhow::{Result, bail};
use candle_core::DType;

use loracycle::adapter::Adapter;
use loracycle::adapter::write::write_peft;
use loracycle::merge::{MergeMethod, SignElection, merge_adapters};
use loracycle::model::weights::{model_identity, read_config};

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The base model: `lab`, a model folder, or a Hub id in the HF cache (shapes, and the
    /// base model the adapters must share).
    #[arg(long)]
    pub model: String,
    /// PEFT adapter folder, or a lab pool adapter's name (`caesar-11`); repeat for each.
    #[arg(long = "adapter", required = true)]
    pub adapters: Vec<PathBuf>,
    /// Comma-separated weight per adapter [default: 1 each].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = super::finite_number)]
    pub weights: Vec<f64>,
    /// sum, average, task-arithmetic, ties, dare, tsv, svd or lorahub-sum; also dare-ties (DARE
    /// with TIES' sign election) and cat (= sum).
    #[arg(long)]
    pub method: String,
    /// Kept fraction for ties (default 0.2) and dare (default 0.5).
    #[arg(long, value_parser = super::finite_number)]
    pub density: Option<f64>,
    /// Rank of truncated results (ties, dare, svd).
    #[arg(long, default_value_t = 16, value_parser = super::rank)]
    pub rank: usize,
    /// Scale of the merged update (task-arithmetic, ties, dare, tsv).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::finite_number)]
    pub lambda: f64,
    /// Seed of dare's masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output adapter folder.
    #[arg(long)]
    pub out: PathBuf,
}

fn method_of(args: &MergeArgs) -> Result<MergeMethod> {
    use loracycle::run::method::MethodKind as K;
    // `cat` (the rank-concatenated sum) and `dare-ties` (DARE with TIES' sign consensus) are
    // this command's own spellings; every other name is a merge kind of the one list.
    let kind = match args.method.as_str() {
        "cat" => Some(K::Sum),
        "dare-ties" => Some(K::Dare),
        name => K::from_name(name).filter(|k| k.is_merge()),
    };
    let m = match kind {
        Some(K::Sum) => MergeMethod::Sum,
        Some(K::Average) => MergeMethod::Average {
            over: Default::default(),
        },
        Some(K::TaskArithmetic) => MergeMethod::TaskArithmetic {
            lambda: args.lambda,
        },
        Some(K::Ties) => MergeMethod::Ties {
            density: args.density.unwrap_or(0.2),
            sign: SignElection::Total,
            lambda: args.lambda,
            weights: loracycle::merge::Weights::One,
        },
        Some(K::Dare) => MergeMethod::Dare {
            density: args.density.unwrap_or(0.5),
            seed: args.seed,
            consensus: args.method == "dare-ties",
            lambda: args.lambda,
        },
        Some(K::Tsv) => MergeMethod::Tsv {
            m: 8,
            lambda: args.lambda,
            weights: Default::default(),
        },
        Some(K::Svd) => MergeMethod::Svd { rank: args.rank },
        Some(K::LorahubSum) => MergeMethod::LorahubSum,
        _ => bail!(
            "unknown method {:?} (use {}, dare-ties or cat)",
            args.method,
            K::names(K::ALL.into_iter().filter(|k| k.is_merge()))
        ),
    };
    m.check(loracycle::run::setting::Fields("--"))?;
    if args.density.is_some() && !matches!(m, MergeMethod::Ties { .. } | MergeMethod::Dare { .. }) {
        bail!("--density applies to ties, dare and dare-ties only");
    }
    Ok(m)
}

pub fn merge(args: MergeArgs) -> Result<()> {
    if args.adapters.is_empty() {
        bail!("give at least one --adapter");
    }
    let method = method_of(&args)?;
    let weights = super::adapter_weights(&args.weights, args.adapters.len())?;
    let (model, paths) = super::model_and_adapters(&args.model, args.adapters.clone())?;
    let cfg = read_config(&model)?;
    let base_name = model_identity(&model, &cfg);
    let adapters = paths
        .iter()
        .map(|p| Adapter::load(p, Some((&cfg, base_name.as_deref()))))
        .collect::<Result<Vec<_>, _>>()?;
    for ad in &adapters {
        for w in &ad.warnings {
            eprintln!("warning: {w}");
        }
    }
    let sources: Vec<(&Adapter, f64)> = adapters.iter().zip(weights.iter().copied()).collect();
    let merged = merge_adapters(&sources, &method, &cfg)?;
    // PEFT wants one rank for every module: smaller ones are zero-padded.
    let (padded, rank, error) = merged.to_padded_lora(args.rank)?;
    let base = base_name.unwrap_or_else(|| model.display().to_string());
    // alpha = r: the written scale is 1, B already carries every factor.
    write_peft(&args.out, &padded, rank, rank as f64, &base, DType::F32)?;
    let how = if method.is_exact_low_rank() {
        "exact".to_string()
    } else {
        format!("rank-{} truncation, relative error {error:.4}", args.rank)
    };
    println!(
        "merged {} adapters with {} into {} (rank {rank}, {how})",
        adapters.len(),
        method.name(),
        args.out.display()
    );
    Ok(())
}
