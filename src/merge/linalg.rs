//! The linear algebra the merges need, done so that no dense (out × in) SVD is ever taken.
//!
//! Every LoRA-shaped matrix is B·diag(g)·A with a small inner rank, so its SVD comes from two Gram
//! matrices (r × r) and one small core SVD; the tall products stay in candle. Only matrices of the
//! inner rank's size reach nalgebra. Dense results (TIES, DARE) are truncated by a randomized SVD
//! whose sketch covers the whole matrix when it is small, so lab-sized cases are exact.

use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

type Result<T> = candle_core::Result<T>;

/// Eigenvalues below this fraction of the largest count as zero.
const REL_EPS: f64 = 1e-12;

pub fn to_matrix(t: &Tensor) -> Result<DMatrix<f64>> {
    let (r, c) = t.dims2()?;
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(DMatrix::from_row_slice(r, c, &v))
}

pub fn from_matrix(m: &DMatrix<f64>, device: &Device) -> Result<Tensor> {
    let rows: Vec<f64> = (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| (i, j)))
        .map(|(i, j)| m[(i, j)])
        .collect();
    Tensor::from_vec(rows, (m.nrows(), m.ncols()), device)
}

/// Eigenpairs of a symmetric matrix, largest first, dropping (numerically) zero ones.
fn eigen_desc(m: DMatrix<f64>) -> (Vec<f64>, DMatrix<f64>) {
    let n = m.nrows();
    let e = SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| e.eigenvalues[j].total_cmp(&e.eigenvalues[i]));
    let top = order.first().map_or(0.0, |&i| e.eigenvalues[i].max(0.0));
    let keep: Vec<usize> = order
        .into_iter()
        .filter(|&i| e.eigenvalues[i] > top * REL_EPS && e.eigenvalues[i] > 0.0)
        .collect();
    let vals = keep.iter().map(|&i| e.eigenvalues[i]).collect();
    let vecs = DMatrix::from_fn(n, keep.len(), |r, c| e.eigenvectors[(r, keep[c])]);
    (vals, vecs)
}

/// An orthonormal basis Q (rows × q) of the column space of `x` (rows × n) and R (q × n) with
/// x = Q R, from the Gram matrix xᵀx.
fn gram_qr(x: &Tensor) -> Result<(Tensor, DMatrix<f64>)> {
    let x = x.to_dtype(DType::F64)?;
    let gram = to_matrix(&x.t()?.matmul(&x)?)?;
    let (vals, vecs) = eigen_desc(gram);
    let inv_sqrt = DMatrix::from_fn(vecs.nrows(), vals.len(), |r, c| {
        vecs[(r, c)] / vals[c].sqrt()
    });
    let q = x.matmul(&from_matrix(&inv_sqrt, x.device())?)?;
    let r = DMatrix::from_fn(vals.len(), vecs.nrows(), |r, c| {
        vals[r].sqrt() * vecs[(c, r)]
    });
    Ok((q, r))
}

/// A thin SVD: U (out × q), singular values (q, descending), V (in × q).
pub struct Svd {
    pub u: Tensor,
    pub s: Vec<f64>,
    pub v: Tensor,
}

impl Svd {
    /// Keeps the `k` leading triplets.
    pub fn truncate(self, k: usize) -> Result<Svd> {
        let k = k.min(self.s.len());
        Ok(Svd {
            u: self.u.narrow(1, 0, k)?,
            s: self.s[..k].to_vec(),
            v: self.v.narrow(1, 0, k)?,
        })
    }

    /// As LoRA halves in f32: B = U·diag(s) (out × q), A = Vᵀ (q × in), so B·A is the matrix.
    pub fn into_lora(self) -> Result<(Tensor, Tensor)> {
        let dev = self.u.device().clone();
        let s = Tensor::from_vec(self.s.clone(), self.s.len(), &dev)?;
        let b = self.u.broadcast_mul(&s.unsqueeze(0)?)?;
        Ok((
            self.v.t()?.to_dtype(DType::F32)?.contiguous()?,
            b.to_dtype(DType::F32)?.contiguous()?,
        ))
    }
}

