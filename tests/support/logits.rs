//! Comparing logits with a reference at the real (unpadded) positions of a batch.

use candle_core::{DType, Tensor};

/// max |ours - ref| over real positions, divided by max |ref|.
pub fn logits_rel_err(ours: &Tensor, reference: &Tensor, mask: &Tensor) -> f64 {
    let ours = ours.to_dtype(DType::F32).unwrap();
    let mask = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let diff = ((&ours - reference)
        .unwrap()
        .abs()
        .unwrap()
        .broadcast_mul(&mask))
    .unwrap();
    let max_diff = diff
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let max_ref = reference
        .abs()
        .unwrap()
        .broadcast_mul(&mask)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    max_diff / max_ref
}
