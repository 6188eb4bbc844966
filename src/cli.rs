//! The subcommands of the binary, one file each.

pub mod eval;
pub mod inspect;
pub mod lab;
pub mod merge;
pub mod pool;
pub mod run;
pub mod runs;

/// `--weights` for `n` adapters: one each (1 when not given).
pub fn adapter_weights(weights: &[f64], n: usize) -> anyhow::Result<Vec<f64>> {
    if weights.is_empty() {
        Ok(vec![1.0; n])
    } else if weights.len() != n {
        anyhow::bail!("--weights has {} values for {n} adapters", weights.len())
    } else {
        Ok(weights.to_vec())
    }
}