/// SVD of B·A for B (out × r), A (r × in): no (out × in) matrix is formed.
pub fn lowrank_svd(b: &Tensor, a: &Tensor) -> Result<Svd> {
    let (qb, rb) = gram_qr(b)?;
    let (qa, ra) = gram_qr(&a.t()?)?;
    let core = &rb * ra.transpose();
    if core.nrows() == 0 || core.ncols() == 0 {
        let dev = b.device();
        return Ok(Svd {
            u: Tensor::zeros((b.dim(0)?, 0), DType::F64, dev)?,
            s: Vec::new(),
            v: Tensor::zeros((a.dim(1)?, 0), DType::F64, dev)?,
        });
    }
    let svd = core.svd(true, true);
    let (uc, vtc) = (svd.u.expect("requested U"), svd.v_t.expect("requested Vᵀ"));
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let s: Vec<f64> = order.iter().map(|&i| svd.singular_values[i]).collect();
    let uc = DMatrix::from_fn(uc.nrows(), order.len(), |r, c| uc[(r, order[c])]);
    let vc = DMatrix::from_fn(vtc.ncols(), order.len(), |r, c| vtc[(order[c], r)]);
    let dev = b.device();
    Ok(Svd {
        u: qb.matmul(&from_matrix(&uc, dev)?)?,
        s,
        v: qa.matmul(&from_matrix(&vc, dev)?)?,
    })
}

/// The nearest matrix with orthonormal columns (the polar factor U·Vᵀ of x's own SVD), computed
/// as x (xᵀx)^(-1/2); directions x does not span are left out (pseudo-inverse).
pub fn polar(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F64)?;
    let gram = to_matrix(&x.t()?.matmul(&x)?)?;
    let (vals, vecs) = eigen_desc(gram);
    let n = vecs.nrows();
    let mut inv_sqrt = DMatrix::zeros(n, n);
    for (c, &l) in vals.iter().enumerate() {
        let v = vecs.column(c);
        inv_sqrt += (v * v.transpose()) / l.sqrt();
    }
    x.matmul(&from_matrix(&inv_sqrt, x.device())?)
}

/// Rank-`rank` truncation of a dense matrix by a randomized SVD (oversampling 16, two power
/// iterations, a fixed seed). When rank + 16 covers the smaller side the sketch spans the whole
/// range and the result is the exact truncated SVD.
pub fn dense_svd(d: &Tensor, rank: usize) -> Result<Svd> {
    let d = d.to_dtype(DType::F64)?;
    let (out, inp) = d.dims2()?;
    let width = (rank + 16).min(out.min(inp));
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let omega: Vec<f64> = (0..inp * width)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let omega = Tensor::from_vec(omega, (inp, width), d.device())?;
    let mut q = polar(&d.matmul(&omega)?)?;
    for _ in 0..2 {
        let z = polar(&d.t()?.matmul(&q)?)?;
        q = polar(&d.matmul(&z)?)?;
    }
    // d ≈ Q (Qᵀ d): the SVD of that product is the sketch's SVD.
    let small = q.t()?.matmul(&d)?;
    let svd = lowrank_svd(&q, &small)?;
    svd.truncate(rank)
}

/// ‖x‖_F.
pub fn frobenius(x: &Tensor) -> Result<f64> {
    x.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()
        .map(f64::sqrt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f64]]) -> Tensor {
        let r = rows.len();
        let c = rows[0].len();
        let flat: Vec<f64> = rows.iter().flat_map(|x| x.iter().copied()).collect();
        Tensor::from_vec(flat, (r, c), &Device::Cpu).unwrap()
    }

    #[test]
    fn lowrank_svd_reconstructs_and_orders() {
        // B A = diag(3, 1) embedded: singular values 3 and 1.
        let b = t(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
        let a = t(&[&[0.0, 1.0, 0.0, 0.0], &[3.0, 0.0, 0.0, 0.0]]);
        let svd = lowrank_svd(&b, &a).unwrap();
        assert!((svd.s[0] - 3.0).abs() < 1e-9 && (svd.s[1] - 1.0).abs() < 1e-9);
        let (a2, b2) = svd.into_lora().unwrap();
        let rec = b2.matmul(&a2).unwrap().to_dtype(DType::F64).unwrap();
        let want = b.matmul(&a).unwrap();
        assert!(frobenius(&(rec - want).unwrap()).unwrap() < 1e-6);
    }

    #[test]
    fn polar_of_scaled_columns_is_orthonormal() {
        let x = t(&[&[2.0, 0.0], &[0.0, 0.5], &[0.0, 0.0]]);
        let p = polar(&x).unwrap();
        let want = t(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
        assert!(frobenius(&(p - want).unwrap()).unwrap() < 1e-9);
    }

    #[test]
    fn dense_svd_is_exact_on_small_matrices() {
        let d = t(&[&[4.0, 0.0, 0.0], &[0.0, 0.0, 2.0], &[0.0, 1.0, 0.0]]);
        let svd = dense_svd(&d, 2).unwrap();
        assert_eq!(svd.s.len(), 2);
        assert!((svd.s[0] - 4.0).abs() < 1e-9 && (svd.s[1] - 2.0).abs() < 1e-9);
    }
}
