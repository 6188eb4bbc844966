//! x Wᵀ on the CPU without zeroing the output first.
//!
//! candle's CPU matmul allocates its output with `vec![0; n]` and then has `gemm` overwrite every
//! element (`read_dst = false`), so each product also pays for a memset of its output: for the
//! forward benchmark's LM head alone that is 131 MB per forward, and over the whole forward the
//! zeroing allocation was ~5% of the time in a profile (the largest cost outside the GEMM kernels
//! once they ran on AVX-512). This path makes the same `gemm` call (same kernels, same
//! parallelism, so bit-identical results) into an uninitialised buffer.
//!
//! It builds a tensor without an autograd graph, so it is used only where no gradient is wanted
//! (the model's evaluation mode), for f32 on the CPU with contiguous operands; everything else
//! goes through candle's own matmul.

use candle_core::{DType, Device, Storage, Tensor};

/// x (rows, in) times Wᵀ for W (out, in): candle's `x.matmul(&w.t())`, faster on the CPU in f32.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    match fast(x, w)? {
        Some(y) => Ok(y),
        None => x.matmul(&w.t()?),
    }
}

fn fast(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if !matches!(x.device(), Device::Cpu)
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
        || x.rank() != 2
        || w.rank() != 2
    {
        return Ok(None);
    }
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || m == 0 || n == 0 || k == 0 {
        return Ok(None);
    }
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (Storage::Cpu(xc), Storage::Cpu(wc)) = (&*xs, &*ws) else {
        return Ok(None);
    };
    let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
    else {
        return Ok(None);
    };
    let lhs = &xc.as_slice::<f32>()?[x0..x1];
    let rhs = &wc.as_slice::<f32>()?[w0..w1];
    debug_assert_eq!((lhs.len(), rhs.len()), (m * k, n * k));
    let len = m * n;
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `lhs` is m × k row-major (row stride k, column stride 1) and `rhs` is W, n × k
    // row-major, read as Wᵀ (k × n: row stride 1, column stride k); both slices hold exactly those
    // elements (checked above). `dst` has room for m × n row-major elements, and with
    // `read_dst = false` and k > 0 gemm writes every one of them without reading any, so the
    // buffer is fully initialised when its length is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        dst.set_len(len);
    }
    drop((xs, ws));
    Ok(Some(Tensor::from_vec(dst, (m, n), &Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_candles_matmul_bit_for_bit() {
        let dev = Device::Cpu;
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (64, 96, 33), (130, 257, 129)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let got = fast(&x, &w)
                .unwrap()
                .expect("f32 contiguous takes the fast path");
            assert_eq!(got.dims(), &[m, n]);
            let (a, b) = (
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(a, b, "{m}x{k} · ({n}x{k})ᵀ");
        }
    }

    #[test]
    fn strided_or_other_dtypes_take_candles_path() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (6, 5), &dev).unwrap();
        // w.t() is (5, 6) but not contiguous: candle's path, same answer.
        let wt = w.t().unwrap();
        assert!(fast(&x, &wt).unwrap().is_none());
        let y = matmul_t(&x, &wt).unwrap();
        let want = x.matmul(&w).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
        let xh = x.to_dtype(DType::F16).unwrap();
        let wh = wt.contiguous().unwrap().to_dtype(DType::F16).unwrap();
        assert!(fast(&xh, &wh).unwrap().is_none());
        // A narrowed (offset) but contiguous x takes the fast path and reads the right rows.
        let xn = x.narrow(0, 1, 2).unwrap();
        let wc = wt.contiguous().unwrap();
        let got = fast(&xn, &wc).unwrap().expect("contiguous with an offset");
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            xn.matmul(&wc.t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        );
    }
}
