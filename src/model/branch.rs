//! LoRA side branches: the selected adapters stacked along rank, one branch per (layer, module).
//!
//! y = x Wᵀ + ((x A_catᵀ) ⊙ g) B_catᵀ, where g holds each adapter's gate (weight × scale, or later
//! a tuned coefficient) repeated over its rank slice. A gate of shape (R) applies to every example;
//! a gate of shape (batch, 1, R) gives each example its own mix.

use candle_core::{DType, Device, Tensor};

use super::Module;
use super::config::LlamaConfig;
use super::route::Router;

/// The concatenated branch of one linear module.
#[derive(Debug, Clone)]
pub struct Branch {
    /// (R, in)
    pub a: Tensor,
    /// (out, R)
    pub b: Tensor,
    /// (R) or (batch, 1, R)
    pub gate: Tensor,
}

impl Branch {
    pub fn rank(&self) -> usize {
        self.a.dim(0).unwrap_or(0)
    }

    /// ΔW = (B ⊙ g) A, the dense update this branch adds to W (only for a shared gate).
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        let gate = self.gate.flatten_all()?;
        self.b.broadcast_mul(&gate.unsqueeze(0)?)?.matmul(&self.a)
    }
}

/// LoRA dropout on the branch input (x before A), as PEFT applies it while training. The masks
/// come from a seeded generator per (layer, module), so training stays reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub seed: u64,
}

impl Dropout {
    pub fn apply(&self, x: &Tensor, layer: usize, module: Module) -> candle_core::Result<Tensor> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ ((layer as u64) << 48) ^ ((module.index() as u64) << 56),
        );
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

/// One optional branch per module per layer.
#[derive(Debug, Clone)]
pub struct Branches {
    layers: Vec<[Option<Branch>; 7]>,
    /// Dropout on every branch input (training only).
    pub dropout: Option<Dropout>,
    /// Per-group dense updates (groups, out, in) by (layer, module): the batch's rows split into
    /// `groups` equal, contiguous groups, group p computed with W + ΔW_p. Scores several merges in
    /// one forward at the base model's arithmetic per token.
    grouped: Vec<[Option<Tensor>; 7]>,
    /// Per-segment low-rank updates by (layer, module): the batch's rows split into contiguous
    /// segments, each through its own adapter's (A, s·B) or none — the way multi-adapter servers
    /// batch requests. Ranks and module sets may differ from segment to segment.
    segmented: Vec<[Option<Vec<Segment>>; 7]>,
    /// Per-token routers by (layer, module) (Arrow): each token mixes the module's candidate
    /// adapters by its own routing weights.
    routed: Vec<[Option<Router>; 7]>,
    /// When set, every routed module adds its tokens' routing weights here (see [`RouteTrace`]).
    pub trace: Option<std::sync::Arc<std::sync::Mutex<RouteTrace>>>,
}

/// Routing weights summed over the tokens that went through each routed (layer, module), and
/// how many tokens did.
#[derive(Debug, Clone, Default)]
pub struct RouteTrace {
    pub sums: std::collections::BTreeMap<(usize, Module), (Vec<f64>, usize)>,
    /// While a padded batch is in flight: (batch·seq, 1) with 1 on real tokens and 0 on padding,
    /// and the number of real tokens, so that padding is not counted.
    pub real: Option<(Tensor, usize)>,
}

impl RouteTrace {
    pub fn add(&mut self, layer: usize, module: Module, sums: Vec<f64>, tokens: usize) {
        let e = self
            .sums
            .entry((layer, module))
            .or_insert_with(|| (vec![0.0; sums.len()], 0));
        for (t, s) in e.0.iter_mut().zip(sums) {
            *t += s;
        }
        e.1 += tokens;
    }
}

/// `rows` consecutive examples of a batch and the adapter halves they go through: A (r, in) and
/// B already scaled (out, r); `None` for rows that see the base model alone.
#[derive(Debug, Clone)]
pub struct Segment {
    pub rows: usize,
    pub ab: Option<(Tensor, Tensor)>,
}

/// One adapter's contribution to a branch, before concatenation.
pub struct Slice<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    /// Multiplies B A: the adapter's scale times its weight.
    pub gate: f64,
}

