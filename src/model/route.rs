//! Per-token routing over LoRA adapters (Arrow, Ostapenko et al. 2024), one router per
//! (layer, module).
//!
//! Each candidate adapter i of a module has a prototype p_i (the top right singular vector of its
//! ΔW_i = s_i·B_i·A_i). A token x scores every candidate by |x·p_i|; the top k scores are
//! softmaxed with temperature T (the rest get weight 0) and the module adds
//! Σ_i w_i(x)·s_i·B_i·A_i·x to x·Wᵀ. The candidates are stacked along rank as in a
//! [`super::Branch`], so ranks may differ; an adapter absent from a module is not a candidate
//! there.

use candle_core::{D, DType, Tensor};

/// The router and stacked adapters of one (layer, module).
#[derive(Debug, Clone)]
pub struct Router {
    /// (R, in): every candidate's A, stacked along rank.
    pub a: Tensor,
    /// (out, R): every candidate's s·B.
    pub b: Tensor,
    /// (N, in): one prototype per candidate (a trained variant's current values).
    pub prototypes: Tensor,
    /// (N, R): 1 where rank row r belongs to candidate n (see [`Router::ownership`]).
    pub owner: Tensor,
    /// Candidates kept per token (at most N).
    pub top_k: usize,
    pub temperature: f64,
}

impl Router {
    pub fn candidates(&self) -> usize {
        self.prototypes.dim(0).unwrap_or(0)
    }

    /// Routing weights (rows, N) of tokens x (rows, in): softmax(top-k(|x·P|) / T), 0 outside
    /// the top k. Differentiable in the prototypes (the top-k choice itself is not).
    pub fn weights(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = self.candidates();
        let p = self.prototypes.to_dtype(x.dtype())?;
        let scores = x.matmul(&p.t()?)?.abs()?;
        let k = self.top_k.clamp(1, n.max(1));
        let kept = if k < n {
            // The k-th largest score per row, found by removing the row maximum k-1 times.
            let mut rest = scores.detach();
            let floor = Tensor::new(f32::NEG_INFINITY, x.device())?
                .to_dtype(x.dtype())?
                .broadcast_as(rest.shape())?;
            for _ in 1..k {
                let top = rest.max_keepdim(D::Minus1)?;
                rest = rest.broadcast_ge(&top)?.where_cond(&floor, &rest)?;
            }
            let kth = rest.max_keepdim(D::Minus1)?;
            scores.broadcast_ge(&kth)?.where_cond(&scores, &floor)?
        } else {
            scores
        };
        candle_nn::ops::softmax(&(kept / self.temperature)?, D::Minus1)
    }

    /// Σ_i w_i(x)·s_i·B_i·A_i·x for tokens x (rows, in): (rows, out).
    pub fn delta(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.delta_with(x, &self.weights(x)?)
    }

    /// The same with the routing weights `w` (rows, N) already computed.
    pub fn delta_with(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        // Each rank row's weight, as w times the one-hot ownership: a small matmul, far cheaper
        // on the CPU than gathering columns with index_select.
        let gate = w.matmul(&self.owner.to_dtype(w.dtype())?)?;
        let a = self.a.to_dtype(x.dtype())?;
        let b = self.b.to_dtype(x.dtype())?;
        (x.matmul(&a.t()?)? * gate)?.matmul(&b.t()?)
    }

    /// The (N, R) one-hot ownership of rank rows: `owners[r]` is the candidate of row r.
    pub fn ownership(
        owners: &[u32],
        candidates: usize,
        dtype: DType,
        device: &candle_core::Device,
    ) -> candle_core::Result<Tensor> {
        let r = owners.len();
        let rows = Tensor::from_slice(owners, (1, r), device)?;
        Tensor::arange(0u32, candidates as u32, device)?
            .reshape((candidates, 1))?
            .broadcast_eq(&rows)?
            .to_dtype(dtype)
    }

    /// Routing weights w (rows, N) summed over the rows, in f64: (N).
    pub fn weight_sums(w: &Tensor) -> candle_core::Result<Vec<f64>> {
        w.detach().to_dtype(DType::F64)?.sum(0)?.to_vec1::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Three candidates in 2-D: ranks 1, 2 and 1 (rank rows owned 0, 1, 1, 2).
    fn router(top_k: usize, temperature: f64) -> Router {
        let d = Device::Cpu;
        Router {
            a: Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.], [2., -1.]], &d).unwrap(),
            b: Tensor::new(&[[1f32, 10., 100., 1000.]], &d).unwrap(),
            prototypes: Tensor::new(&[[1f32, 0.], [0., 1.], [0.6, 0.8]], &d).unwrap(),
            owner: Router::ownership(&[0, 1, 1, 2], 3, DType::F32, &d).unwrap(),
            top_k,
            temperature,
        }
    }

    fn sigmoid(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }

    #[test]
    fn weights_are_the_softmax_of_the_top_k_absolute_scores() {
        let x = Tensor::new(&[[3f32, 1.], [-1., -2.]], &Device::Cpu).unwrap();
        // Row 0 scores |3|, |1|, |2.6|: the top two are candidates 0 and 2.
        // Row 1 scores |-1|, |-2|, |-2.2|: the top two are candidates 2 and 1.
        let w = router(2, 1.0)
            .weights(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let want = [
            [sigmoid(0.4), 0.0, 1.0 - sigmoid(0.4)],
            [0.0, 1.0 - sigmoid(0.2), sigmoid(0.2)],
        ];
        for (got, want) in w.iter().zip(want) {
            for (g, e) in got.iter().zip(want) {
                assert!((*g as f64 - e).abs() < 1e-6, "{w:?}");
            }
        }
        // Temperature 0.5 doubles the score gaps.
        let w = router(2, 0.5)
            .weights(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((w[0][0] as f64 - sigmoid(0.8)).abs() < 1e-6, "{w:?}");
        // Top-1 is a hard choice; top-k ≥ N softmaxes every score.
        let w = router(1, 1.0)
            .weights(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(w, vec![vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]]);
        let w = router(9, 1.0)
            .weights(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let z: f64 = [3.0f64, 1.0, 2.6].iter().map(|s| s.exp()).sum();
        assert!((w[0][1] as f64 - 1f64.exp() / z).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn delta_mixes_each_candidates_update_by_its_weight() {
        let x = Tensor::new(&[[3f32, 1.]], &Device::Cpu).unwrap();
        let r = router(2, 1.0);
        let got = r.delta(&x).unwrap().to_vec2::<f32>().unwrap()[0][0] as f64;
        // A·x per rank row: 3, 1, 4, 5; B weighs them 1, 10, 100, 1000; candidate 1 is not kept.
        let (w0, w2) = (sigmoid(0.4), 1.0 - sigmoid(0.4));
        let want = w0 * 3.0 + w2 * 1000.0 * 5.0;
        assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        let sums = Router::weight_sums(&r.weights(&x).unwrap()).unwrap();
        assert!((sums[0] - w0).abs() < 1e-6 && sums[1] == 0.0, "{sums:?}");
    }
}
