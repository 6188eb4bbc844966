//! Rotary position tables, including Llama 3.1's frequency scaling (`rope_type: llama3`).
//!
//! Computed in f32 the way transformers does, so positions far from zero match the reference.

use candle_core::{DType, Device, Tensor};

use super::config::LlamaConfig;

/// The inverse frequencies of the rotary embedding, one per pair of head dimensions.
pub fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f32> {
    let dim = cfg.head_dim();
    let base = cfg.rope_theta() as f32;
    let mut inv: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    // `rope_scaling()` reads transformers 5's `rope_parameters` too: reading the field alone
    // dropped Llama 3.1's frequency scaling from configs transformers 5 wrote.
    if let Some(rs) = cfg.rope_scaling().filter(|rs| rs.rope_type == "llama3") {
        let factor = rs.factor as f32;
        let low = rs.low_freq_factor as f32;
        let high = rs.high_freq_factor as f32;
        let old_ctx = rs.original_max_position_embeddings as f32;
        let low_freq_wavelen = old_ctx / low;
        let high_freq_wavelen = old_ctx / high;
        for f in inv.iter_mut() {
            let wavelen = 2.0 * std::f32::consts::PI / *f;
            if wavelen > low_freq_wavelen {
                *f /= factor;
            } else if wavelen >= high_freq_wavelen {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                *f = (1.0 - smooth) * *f / factor + smooth * *f;
            }
        }
    }
    inv
}

/// cos and sin tables of shape (positions, head_dim / 2).
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl RopeTables {
    pub fn new(
        cfg: &LlamaConfig,
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let inv = inverse_frequencies(cfg);
        let half = inv.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (positions, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (positions, half), device)?.to_dtype(dtype)?;
        Ok(Self { cos, sin })
    }

    pub fn positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }
}
