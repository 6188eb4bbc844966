//! Percentile bootstrap confidence intervals for means of per-example scores.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A mean with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Estimate {
    /// "0.812 [0.734, 0.883]"
    pub fn display(&self, digits: usize) -> String {
        if self.mean.is_nan() {
            return "–".into();
        }
        format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            self.mean,
            self.lo,
            self.hi,
            d = digits
        )
    }
}

/// The mean of `values` and the 2.5th and 97.5th percentiles of `resamples` bootstrap means
/// (seeded). NaN values are left out; no values gives NaN everywhere.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            n,
        };
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if resamples == 0 || n == 1 {
        return Estimate {
            mean,
            lo: mean,
            hi: mean,
            n,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| v[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Estimate {
        mean,
        lo: at(0.025),
        hi: at(0.975),
        n,
    }
}

/// The mean difference `a − b` of paired scores (the same examples scored by two runs) with a
/// paired bootstrap 95% interval: examples are resampled, each keeping both of its scores, so
/// what the two runs share (an example both solve, or both miss) does not widen the interval.
/// `None` when the two lists are not the same length.
pub fn paired_delta(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<Estimate> {
    (a.len() == b.len()).then(|| {
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        bootstrap_mean(&d, resamples, seed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_data_has_a_point_interval() {
        let e = bootstrap_mean(&[0.5; 20], 1000, 1);
        assert_eq!((e.mean, e.lo, e.hi, e.n), (0.5, 0.5, 0.5, 20));
    }

    #[test]
    fn interval_matches_the_normal_approximation_for_a_proportion() {
        // 100 examples, 60 correct: mean 0.6, standard error √(.6·.4/100) ≈ 0.049, so the 95%
        // interval is about ±0.096.
        let v: Vec<f64> = (0..100).map(|i| if i < 60 { 1.0 } else { 0.0 }).collect();
        let e = bootstrap_mean(&v, 4000, 7);
        assert!((e.mean - 0.6).abs() < 1e-12);
        assert!((e.lo - 0.504).abs() < 0.02, "lo {}", e.lo);
        assert!((e.hi - 0.696).abs() < 0.02, "hi {}", e.hi);
        assert_eq!(bootstrap_mean(&v, 4000, 7), e, "seeded");
        let shown = Estimate {
            mean: 0.6,
            lo: 0.504,
            hi: 0.696,
            n: 100,
        }
        .display(2);
        assert_eq!(shown, "0.60 [0.50, 0.70]");
    }

    #[test]
    fn nan_values_are_left_out() {
        let e = bootstrap_mean(&[1.0, f64::NAN, 3.0], 0, 0);
        assert_eq!((e.mean, e.n), (2.0, 2));
        assert!(bootstrap_mean(&[], 10, 0).mean.is_nan());
    }

    #[test]
    fn a_paired_interval_sees_only_the_examples_that_differ() {
        // Two runs on 100 examples: both solve the first 50, the first run also solves 10 more.
        let a: Vec<f64> = (0..100).map(|i| if i < 60 { 1.0 } else { 0.0 }).collect();
        let b: Vec<f64> = (0..100).map(|i| if i < 50 { 1.0 } else { 0.0 }).collect();
        let d = paired_delta(&a, &b, 4000, 3).unwrap();
        assert!((d.mean - 0.1).abs() < 1e-12);
        // The differences are ten 1s and ninety 0s: standard error √(.1·.9/100) = 0.03, so the
        // interval is about 0.1 ± 0.059 — above 0, where two unpaired intervals overlap.
        assert!((d.lo - 0.041).abs() < 0.02, "lo {}", d.lo);
        assert!((d.hi - 0.159).abs() < 0.02, "hi {}", d.hi);
        assert!(d.lo > 0.0);
        let (ea, eb) = (bootstrap_mean(&a, 4000, 3), bootstrap_mean(&b, 4000, 3));
        assert!(ea.lo < eb.hi, "the unpaired intervals overlap");
        assert_eq!(paired_delta(&a, &b[..99], 10, 0), None);
    }
}
