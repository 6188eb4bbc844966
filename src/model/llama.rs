//! The Llama decoder: embeddings, N × (attention + SwiGLU MLP), final norm, LM head. Mistral,
//! Qwen2 and Qwen3 run on the same forward; where they differ is data from the config: biases on
//! linear modules (Qwen2's q, k, v; `attention_bias`, `mlp_bias`), per-head RMSNorms of q and k
//! before RoPE (Qwen3), an explicit `head_dim`, tied embeddings.
//!
//! Every forward takes the side branches as an argument. `differentiable` switches candle's fused
//! kernels (which silently drop gradients) for composed ops, for coefficient tuning and training.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::branch::{Branch, Branches};
use super::config::LlamaConfig;
use super::rope::RopeTables;
use super::weights::WeightFiles;
use super::{ModelError, Module, Result};

#[derive(Debug, Clone)]
struct Layer {
    /// q, k, v, o, gate, up, down, each (out, in), indexed by `Module::index`.
    linears: [Tensor; 7],
    /// The modules' biases (out), where the architecture has them.
    biases: [Option<Tensor>; 7],
    /// Qwen3's per-head RMSNorm weights of q and k (head_dim).
    qk_norm: Option<(Tensor, Tensor)>,
    input_norm: Tensor,
    post_attention_norm: Tensor,
}

/// A right-padded batch of token ids with the true length of every row.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (batch, seq) u32
    pub ids: Tensor,
    pub lengths: Vec<usize>,
}

impl Batch {
    pub fn new(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> candle_core::Result<Self> {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut flat = Vec::with_capacity(rows.len() * width);
        for r in rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(pad_id, width - r.len()));
        }
        Ok(Self {
            ids: Tensor::from_vec(flat, (rows.len(), width), device)?,
            lengths: rows.iter().map(Vec::len).collect(),
        })
    }

    pub fn width(&self) -> usize {
        self.ids.dim(1).unwrap_or(0)
    }
}

/// Per-layer key/value cache for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    entries: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            entries: vec![None; num_layers],
        }
    }

    pub fn len(&self) -> usize {
        self.entries
            .first()
            .and_then(|e| e.as_ref())
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    rope: RopeTables,
    dtype: DType,
    device: Device,
    differentiable: bool,
    /// With gradients on, still form ΔW = (B ⊙ g) A for shared gates when that is cheaper.
    dense_delta_grad: bool,
}

/// Largest module (out × in elements) for which a differentiable forward forms ΔW: the dense
/// matrix is kept for the backward pass, so this bounds the extra memory per module.
const DENSE_DELTA_GRAD_LIMIT: usize = 1 << 24;

/// The most (row, query, key) entries of one forward's attention mask: 2³⁰ (4 GiB in f32); a
/// batch beyond it is refused before anything is allocated.
pub const MAX_ATTENTION: usize = 1 << 30;