impl Branches {
    pub fn empty(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| Default::default()).collect(),
            dropout: None,
            grouped: Vec::new(),
            segmented: Vec::new(),
            routed: Vec::new(),
            trace: None,
        }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn get(&self, layer: usize, module: Module) -> Option<&Branch> {
        self.layers.get(layer)?[module.index()].as_ref()
    }

    pub fn set(&mut self, layer: usize, module: Module, branch: Option<Branch>) {
        self.layers[layer][module.index()] = branch;
    }

    /// Sets the per-group dense updates of one module, (groups, out, in).
    pub fn set_grouped(&mut self, layer: usize, module: Module, deltas: Tensor) {
        if self.grouped.is_empty() {
            self.grouped = (0..self.layers.len()).map(|_| Default::default()).collect();
        }
        self.grouped[layer][module.index()] = Some(deltas);
    }

    pub fn grouped(&self, layer: usize, module: Module) -> Option<&Tensor> {
        self.grouped.get(layer)?[module.index()].as_ref()
    }

    /// Sets the per-segment adapters of one module; the segments' rows must add up to the batch.
    pub fn set_segments(&mut self, layer: usize, module: Module, segments: Vec<Segment>) {
        if self.segmented.is_empty() {
            self.segmented = (0..self.layers.len()).map(|_| Default::default()).collect();
        }
        self.segmented[layer][module.index()] = Some(segments);
    }

    pub fn segments(&self, layer: usize, module: Module) -> Option<&[Segment]> {
        self.segmented.get(layer)?[module.index()].as_deref()
    }

    /// Sets the router of one module.
    pub fn set_router(&mut self, layer: usize, module: Module, router: Router) {
        if self.routed.is_empty() {
            self.routed = (0..self.layers.len()).map(|_| Default::default()).collect();
        }
        self.routed[layer][module.index()] = Some(router);
    }

    pub fn router(&self, layer: usize, module: Module) -> Option<&Router> {
        self.routed.get(layer)?[module.index()].as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(|l| l.iter().all(Option::is_none))
            && self.routed.iter().all(|l| l.iter().all(Option::is_none))
    }

    /// Total rank summed over all branches (a size measure for logs and benchmarks).
    pub fn total_rank(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.iter().flatten())
            .map(Branch::rank)
            .sum()
    }

    /// Stacks the slices of one (layer, module) into a branch in `dtype` on `device`.
    pub fn concat(
        slices: &[Slice<'_>],
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Option<Branch>> {
        if slices.is_empty() {
            return Ok(None);
        }
        let a: Vec<Tensor> = slices.iter().map(|s| s.a.clone()).collect();
        let b: Vec<Tensor> = slices.iter().map(|s| s.b.clone()).collect();
        let mut gate = Vec::new();
        for s in slices {
            let r = s.a.dim(0)?;
            gate.extend(std::iter::repeat_n(s.gate as f32, r));
        }
        let rank = gate.len();
        Ok(Some(Branch {
            a: Tensor::cat(&a, 0)?.to_device(device)?.to_dtype(dtype)?,
            b: Tensor::cat(&b, 1)?.to_device(device)?.to_dtype(dtype)?,
            gate: Tensor::from_vec(gate, rank, device)?.to_dtype(dtype)?,
        }))
    }

    /// Checks every branch against the base model's module shapes.
    pub fn check_shapes(&self, cfg: &LlamaConfig) -> Result<(), String> {
        if self.layers.len() != cfg.num_hidden_layers {
            return Err(format!(
                "branches cover {} layers, the model has {}",
                self.layers.len(),
                cfg.num_hidden_layers
            ));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            for m in Module::ALL {
                if let Some(br) = &layer[m.index()] {
                    let (i, o) = cfg.module_shape(m);
                    let r = br.rank();
                    if br.a.dims() != [r, i] || br.b.dims() != [o, r] {
                        return Err(format!(
                            "layer {l} {m}: A {:?} / B {:?} do not fit ({r}, {i}) / ({o}, {r})",
                            br.a.dims(),
                            br.b.dims()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
