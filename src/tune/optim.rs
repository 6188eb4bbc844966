//! AdamW with a warm-up + cosine schedule and global gradient-norm clipping.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

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

/// Owns the optimiser state of a set of variables.
pub struct Trainer {
    vars: Vec<Var>,
    opt: AdamW,
    schedule: Schedule,
    clip: Option<f64>,
}

impl Trainer {
    pub fn new(
        vars: Vec<Var>,
        schedule: Schedule,
        betas: (f64, f64),
        weight_decay: f64,
        clip: Option<f64>,
    ) -> Result<Self> {
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: schedule.lr(0),
                beta1: betas.0,
                beta2: betas.1,
                eps: 1e-8,
                weight_decay,
            },
        )?;
        Ok(Self {
            vars,
            opt,
            schedule,
            clip,
        })
    }

    /// Backpropagates `loss`, clips, and takes one step at the schedule's rate for `step`.
    /// Returns the gradient norm before clipping.
    pub fn step(&mut self, loss: &Tensor, step: usize) -> Result<f64> {
        let mut grads = loss.backward()?;
        let norm = clip_grad_norm(&self.vars, &mut grads, self.clip)?;
        self.opt.set_learning_rate(self.schedule.lr(step));
        self.opt.step(&grads)?;
        Ok(norm)
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
}