impl Llama {
    /// Loads a Hugging Face Llama folder, casting weights to `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg = super::weights::read_config(dir)?;
        let files = WeightFiles::open(dir)?;
        files.check_against(&cfg, dir)?;
        // SAFETY: the files are memory-mapped read-only; their headers were validated by
        // `WeightFiles::open`. A file changed underneath a running process is outside our control,
        // as with any mmap-based loader.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.paths, dtype, device) }
            .map_err(|e| ModelError::Corrupt {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::from_var_builder(cfg, vb, dtype, device)
    }

    pub fn from_var_builder(
        cfg: LlamaConfig,
        vb: VarBuilder<'_>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate().map_err(|reason| ModelError::Config {
            path: "config.json".into(),
            reason,
        })?;
        let get = |shape: &[usize], name: &str| -> Result<Tensor> {
            vb.get(shape, name).map_err(|e| ModelError::Weight {
                name: name.to_string(),
                reason: e.to_string(),
            })
        };
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let embed = get(&[v, h], "model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let linear = |m: Module| {
                let (i, o) = cfg.module_shape(m);
                get(
                    &[o, i],
                    &format!("model.layers.{l}.{}.{}.weight", m.block(), m.peft_name()),
                )
            };
            let bias = |m: Module| -> Result<Option<Tensor>> {
                if !cfg.has_bias(m) {
                    return Ok(None);
                }
                let (_, o) = cfg.module_shape(m);
                get(
                    &[o],
                    &format!("model.layers.{l}.{}.{}.bias", m.block(), m.peft_name()),
                )
                .map(Some)
            };
            let qk_norm = if cfg.qk_norm() {
                let hd = cfg.head_dim();
                let w = |n: &str| get(&[hd], &format!("model.layers.{l}.self_attn.{n}.weight"));
                Some((w("q_norm")?, w("k_norm")?))
            } else {
                None
            };
            layers.push(Layer {
                linears: [
                    linear(Module::Q)?,
                    linear(Module::K)?,
                    linear(Module::V)?,
                    linear(Module::O)?,
                    linear(Module::Gate)?,
                    linear(Module::Up)?,
                    linear(Module::Down)?,
                ],
                biases: [
                    bias(Module::Q)?,
                    bias(Module::K)?,
                    bias(Module::V)?,
                    bias(Module::O)?,
                    bias(Module::Gate)?,
                    bias(Module::Up)?,
                    bias(Module::Down)?,
                ],
                qk_norm,
                input_norm: get(&[h], &format!("model.layers.{l}.input_layernorm.weight"))?,
                post_attention_norm: get(
                    &[h],
                    &format!("model.layers.{l}.post_attention_layernorm.weight"),
                )?,
            });
        }
        let norm = get(&[h], "model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            get(&[v, h], "lm_head.weight")?
        };
        let rope = RopeTables::new(&cfg, cfg.max_sequence(), dtype, device)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            dtype,
            device: device.clone(),
            differentiable: false,
            dense_delta_grad: false,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Use gradient-preserving ops (slower) instead of candle's fused kernels.
    pub fn set_differentiable(&mut self, on: bool) {
        self.differentiable = on;
    }

    /// In differentiable mode, form ΔW = (B ⊙ g) A for shared gates when that costs fewer FLOPs
    /// than the branch (many tokens, a large total rank): the right choice for coefficient
    /// tuning, where only the gates are variables. Off by default.
    pub fn set_dense_delta_grad(&mut self, on: bool) {
        self.dense_delta_grad = on;
    }

    /// The base weight of one linear module, (out, in).
    pub fn linear_weight(&self, layer: usize, module: Module) -> &Tensor {
        &self.layers[layer].linears[module.index()]
    }

    /// A copy of the model with every branch folded into its base weight (shared gates only).
    pub fn fold(&self, branches: &Branches) -> Result<Self> {
        let mut out = self.clone();
        for (l, layer) in out.layers.iter_mut().enumerate() {
            for m in Module::ALL {
                if let Some(br) = branches.get(l, m) {
                    let w = &layer.linears[m.index()];
                    let delta = br.delta()?.to_dtype(w.dtype())?;
                    layer.linears[m.index()] = (w + delta)?;
                }
            }
        }
        Ok(out)
    }

    /// Adds a dense update (out, in) to one module's base weight.
    pub fn add_to_weight(
        &mut self,
        layer: usize,
        module: Module,
        delta: &Tensor,
    ) -> candle_core::Result<()> {
        let w = &mut self.layers[layer].linears[module.index()];
        let d = delta.to_device(w.device())?.to_dtype(w.dtype())?;
        *w = (&*w + d)?;
        Ok(())
    }

    /// Final hidden states (batch, seq, hidden) over a right-padded batch.
    pub fn hidden(&self, batch: &Batch, branches: Option<&Branches>) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        if t > self.rope.positions() {
            return Err(ModelError::TooLong {
                tokens: t,
                max: self.rope.positions(),
            });
        }
        if b.saturating_mul(t).saturating_mul(t) > MAX_ATTENTION {
            return Err(ModelError::BatchTooLarge { rows: b, tokens: t });
        }
        let mask = self.causal_mask(&batch.lengths, t, 0, t)?;
        let x = self
            .embed
            .index_select(&batch.ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        // A kept route trace counts the batch's real tokens only.
        let trace = branches.and_then(|br| br.trace.as_deref());
        if let Some(trace) = trace {
            let real: Vec<f32> = batch
                .lengths
                .iter()
                .flat_map(|&n| (0..t).map(move |i| f32::from(u8::from(i < n))))
                .collect();
            let count = batch.lengths.iter().map(|&n| n.min(t)).sum();
            let real = Tensor::from_vec(real, (b * t, 1), self.embed.device())?;
            trace.lock().unwrap_or_else(|e| e.into_inner()).real = Some((real, count));
        }
        let layers = self.layers.iter().enumerate().try_fold(x, |x, (l, layer)| {
            self.layer_forward(l, layer, &x, Some(&mask), 0, None, branches)
        });
        // Cleared on every path, so a later single-sequence step counts all its tokens.
        if let Some(trace) = trace {
            trace.lock().unwrap_or_else(|e| e.into_inner()).real = None;
        }
        Ok(self.rms_norm(&layers?, &self.norm)?)
    }

    /// Logits over the vocabulary for hidden states of any leading shape.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let h = *dims.last().unwrap_or(&0);
        let flat = hidden.reshape(((), h))?;
        let out = base_matmul(&flat, &self.lm_head, self.differentiable)?;
        let mut shape = dims;
        *shape.last_mut().expect("hidden has a last dim") = self.cfg.vocab_size;
        Ok(out.reshape(shape)?)
    }

    /// Logits at every position, (batch, seq, vocab).
    pub fn forward(&self, batch: &Batch, branches: Option<&Branches>) -> Result<Tensor> {
        self.logits(&self.hidden(batch, branches)?)
    }

    /// Runs new tokens of a single sequence through the model, extending `cache`;
    /// returns the logits of the last new position, (vocab).
    pub fn step(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        branches: Option<&Branches>,
    ) -> Result<Tensor> {
        let offset = cache.len();
        let t = ids.len();
        if offset + t > self.rope.positions() {
            return Err(ModelError::TooLong {
                tokens: offset + t,
                max: self.rope.positions(),
            });
        }
        let ids = Tensor::from_slice(ids, (1, t), &self.device)?;
        let mask = if t > 1 {
            Some(self.causal_mask(&[offset + t], t, offset, offset + t)?)
        } else {
            None
        };
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((1, t, ()))?;
        for (l, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(
                l,
                layer,
                &x,
                mask.as_ref(),
                offset,
                Some(&mut cache.entries[l]),
                branches,
            )?;
        }
        let x = self.rms_norm(&x, &self.norm)?;
        let last = x.narrow(1, t - 1, 1)?.flatten_all()?;
        self.logits(&last)
    }

    /// Additive mask (batch, 1, 1, q, k): key k is visible to query q when k ≤ q + offset and k is
    /// not padding.
    fn causal_mask(
        &self,
        lengths: &[usize],
        q_len: usize,
        offset: usize,
        k_len: usize,
    ) -> Result<Tensor> {
        let mut m = Vec::with_capacity(lengths.len() * q_len * k_len);
        for &len in lengths {
            for q in 0..q_len {
                for k in 0..k_len {
                    let visible = k <= q + offset && k < len.max(1);
                    m.push(if visible { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        Ok(
            Tensor::from_vec(m, (lengths.len(), 1, 1, q_len, k_len), &self.device)?
                .to_dtype(self.dtype)?,
        )
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.cfg.rms_norm_eps as f32;
        if self.differentiable {
            candle_nn::ops::rms_norm_slow(x, w, eps)
        } else {
            candle_nn::ops::rms_norm(x, w, eps)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: usize,
        layer: &Layer,
        x: &Tensor,
        mask: Option<&Tensor>,
        offset: usize,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        branches: Option<&Branches>,
    ) -> Result<Tensor> {
        let lin = |x: &Tensor, m: Module| {
            let y = self.lin_no_bias(l, layer, x, m, branches)?;
            match &layer.biases[m.index()] {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            }
        };

        let h = self.rms_norm(x, &layer.input_norm)?;
        let attn = self.attention(&h, &lin, layer.qk_norm.as_ref(), mask, offset, cache)?;
        let x = (x + attn)?;
        let h = self.rms_norm(&x, &layer.post_attention_norm)?;
        let act = lin(&h, Module::Gate)?.silu()?;
        let mlp = lin(&(act * lin(&h, Module::Up)?)?, Module::Down)?;
        Ok((x + mlp)?)
    }

    /// x Wᵀ of one module with its side branch (the bias is the caller's).
    fn lin_no_bias(
        &self,
        l: usize,
        layer: &Layer,
        x: &Tensor,
        m: Module,
        branches: Option<&Branches>,
    ) -> candle_core::Result<Tensor> {
        let w = &layer.linears[m.index()];
        let fold_ok = !self.differentiable
            || (self.dense_delta_grad && w.elem_count() <= DENSE_DELTA_GRAD_LIMIT);
        let dropout = branches
            .and_then(|b| b.dropout)
            .map(|d| move |x: &Tensor| d.apply(x, l, m));
        if let Some(d) = branches.and_then(|b| b.grouped(l, m)) {
            return grouped_linear(x, w, d);
        }
        if let Some(segs) = branches.and_then(|b| b.segments(l, m)) {
            return segmented_linear(x, w, segs, self.differentiable);
        }
        if let Some((br, r)) = branches.and_then(|b| Some((b, b.router(l, m)?))) {
            return routed_linear(x, w, r, self.differentiable, br.trace.as_deref(), (l, m));
        }
        linear(
            x,
            w,
            branches.and_then(|b| b.get(l, m)),
            fold_ok,
            self.differentiable,
            dropout.as_ref().map(|f| f as &DropoutFn<'_>),
        )
    }

    fn attention(
        &self,
        h: &Tensor,
        lin: &dyn Fn(&Tensor, Module) -> candle_core::Result<Tensor>,
        qk_norm: Option<&(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        offset: usize,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let (b, t, _) = h.dims3()?;
        let nh = self.cfg.num_attention_heads;
        let nkv = self.cfg.num_kv_heads();
        let hd = self.cfg.head_dim();
        let rep = nh / nkv;
        let heads = |x: Tensor, n: usize| -> candle_core::Result<Tensor> {
            x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut q = heads(lin(h, Module::Q)?, nh)?;
        let mut k = heads(lin(h, Module::K)?, nkv)?;
        if let Some((qn, kn)) = qk_norm {
            q = self.rms_norm(&q, qn)?;
            k = self.rms_norm(&k, kn)?;
        }
        let v = heads(lin(h, Module::V)?, nkv)?;
        let cos = self.rope.cos.narrow(0, offset, t)?;
        let sin = self.rope.sin.narrow(0, offset, t)?;
        let (q, k) = if self.differentiable {
            (
                candle_nn::rotary_emb::rope_slow(&q, &cos, &sin)?,
                candle_nn::rotary_emb::rope_slow(&k, &cos, &sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope(&q, &cos, &sin)?,
                candle_nn::rotary_emb::rope(&k, &cos, &sin)?,
            )
        };
        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let kt = k.dim(2)?;
        // Group query heads by their shared kv head instead of copying k and v `rep` times.
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Some(m) => scores
                .reshape((b, nkv, rep, t, kt))?
                .broadcast_add(m)?
                .reshape((b, nkv, rep * t, kt))?,
            None => scores,
        };
        let probs = if self.differentiable {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let out = probs.matmul(&v)?; // (b, nkv, rep*t, hd)
        let out = out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        Ok(lin(&out, Module::O)?)
    }
}

/// x (W + ΔW_p)ᵀ for each of the P contiguous row groups of x (batch, seq, in), with
/// `deltas` (P, out, in): one batched matmul.
fn grouped_linear(x: &Tensor, w: &Tensor, deltas: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, i) = x.dims3()?;
    let p = deltas.dim(0)?;
    if p == 0 || b % p != 0 {
        candle_core::bail!("{b} rows do not split into {p} equal groups");
    }
    let weights = deltas.broadcast_add(&w.unsqueeze(0)?)?; // (P, out, in)
    let xg = x.reshape((p, (b / p) * t, i))?;
    let y = xg.matmul(&weights.transpose(1, 2)?)?; // (P, rows·t, out)
    y.reshape((b, t, ()))
}

/// x Wᵀ for the whole batch, plus each segment's own (x Aᵀ) Bᵀ on its rows only: the base
/// weights are read once, and every row pays for its own adapter's rank and no other.
fn segmented_linear(
    x: &Tensor,
    w: &Tensor,
    segments: &[super::branch::Segment],
    grad: bool,
) -> candle_core::Result<Tensor> {
    let (b, t, i) = x.dims3()?;
    let o = w.dim(0)?;
    let total: usize = segments.iter().map(|s| s.rows).sum();
    if total != b {
        candle_core::bail!("segments cover {total} rows of a batch of {b}");
    }
    let y = base_matmul(&x.reshape((b * t, i))?, w, grad)?.reshape((b, t, o))?;
    if segments.iter().all(|s| s.ab.is_none()) {
        return Ok(y);
    }
    let mut parts = Vec::with_capacity(segments.len());
    let mut start = 0;
    for s in segments {
        let part = match &s.ab {
            Some((a, bm)) => {
                let xs = x.narrow(0, start, s.rows)?.reshape((s.rows * t, i))?;
                xs.matmul(&a.t()?)?
                    .matmul(&bm.t()?)?
                    .reshape((s.rows, t, o))?
            }
            None => Tensor::zeros((s.rows, t, o), y.dtype(), y.device())?,
        };
        parts.push(part);
        start += s.rows;
    }
    y + Tensor::cat(&parts, 0)?
}

/// x Wᵀ plus the routed adapters' Σ w_i(x)·s_i·B_i·A_i·x, token by token; the routing weights
/// are added to `trace` when one is kept.
fn routed_linear(
    x: &Tensor,
    w: &Tensor,
    router: &super::route::Router,
    grad: bool,
    trace: Option<&std::sync::Mutex<super::branch::RouteTrace>>,
    (layer, module): (usize, Module),
) -> candle_core::Result<Tensor> {
    let (b, t, i) = x.dims3()?;
    let x2 = x.reshape((b * t, i))?;
    let weights = router.weights(&x2)?;
    if let Some(trace) = trace {
        let mut trace = trace.lock().unwrap_or_else(|e| e.into_inner());
        let (sums, tokens) = match &trace.real {
            Some((real, n)) => (
                super::route::Router::weight_sums(
                    &weights.broadcast_mul(&real.to_dtype(weights.dtype())?)?,
                )?,
                *n,
            ),
            _ => (super::route::Router::weight_sums(&weights)?, b * t),
        };
        trace.add(layer, module, sums, tokens);
    }
    let y = (base_matmul(&x2, w, grad)? + router.delta_with(&x2, &weights)?)?;
    y.reshape((b, t, ()))
}

/// x Wᵀ for 2-D x: candle's matmul where gradients must flow, else the CPU path that skips
/// zeroing the output (`super::matmul`).
fn base_matmul(x: &Tensor, w: &Tensor, grad: bool) -> candle_core::Result<Tensor> {
    if grad {
        x.matmul(&w.t()?)
    } else {
        super::matmul::matmul_t(x, w)
    }
}

/// Applies dropout to a branch input.
type DropoutFn<'a> = dyn Fn(&Tensor) -> candle_core::Result<Tensor> + 'a;

/// x Wᵀ plus the side branch ((x Aᵀ) ⊙ g) Bᵀ, for x of shape (batch, seq, in).
///
/// With a shared gate and many tokens, forming ΔW = (B ⊙ g) A first is cheaper: it costs
/// R·in·out against N·R·(in + out) for the branch. That holds when N·(in + out) > in·out; it is
/// not used when gradients are needed, where ΔW would be kept for the backward pass.
fn linear(
    x: &Tensor,
    w: &Tensor,
    branch: Option<&Branch>,
    fold_ok: bool,
    grad: bool,
    dropout: Option<&DropoutFn<'_>>,
) -> candle_core::Result<Tensor> {
    let (b, t, i) = x.dims3()?;
    let x2 = x.reshape((b * t, i))?;
    let y = match branch {
        None => base_matmul(&x2, w, grad)?,
        Some(br) => {
            let o = w.dim(0)?;
            if fold_ok && dropout.is_none() && br.gate.rank() == 1 && b * t * (i + o) > i * o {
                base_matmul(&x2, &(w + br.delta()?)?, grad)?
            } else {
                let r = br.rank();
                let xd = match dropout {
                    Some(f) => f(&x2)?,
                    None => x2.clone(),
                };
                let xa = xd
                    .matmul(&br.a.t()?)?
                    .reshape((b, t, r))?
                    .broadcast_mul(&br.gate)?;
                (base_matmul(&x2, w, grad)? + xa.reshape((b * t, r))?.matmul(&br.b.t()?)?)?
            }
        }
    };
    y.reshape((b, t, ()))
}
