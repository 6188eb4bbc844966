//! The subcommands of the binary, one file each.

pub mod eval;
pub mod inspect;
pub mod lab;
pub mod merge;
pub mod pool;
pub mod run;
pub mod runs;
pub mod task;

/// `--weights` for `n` adapters: one each (1 when not given).
/// A number a command line gives (a weight, λ, a density): finite. For clap's `value_parser`;
/// clap's message names the flag.
pub fn finite_number(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "must be a finite number, got {}",
            loracycle::run::setting::spelled(v)
        ))
    }
}

/// A finite number > 0 (a temperature).
pub fn positive_number(s: &str) -> Result<f64, String> {
    let v = finite_number(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be greater than 0, got {v}"))
    }
}

/// A count a command line gives, in [1, max]: a rank, a batch size, a token budget.
fn count(s: &str, max: usize) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {max}, got {n}"))
    }
}

/// A LoRA rank to truncate or export to.
pub fn rank(s: &str) -> Result<usize, String> {
    count(s, loracycle::run::setting::MAX_RANK)
}

/// Examples per forward.
pub fn batch_size(s: &str) -> Result<usize, String> {
    count(s, loracycle::run::setting::MAX_BATCH)
}

/// New tokens per generation.
pub fn new_tokens(s: &str) -> Result<usize, String> {
    count(s, loracycle::run::setting::MAX_NEW_TOKENS)
}

pub fn adapter_weights(weights: &[f64], n: usize) -> anyhow::Result<Vec<f64>> {
    if weights.is_empty() {
        Ok(vec![1.0; n])
    } else if weights.len() != n {
        anyhow::bail!("--weights has {} values for {n} adapters", weights.len())
    } else {
        Ok(weights.to_vec())
    }
}

/// An error and its causes on one line, `outer: cause: cause`, skipping a cause whose text the
/// line already holds (errors that name their source in their own message, as `path: {source}`
/// does, would otherwise print it twice).
/// `--model` and `--adapter` as `eval` and `merge` take them: the model `lab`, a folder or a
/// Hub id in the HF cache (as `pool screen` and specs resolve it), and each adapter a folder or
/// the name of a lab pool adapter.
pub fn model_and_adapters(
    model: &str,
    adapters: Vec<std::path::PathBuf>,
) -> anyhow::Result<(std::path::PathBuf, Vec<std::path::PathBuf>)> {
    let model = loracycle::run::execute::resolve_model(model)
        .map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    let lab_pool = loracycle::lab::dir().ok().map(|d| d.join("pool"));
    let adapters = adapters
        .into_iter()
        .map(|p| {
            let name = p.to_string_lossy();
            match &lab_pool {
                Some(pool)
                    if !p.join("adapter_config.json").is_file()
                        && loracycle::pool::is_plain_name(&name)
                        && pool.join(&*name).join("adapter_config.json").is_file() =>
                {
                    pool.join(&*name)
                }
                _ => p,
            }
        })
        .collect();
    Ok((model, adapters))
}

pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct WithPath {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn error_text_names_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(WithPath {
            path: "spec.toml".into(),
            source: io(),
        });
        assert_eq!(error_text(&e), "spec.toml: No such file");
        let e = anyhow::Error::new(io()).context("reading the pool");
        assert_eq!(error_text(&e), "reading the pool: No such file");
        let e = anyhow::Error::new(WithPath {
            path: "a".into(),
            source: io(),
        })
        .context("loading the lab");
        assert_eq!(error_text(&e), "loading the lab: a: No such file");
    }
}
