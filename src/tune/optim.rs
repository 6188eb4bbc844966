//! AdamW with a warm-up + cosine schedule and global gradient-norm clipping, with a state that
//! can be saved and restored.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Linear warm-up to `peak` over `warmup` steps, then cosine decay to `peak · final_frac` at
/// `total`; constant after that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub final_frac: f64,
}

impl Schedule {
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let t = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        self.peak * (self.final_frac + (1.0 - self.final_frac) * cos)
    }
}

/// AdamW (decoupled weight decay, bias-corrected moments), as candle_nn's, but with its state
/// open so a long training run can checkpoint and resume exactly.
pub struct Trainer {
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    betas: (f64, f64),
    weight_decay: f64,
    clip: Option<f64>,
}

impl Trainer {
    pub fn new(
        vars: Vec<Var>,
        betas: (f64, f64),
        weight_decay: f64,
        clip: Option<f64>,
    ) -> Result<Self> {
        let zeros = |v: &Var| Tensor::zeros(v.shape(), v.dtype(), v.device());
        Ok(Self {
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
            vars,
            t: 0,
            betas,
            weight_decay,
            clip,
        })
    }

    /// Backpropagates `loss`, clips, and takes one step at rate `lr`. Returns the gradient norm
    /// before clipping.
    pub fn step(&mut self, loss: &Tensor, lr: f64) -> Result<f64> {
        let mut grads = loss.backward()?;
        let norm = clip_grad_norm(&self.vars, &mut grads, self.clip)?;
        self.t += 1;
        let (b1, b2) = self.betas;
        let scale_m = 1.0 / (1.0 - b1.powi(self.t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.t as i32));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            self.m[i] = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let step = ((&self.m[i] * scale_m)? / ((&self.v[i] * scale_v)?.sqrt()? + 1e-8)?)?;
            let next = ((var.as_tensor() * (1.0 - lr * self.weight_decay))? - (step * lr)?)?;
            var.set(&next)?;
        }
        Ok(norm)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.t
    }

    /// The moments, named `m.{i}` / `v.{i}` by variable index.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let m = self
            .m
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("m.{i}"), t.clone()));
        let v = self
            .v
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("v.{i}"), t.clone()));
        m.chain(v).collect()
    }

    /// Restores what `state` returned after `steps` steps.
    pub fn restore(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
        steps: usize,
    ) -> Result<()> {
        for i in 0..self.vars.len() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = state.get(&format!("{prefix}.{i}")).ok_or_else(|| {
                    candle_core::Error::Msg(format!("checkpoint lacks {prefix}.{i}"))
                })?;
                if t.shape() != slot.shape() {
                    candle_core::bail!(
                        "checkpoint {prefix}.{i} has shape {:?}, expected {:?}",
                        t.shape(),
                        slot.shape()
                    );
                }
                *slot = t.to_device(slot.device())?.to_dtype(slot.dtype())?;
            }
        }
        self.t = steps;
        Ok(())
    }
}

/// Minibatches that walk a shuffled order of the examples, reshuffling (with the caller's
/// generator) each time the order is used up.
#[derive(Debug, Clone, Default)]
pub struct Batcher {
    order: Vec<usize>,
    cursor: usize,
}

impl Batcher {
    /// The next `size` items (at most `items.len()`).
    pub fn next<T: Clone>(
        &mut self,
        items: &[T],
        size: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Vec<T> {
        use rand::seq::SliceRandom;
        if self.order.len() != items.len() {
            self.order = (0..items.len()).collect();
            self.cursor = self.order.len();
        }
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size.min(items.len()) {
            if self.cursor == self.order.len() {
                self.order.shuffle(rng);
                self.cursor = 0;
            }
            batch.push(items[self.order[self.cursor]].clone());
            self.cursor += 1;
        }
        batch
    }
}

/// Global L2 norm of the gradients of `vars`; scales them down to `max_norm` when given and
/// exceeded.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: Option<f64>) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if let Some(max) = max_norm
        && norm > max
    {
        let factor = max / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * factor)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = Schedule {
            peak: 1.0,
            warmup: 10,
            total: 110,
            final_frac: 0.1,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let dev = candle_core::Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[2f32], &dev).unwrap()).unwrap();
        // loss = 1.5·(a·a) + 2·b  → grads 3a = (3, 6) and 2: norm 7
        let loss = ((a.as_tensor().sqr().unwrap().sum_all().unwrap() * 1.5).unwrap()
            + (b.as_tensor() * 2.0).unwrap().sum_all().unwrap())
        .unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&[a.clone(), b.clone()], &mut grads, Some(3.5)).unwrap();
        assert!((norm - 7.0).abs() < 1e-5);
        let ga = grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!(
            (ga[0] - 1.5).abs() < 1e-5 && (ga[1] - 3.0).abs() < 1e-5,
            "{ga:?}"
        );
    }

    #[test]
    fn adamw_matches_candle_and_resumes_exactly() {
        use candle_nn::{AdamW, Optimizer, ParamsAdamW};
        let dev = candle_core::Device::Cpu;
        let init = Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
        let loss_of = |v: &Var| (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let ours = Var::from_tensor(&init).unwrap();
        let theirs = Var::from_tensor(&init).unwrap();
        let mut t = Trainer::new(vec![ours.clone()], (0.9, 0.98), 0.01, None).unwrap();
        let params = ParamsAdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut c = AdamW::new(vec![theirs.clone()], params).unwrap();
        for _ in 0..5 {
            t.step(&loss_of(&ours), 0.1).unwrap();
            c.backward_step(&loss_of(&theirs)).unwrap();
        }
        let a = ours.as_tensor().to_vec1::<f32>().unwrap();
        let b = theirs.as_tensor().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        // moved well away from the start: the comparison is not vacuous
        assert!((a[2] - 2.0).abs() > 0.3, "{a:?}");
        // a trainer restored from the state continues identically
        let copy = Var::from_tensor(&ours.as_tensor().detach().copy().unwrap()).unwrap();
        let mut resumed = Trainer::new(vec![copy.clone()], (0.9, 0.98), 0.01, None).unwrap();
        resumed
            .restore(&t.state().into_iter().collect(), t.steps())
            .unwrap();
        t.step(&loss_of(&ours), 0.05).unwrap();
        resumed.step(&loss_of(&copy), 0.05).unwrap();
        assert_eq!(
            ours.as_tensor().to_vec1::<f32>().unwrap(),
            copy.as_tensor().to_vec1::<f32>().unwrap()
        );
    }
}
