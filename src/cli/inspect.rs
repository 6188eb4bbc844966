//! `loracycle inspect`: a model or an adapter described from its headers and config.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use loracycle::adapter::Adapter;
use loracycle::model::Module;
use loracycle::model::weights::{WeightFiles, read_config};
use loracycle::untrusted::printable;

fn module_list(modules: impl IntoIterator<Item = Module>) -> Vec<&'static str> {
    modules.into_iter().map(Module::peft_name).collect()
}

pub fn inspect(path: &Path, as_json: bool, norms: bool) -> Result<()> {
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    if path.join("adapter_config.json").is_file() || path.join("adapter_model.bin").is_file() {
        return inspect_adapter(path, as_json, norms);
    }
    if !path.join("config.json").is_file() {
        bail!(
            "{}: neither a model folder (config.json) nor an adapter folder (adapter_config.json)",
            path.display()
        );
    }
    let cfg = read_config(path)?;
    let files = WeightFiles::open(path)?;
    files.check_against(&cfg, path)?;
    let biases = module_list(Module::ALL.into_iter().filter(|&m| cfg.has_bias(m)));
    let report = json!({
        "kind": "model",
        "path": path.display().to_string(),
        "architecture": cfg.architecture(),
        "qk_norm": cfg.qk_norm(),
        "biases": biases,
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "intermediate": cfg.intermediate_size,
        "heads": cfg.num_attention_heads,
        "kv_heads": cfg.num_kv_heads(),
        "head_dim": cfg.head_dim(),
        "vocab": cfg.vocab_size,
        "dtype": files.dtypes(),
        "parameters": files.parameter_count(),
        "tied_embeddings": cfg.tie_word_embeddings,
        "rope_theta": cfg.rope_theta(),
        "rope_scaling": cfg.rope_scaling().map(|r| r.rope_type.clone()),
        "max_position_embeddings": cfg.max_position_embeddings,
        "eos_token_ids": cfg.eos_ids(),
        "weight_files": files.paths.len(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model {}", path.display());
    println!(
        "  architecture   {}",
        report["architecture"].as_str().unwrap_or("")
    );
    println!("  layers         {}", cfg.num_hidden_layers);
    println!(
        "  hidden         {} (intermediate {})",
        cfg.hidden_size, cfg.intermediate_size
    );
    println!(
        "  heads          {} query / {} key-value (head dim {})",
        cfg.num_attention_heads,
        cfg.num_kv_heads(),
        cfg.head_dim()
    );
    if cfg.qk_norm() {
        println!("  q/k norm       per-head RMSNorm of q and k before RoPE");
    }
    if !biases.is_empty() {
        println!("  biases         {}", biases.join(", "));
    }
    println!("  vocab          {}", cfg.vocab_size);
    println!("  dtype          {}", files.dtypes().join(", "));
    println!("  parameters     {}", files.parameter_count());
    println!(
        "  rope           theta {}{}",
        cfg.rope_theta(),
        cfg.rope_scaling()
            .map(|r| format!(", scaling {} ×{}", r.rope_type, r.factor))
            .unwrap_or_default()
    );
    println!(
        "  embeddings     {}",
        if cfg.tie_word_embeddings {
            "tied"
        } else {
            "untied"
        }
    );
    println!("  eos ids        {:?}", cfg.eos_ids());
    println!("  weight files   {}", files.paths.len());
    Ok(())
}

fn inspect_adapter(path: &Path, as_json: bool, norms: bool) -> Result<()> {
    let ad = Adapter::header(path, None)?;
    let norms = if norms {
        Adapter::load(path, None)?.delta_norms_by_module()?
    } else {
        Default::default()
    };
    let layers: std::collections::BTreeSet<usize> = ad.pairs.keys().map(|(l, _)| *l).collect();
    if as_json {
        let mut report = json!({
            "kind": "adapter",
            "path": path.display().to_string(),
            "rank": ad.config.r,
            "alpha": ad.config.lora_alpha,
            "use_rslora": ad.config.use_rslora,
            "scale": ad.config.scale(),
            "modules": module_list(ad.modules()),
            "layers": layers.len(),
            "parameters": ad.parameter_count(),
            "base_model": ad.config.base_model_name_or_path,
            "storage_dtype": ad.storage_dtype,
        });
        if !norms.is_empty() {
            let norms: serde_json::Map<String, serde_json::Value> = norms
                .iter()
                .map(|(m, n)| (m.peft_name().to_string(), json!(n)))
                .collect();
            report["delta_norms"] = json!(norms);
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("adapter {}", printable(&path.display().to_string()));
    println!("  rank           {}", ad.config.r);
    println!(
        "  alpha          {} (scale {:.4}{})",
        ad.config.lora_alpha,
        ad.config.scale(),
        if ad.config.use_rslora {
            ", rsLoRA: alpha/sqrt(r)"
        } else {
            ""
        }
    );
    println!("  modules        {}", module_list(ad.modules()).join(", "));
    println!("  layers         {}", layers.len());
    println!("  parameters     {}", ad.parameter_count());
    println!(
        "  base model     {}",
        printable(
            ad.config
                .base_model_name_or_path
                .as_deref()
                .unwrap_or("(not given)")
        )
    );
    println!("  storage dtype  {}", ad.storage_dtype);
    if norms.is_empty() {
        println!("  (--norms reads the weights for ‖ΔW‖_F by module)");
    } else {
        println!("  ‖ΔW‖_F by module (pooled over layers):");
        for (m, n) in norms {
            println!("    {:<10} {n:.4}", m.peft_name());
        }
    }
    Ok(())
}
