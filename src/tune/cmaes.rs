//! CMA-ES with an ask-and-tell interface, so a whole generation can be scored by the caller in one
//! batched forward. (The `cmaes` crate only calls an objective one candidate at a time, which is
//! exactly what LoraHub's batched evaluation avoids.) The update is the standard (μ/μ_w, λ)
//! CMA-ES of Hansen's tutorial (arXiv:1604.00772) with its default parameters; candidates are
//! clipped to the box and the clipped points are what the update sees.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub struct CmaEs {
    n: usize,
    lambda: usize,
    weights: Vec<f64>,
    mueff: f64,
    cc: f64,
    cs: f64,
    c1: f64,
    cmu: f64,
    damps: f64,
    chi_n: f64,
    mean: DVector<f64>,
    sigma: f64,
    pc: DVector<f64>,
    ps: DVector<f64>,
    c: DMatrix<f64>,
    b: DMatrix<f64>,
    d: DVector<f64>,
    generation: usize,
    bounds: Option<(f64, f64)>,
    rng: ChaCha8Rng,
}

impl CmaEs {
    /// `lambda` candidates per generation (at least 2), start `mean`, step size `sigma`.
    pub fn new(
        mean: Vec<f64>,
        sigma: f64,
        lambda: usize,
        bounds: Option<(f64, f64)>,
        seed: u64,
    ) -> Self {
        let n = mean.len().max(1);
        let lambda = lambda.max(2);
        let mu = lambda / 2;
        let raw: Vec<f64> = (0..mu)
            .map(|i| (mu as f64 + 0.5).ln() - ((i + 1) as f64).ln())
            .collect();
        let total: f64 = raw.iter().sum();
        let weights: Vec<f64> = raw.iter().map(|w| w / total).collect();
        let mueff = 1.0 / weights.iter().map(|w| w * w).sum::<f64>();
        let nf = n as f64;
        let cc = (4.0 + mueff / nf) / (nf + 4.0 + 2.0 * mueff / nf);
        let cs = (mueff + 2.0) / (nf + mueff + 5.0);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mueff);
        let cmu = (1.0 - c1).min(2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nf + 2.0).powi(2) + mueff));
        let damps = 1.0 + 2.0 * (((mueff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + cs;
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        Self {
            n,
            lambda,
            weights,
            mueff,
            cc,
            cs,
            c1,
            cmu,
            damps,
            chi_n,
            mean: DVector::from_vec(if mean.is_empty() { vec![0.0] } else { mean }),
            sigma,
            pc: DVector::zeros(n),
            ps: DVector::zeros(n),
            c: DMatrix::identity(n, n),
            b: DMatrix::identity(n, n),
            d: DVector::from_element(n, 1.0),
            generation: 0,
            bounds,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn lambda(&self) -> usize {
        self.lambda
    }

    pub fn mean(&self) -> Vec<f64> {
        self.clip(self.mean.clone()).iter().copied().collect()
    }

    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    fn clip(&self, mut x: DVector<f64>) -> DVector<f64> {
        if let Some((lo, hi)) = self.bounds {
            x.apply(|v| *v = v.clamp(lo, hi));
        }
        x
    }

    /// The next generation's candidates.
    pub fn ask(&mut self) -> Vec<Vec<f64>> {
        (0..self.lambda)
            .map(|_| {
                let z = DVector::from_fn(self.n, |_, _| StandardNormal.sample(&mut self.rng));
                let y = &self.b * z.component_mul(&self.d);
                self.clip(&self.mean + y * self.sigma)
                    .iter()
                    .copied()
                    .collect()
            })
            .collect()
    }

    /// Updates the distribution from the candidates of [`CmaEs::ask`] and their objective values
    /// (lower is better).
    pub fn tell(&mut self, candidates: &[Vec<f64>], values: &[f64]) {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let old = self.mean.clone();
        let ys: Vec<DVector<f64>> = order
            .iter()
            .take(self.weights.len())
            .map(|&i| (DVector::from_column_slice(&candidates[i]) - &old) / self.sigma)
            .collect();
        let mut y_w = DVector::zeros(self.n);
        for (w, y) in self.weights.iter().zip(&ys) {
            y_w += y * *w;
        }
        self.mean = &old + &y_w * self.sigma;
        // C^(-1/2) y_w = B D⁻¹ Bᵀ y_w
        let inv_sqrt_y = &self.b * (self.b.transpose() * &y_w).component_div(&self.d);
        self.ps = &self.ps * (1.0 - self.cs)
            + inv_sqrt_y * (self.cs * (2.0 - self.cs) * self.mueff).sqrt();
        self.generation += 1;
        let norm_ps = self.ps.norm();
        let hsig =
            norm_ps / (1.0 - (1.0 - self.cs).powi(2 * self.generation as i32)).sqrt() / self.chi_n
                < 1.4 + 2.0 / (self.n as f64 + 1.0);
        let hsig_f = if hsig { 1.0 } else { 0.0 };
        self.pc = &self.pc * (1.0 - self.cc)
            + &y_w * (hsig_f * (self.cc * (2.0 - self.cc) * self.mueff).sqrt());
        let mut rank_mu = DMatrix::zeros(self.n, self.n);
        for (w, y) in self.weights.iter().zip(&ys) {
            rank_mu += y * y.transpose() * *w;
        }
        let c1a = self.c1 * (1.0 - (1.0 - hsig_f) * self.cc * (2.0 - self.cc));
        self.c = &self.c * (1.0 - c1a - self.cmu)
            + &self.pc * self.pc.transpose() * self.c1
            + rank_mu * self.cmu;
        self.sigma *= ((self.cs / self.damps) * (norm_ps / self.chi_n - 1.0)).exp();
        // Symmetrise against rounding, then refresh B and D.
        self.c = (&self.c + self.c.transpose()) * 0.5;
        let eig = SymmetricEigen::new(self.c.clone());
        self.b = eig.eigenvectors;
        self.d = eig.eigenvalues.map(|v| v.max(1e-20).sqrt());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl Fn(&[f64]) -> f64, start: Vec<f64>, gens: usize) -> (f64, Vec<f64>) {
        let mut es = CmaEs::new(start, 0.5, 12, None, 3);
        let mut best = (f64::INFINITY, Vec::new());
        for _ in 0..gens {
            let xs = es.ask();
            let vs: Vec<f64> = xs.iter().map(|x| f(x)).collect();
            for (x, v) in xs.iter().zip(&vs) {
                if *v < best.0 {
                    best = (*v, x.clone());
                }
            }
            es.tell(&xs, &vs);
        }
        best
    }

    #[test]
    fn minimises_a_shifted_sphere() {
        let f = |x: &[f64]| x.iter().map(|v| (v - 0.3).powi(2)).sum::<f64>();
        let (v, x) = run(f, vec![0.0; 6], 150);
        assert!(v < 1e-10, "sphere value {v}");
        assert!(x.iter().all(|v| (v - 0.3).abs() < 1e-4));
    }

    #[test]
    fn minimises_rosenbrock() {
        let f = |x: &[f64]| {
            x.windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum::<f64>()
        };
        let (v, _) = run(f, vec![0.0; 4], 600);
        assert!(v < 1e-8, "rosenbrock value {v}");
    }

    #[test]
    fn stays_in_the_box_and_is_seeded() {
        let mut a = CmaEs::new(vec![0.0; 3], 5.0, 8, Some((-1.5, 1.5)), 9);
        let mut b = CmaEs::new(vec![0.0; 3], 5.0, 8, Some((-1.5, 1.5)), 9);
        let xa = a.ask();
        assert_eq!(xa, b.ask());
        assert!(xa.iter().flatten().all(|v| (-1.5..=1.5).contains(v)));
        assert!(
            xa.iter().flatten().any(|v| v.abs() == 1.5),
            "σ = 5 must hit the box"
        );
    }
}
