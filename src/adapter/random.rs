//! The random-init control: adapters with the real ones' shapes whose A and B are redrawn from
//! N(0, σ). If merging random LoRAs does as well as merging real ones, the gain was not transfer.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{Adapter, LoraPair};
use crate::model::Module;

pub use super::random_init::RandomInit;

fn moments(t: &Tensor) -> candle_core::Result<(f64, f64, usize)> {
    let v = t.to_dtype(DType::F64)?.flatten_all()?;
    let n = v.elem_count();
    let s = v.sum_all()?.to_scalar::<f64>()?;
    let s2 = v.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((s, s2, n))
}

fn std_of(sum: f64, sum2: f64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mean = sum / n as f64;
    (sum2 / n as f64 - mean * mean).max(0.0).sqrt()
}

fn normal(shape: &[usize], sigma: f64, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = if sigma > 0.0 {
        let d = Normal::new(0.0, sigma).expect("σ > 0");
        (0..n).map(|_| d.sample(rng) as f32).collect()
    } else {
        vec![0.0; n]
    };
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// Random counterparts of `adapters` (same names with a `random:` prefix, same config and
/// shapes); `Off` returns clones.
pub fn randomize(
    adapters: &[&Adapter],
    mode: RandomInit,
    seed: u64,
) -> candle_core::Result<Vec<Adapter>> {
    if mode == RandomInit::Off {
        return Ok(adapters.iter().map(|a| (*a).clone()).collect());
    }
    // Pooled σ per (layer, module) over all adapters: (ΣA, ΣA², nA, ΣB, ΣB², nB).
    let mut pooled: BTreeMap<(usize, Module), [f64; 6]> = BTreeMap::new();
    if mode == RandomInit::Pooled {
        for ad in adapters {
            for (key, p) in &ad.pairs {
                let (sa, sa2, na) = moments(&p.a)?;
                let (sb, sb2, nb) = moments(&p.b)?;
                let e = pooled.entry(*key).or_default();
                e[0] += sa;
                e[1] += sa2;
                e[2] += na as f64;
                e[3] += sb;
                e[4] += sb2;
                e[5] += nb as f64;
            }
        }
    }
    let mut out = Vec::with_capacity(adapters.len());
    for (i, ad) in adapters.iter().enumerate() {
        let mut pairs = BTreeMap::new();
        for (&(l, m), p) in &ad.pairs {
            let (sigma_a, sigma_b) = match mode {
                RandomInit::Pooled => {
                    let e = pooled[&(l, m)];
                    (
                        std_of(e[0], e[1], e[2] as usize),
                        std_of(e[3], e[4], e[5] as usize),
                    )
                }
                _ => {
                    let (sa, sa2, na) = moments(&p.a)?;
                    let (sb, sb2, nb) = moments(&p.b)?;
                    (std_of(sa, sa2, na), std_of(sb, sb2, nb))
                }
            };
            let stream = seed
                ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ ((l as u64) << 40)
                ^ ((m.index() as u64) << 56);
            let mut rng = ChaCha8Rng::seed_from_u64(stream);
            pairs.insert(
                (l, m),
                LoraPair {
                    a: normal(p.a.dims(), sigma_a, &mut rng)?,
                    b: normal(p.b.dims(), sigma_b, &mut rng)?,
                },
            );
        }
        out.push(Adapter {
            name: format!("random:{}", ad.name),
            pairs,
            warnings: Vec::new(),
            ..(*ad).clone()
        });
    }
    Ok(out)
}

/// Standard deviation of every A and of every B entry of an adapter (for checks and reports).
pub fn adapter_std(ad: &Adapter) -> candle_core::Result<(f64, f64)> {
    let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
    for p in ad.pairs.values() {
        let (s, s2, n) = moments(&p.a)?;
        a[0] += s;
        a[1] += s2;
        a[2] += n as f64;
        let (s, s2, n) = moments(&p.b)?;
        b[0] += s;
        b[1] += s2;
        b[2] += n as f64;
    }
    Ok((
        std_of(a[0], a[1], a[2] as usize),
        std_of(b[0], b[1], b[2] as usize),
    ))
}
