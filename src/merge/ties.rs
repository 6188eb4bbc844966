//! TIES and DARE, the merges that act entry by entry on dense task vectors. Both stream over the
//! adapters (recomputing τᵢ = wᵢsᵢBᵢAᵢ in a second pass rather than keeping all k of them).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Part, SignElection};

type Result<T> = candle_core::Result<T>;

fn values(p: &Part<'_>) -> Result<Vec<f32>> {
    p.dense()?.flatten_all()?.to_vec1::<f32>()
}

/// Zeroes all but the `density`·n entries of largest magnitude (exactly that many, as PEFT's
/// magnitude pruning; equal magnitudes are kept by position).
pub fn trim(v: &mut [f32], density: f64) {
    let n = v.len();
    let keep = ((density * n as f64) as usize).min(n);
    if keep == n {
        return;
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let by_magnitude = |a: &u32, b: &u32| {
        v[*b as usize]
            .abs()
            .total_cmp(&v[*a as usize].abs())
            .then(a.cmp(b))
    };
    if keep > 0 {
        idx.select_nth_unstable_by(keep - 1, by_magnitude);
    }
    for &i in &idx[keep..] {
        v[i as usize] = 0.0;
    }
}

fn sign(x: f32) -> i8 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// Elects a sign per entry from `passes` (a callback yielding every adapter's values), then
/// averages the entries that agree with it.
/// Calls its argument once with every adapter's values.
type Passes<'a> = dyn FnMut(&mut dyn FnMut(&[f32])) -> Result<()> + 'a;

fn consensus(n: usize, election: SignElection, passes: &mut Passes<'_>) -> Result<Vec<f32>> {
    let mut vote = vec![0f64; n];
    passes(&mut |v: &[f32]| {
        for (acc, &x) in vote.iter_mut().zip(v) {
            *acc += match election {
                SignElection::Total => x as f64,
                SignElection::Count => sign(x) as f64,
            };
        }
    })?;
    let elected: Vec<i8> = vote.iter().map(|&s| sign(s as f32)).collect();
    let mut sum = vec![0f64; n];
    let mut count = vec![0u32; n];
    passes(&mut |v: &[f32]| {
        for i in 0..n {
            if v[i] != 0.0 && sign(v[i]) == elected[i] {
                sum[i] += v[i] as f64;
                count[i] += 1;
            }
        }
    })?;
    Ok(sum
        .iter()
        .zip(&count)
        .map(|(&s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 })
        .collect())
}

/// TIES: trim, elect, disjoint mean.
pub fn ties(
    parts: &[Part<'_>],
    density: f64,
    election: SignElection,
    (out, inp): (usize, usize),
) -> Result<Tensor> {
    let merged = consensus(out * inp, election, &mut |f| {
        for p in parts {
            let mut v = values(p)?;
            trim(&mut v, density);
            f(&v);
        }
        Ok(())
    })?;
    Tensor::from_vec(merged, (out, inp), &Device::Cpu)
}

/// DARE: a seeded keep-mask of probability `density` per adapter, survivors rescaled by
/// 1/density; then a plain sum, or TIES's sign consensus.
pub fn dare(
    parts: &[Part<'_>],
    density: f64,
    with_consensus: bool,
    seed: u64,
    (out, inp): (usize, usize),
) -> Result<Tensor> {
    let n = out * inp;
    let dropped = |i: usize, p: &Part<'_>| -> Result<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64 * 0x9e37_79b9));
        let mut v = values(p)?;
        for x in &mut v {
            *x = if rng.random::<f64>() < density {
                (*x as f64 / density) as f32
            } else {
                0.0
            };
        }
        Ok(v)
    };
    let merged = if with_consensus {
        consensus(n, SignElection::Total, &mut |f| {
            for (i, p) in parts.iter().enumerate() {
                f(&dropped(i, p)?);
            }
            Ok(())
        })?
    } else {
        let mut sum = vec![0f32; n];
        for (i, p) in parts.iter().enumerate() {
            for (s, x) in sum.iter_mut().zip(dropped(i, p)?) {
                *s += x;
            }
        }
        sum
    };
    Tensor::from_vec(merged, (out, inp), &Device::Cpu)
}
