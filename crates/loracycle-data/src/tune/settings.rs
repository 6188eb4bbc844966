//! The settings of coefficient tuning as a run spec's `[method]` table gives them (gradient-based
//! and LoraHub), with their defaults: plain data, so that the spec parser and the UI know them
//! without the training code (and candle).

use serde::{Deserialize, Serialize};

use crate::run::setting::{BadSetting, Fields, MAX_BATCH, MAX_STEPS};

/// What one coefficient covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One per adapter.
    Lora,
    /// One per (adapter, layer).
    Layer,
    /// One per (adapter, layer, attention or MLP).
    Sublayer,
    /// One per (adapter, layer, module) — the paper's recipe.
    #[default]
    Module,
    /// One per (adapter, layer, module, rank dimension).
    Rank,
}

impl Granularity {
    /// Every granularity, the paper's recipe first, then coarser to finer.
    pub const ALL: [Granularity; 5] = [
        Granularity::Module,
        Granularity::Layer,
        Granularity::Sublayer,
        Granularity::Lora,
        Granularity::Rank,
    ];

    /// The name a spec writes.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Lora => "lora",
            Granularity::Layer => "layer",
            Granularity::Sublayer => "sublayer",
            Granularity::Module => "module",
            Granularity::Rank => "rank",
        }
    }
}

/// f in gate = f(c)·s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Identity,
    Squared,
    Sigmoid,
    /// Softmax over the columns of each group.
    Softmax,
    /// x for x > 0, 0.01·x otherwise (gradient 0.01 at 0, so zero init still learns).
    #[default]
    LeakyRelu,
}

/// Initial value of c (before the activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    #[default]
    Zero,
    /// Uniform in ±1/√k (seeded).
    Uniform,
    /// Normal with std 1/√k (seeded).
    Normal,
    /// Every coefficient 1/√k.
    Equal,
    /// The task's own adapter (the oracle) at 1, every other adapter at 0 (the paper's
    /// `target` init); needs `controls.oracle = true`.
    Target,
}

fn lr() -> f64 {
    5e-2
}
fn steps() -> usize {
    100
}
fn batch() -> usize {
    8
}
fn warmup() -> f64 {
    0.1
}
fn eval_every() -> usize {
    10
}

/// Settings of gradient-based coefficient tuning; defaults are the paper's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientSpec {
    #[serde(default)]
    pub granularity: Granularity,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub init: Init,
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "steps")]
    pub steps: usize,
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Fraction of the steps spent warming up, then cosine decay to zero.
    #[serde(default = "warmup")]
    pub warmup_frac: f64,
    /// Validation loss is measured every this many steps; the best checkpoint is kept.
    #[serde(default = "eval_every")]
    pub eval_every: usize,
    /// Weight of the L1 penalty on the activated coefficients, mean |f(c)|.
    #[serde(default)]
    pub l1: f64,
}

impl Default for GradientSpec {
    fn default() -> Self {
        Self {
            granularity: Granularity::default(),
            activation: Activation::default(),
            init: Init::default(),
            lr: lr(),
            steps: steps(),
            batch_size: batch(),
            warmup_frac: warmup(),
            eval_every: eval_every(),
            l1: 0.0,
        }
    }
}

impl GradientSpec {
    /// Checks every setting is finite and in range (`f` names the table).
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.at_least("lr", self.lr, 0.0)?;
        f.count("steps", self.steps, 1, MAX_STEPS)?;
        f.count("batch_size", self.batch_size, 1, MAX_BATCH)?;
        f.within("warmup_frac", self.warmup_frac, 0.0, 1.0, false)?;
        f.count("eval_every", self.eval_every, 1, MAX_STEPS)?;
        f.at_least("l1", self.l1, 0.0)
    }
}

fn budget() -> usize {
    320
}
fn population() -> usize {
    16
}
fn bound() -> f64 {
    1.5
}
fn l1() -> f64 {
    0.05
}
fn sigma() -> f64 {
    0.5
}
fn rows() -> usize {
    512
}

/// Settings of LoraHub's gradient-free search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LorahubSpec {
    /// Candidate evaluations in all (generations × population).
    #[serde(default = "budget")]
    pub budget: usize,
    /// Candidates per generation, scored together.
    #[serde(default = "population")]
    pub population: usize,
    /// Coefficients live in [-bound, bound].
    #[serde(default = "bound")]
    pub bound: f64,
    /// Weight of mean|c| in the objective.
    #[serde(default = "l1")]
    pub l1: f64,
    /// Initial CMA-ES step size (the search starts at c = 0).
    #[serde(default = "sigma")]
    pub sigma: f64,
    /// Use only the first this-many training examples (LoraHub's few-shot setting); all if unset.
    #[serde(default)]
    pub examples: Option<usize>,
    /// Rows (candidate × example) per forward; bounds memory on large models.
    #[serde(default = "rows")]
    pub rows_per_forward: usize,
    /// The examples the objective is measured on.
    #[serde(default)]
    pub objective: Objective,
}

/// The examples LoraHub's objective is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The training examples (LoraHub's own recipe; the validation loss is then held out).
    #[default]
    Train,
    /// Train and validation examples together (the paper's setting).
    #[serde(rename = "train+validation")]
    TrainValidation,
}

impl Default for LorahubSpec {
    fn default() -> Self {
        Self {
            budget: budget(),
            population: population(),
            bound: bound(),
            l1: l1(),
            sigma: sigma(),
            examples: None,
            rows_per_forward: rows(),
            objective: Objective::Train,
        }
    }
}

impl LorahubSpec {
    /// Checks every setting is finite and in range (`f` names the table).
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.count("budget", self.budget, 1, MAX_STEPS)?;
        f.count("population", self.population, 2, MAX_BATCH)?;
        f.above("bound", self.bound, 0.0)?;
        f.at_least("l1", self.l1, 0.0)?;
        f.above("sigma", self.sigma, 0.0)?;
        if let Some(n) = self.examples {
            f.positive("examples", n)?;
        }
        f.count("rows_per_forward", self.rows_per_forward, 1, MAX_BATCH)
    }
}

fn top_k() -> usize {
    4
}
fn one() -> f64 {
    1.0
}
fn arrow_lr() -> f64 {
    1e-2
}
fn arrow_steps() -> usize {
    400
}

/// Settings of Arrow routing: per token and module, the top-k adapters by |x·p| (p: each
/// adapter's top right singular vector), softmaxed with a temperature. Zero-step unless `train`
/// is set, when the prototypes are tuned (the paper's lr 1e-2, 400 steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowSpec {
    /// Adapters each token is routed to in each module.
    #[serde(default = "top_k")]
    pub top_k: usize,
    /// Softmax temperature over the kept scores.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Tune the prototypes on the training split (trained Arrow); zero-step otherwise.
    #[serde(default)]
    pub train: bool,
    #[serde(default = "arrow_lr")]
    pub lr: f64,
    #[serde(default = "arrow_steps")]
    pub steps: usize,
    #[serde(default = "batch")]
    pub batch_size: usize,
    #[serde(default = "warmup")]
    pub warmup_frac: f64,
    #[serde(default = "eval_every")]
    pub eval_every: usize,
}

impl Default for ArrowSpec {
    fn default() -> Self {
        Self {
            top_k: top_k(),
            temperature: one(),
            train: false,
            lr: arrow_lr(),
            steps: arrow_steps(),
            batch_size: batch(),
            warmup_frac: warmup(),
            eval_every: eval_every(),
        }
    }
}

impl ArrowSpec {
    /// Checks every setting is finite and in range (`f` names the table).
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.count("top_k", self.top_k, 1, MAX_BATCH)?;
        f.above("temperature", self.temperature, 0.0)?;
        f.at_least("lr", self.lr, 0.0)?;
        f.count("steps", self.steps, 1, MAX_STEPS)?;
        f.count("batch_size", self.batch_size, 1, MAX_BATCH)?;
        f.within("warmup_frac", self.warmup_frac, 0.0, 1.0, false)?;
        f.count("eval_every", self.eval_every, 1, MAX_STEPS)
    }
}

fn pi_lr() -> f64 {
    1e-4
}
fn sixteen() -> usize {
    16
}
fn sixteen_f() -> f64 {
    16.0
}
fn yes() -> bool {
    true
}

/// Settings of π-Tuning: per-module softmax coefficients (equal at the start) trained jointly
/// with every selected adapter's A and B, and a fresh LoRA slot (A ~ N(0, 0.01), B = 0) that takes
/// the place of the task's own adapter when the selection holds it (the paper's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiTuningSpec {
    /// Add the fresh LoRA slot (in place of the task's own adapter, when it was selected).
    #[serde(default = "yes")]
    pub fresh: bool,
    /// The fresh slot's rank and alpha when no task adapter gives them.
    #[serde(default = "sixteen")]
    pub fresh_rank: usize,
    #[serde(default = "sixteen_f")]
    pub fresh_alpha: f64,
    #[serde(default = "pi_lr")]
    pub lr: f64,
    #[serde(default = "steps")]
    pub steps: usize,
    #[serde(default = "batch")]
    pub batch_size: usize,
    #[serde(default = "warmup")]
    pub warmup_frac: f64,
    #[serde(default = "eval_every")]
    pub eval_every: usize,
}

impl Default for PiTuningSpec {
    fn default() -> Self {
        Self {
            fresh: true,
            fresh_rank: sixteen(),
            fresh_alpha: sixteen_f(),
            lr: pi_lr(),
            steps: steps(),
            batch_size: batch(),
            warmup_frac: warmup(),
            eval_every: eval_every(),
        }
    }
}

impl PiTuningSpec {
    /// Checks every setting is finite and in range (`f` names the table).
    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        f.count(
            "fresh_rank",
            self.fresh_rank,
            1,
            crate::run::setting::MAX_RANK,
        )?;
        f.above("fresh_alpha", self.fresh_alpha, 0.0)?;
        f.at_least("lr", self.lr, 0.0)?;
        f.count("steps", self.steps, 1, MAX_STEPS)?;
        f.count("batch_size", self.batch_size, 1, MAX_BATCH)?;
        f.within("warmup_frac", self.warmup_frac, 0.0, 1.0, false)?;
        f.count("eval_every", self.eval_every, 1, MAX_STEPS)
    }
}

fn equal() -> Init {
    Init::Equal
}

/// Settings of AdaMerging: gradient-tuned coefficients with the identity activation, equal init
/// 1/√N, one per module (lr 5e-2, 100 steps): the gradient method with these settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaMergingSpec {
    #[serde(default)]
    pub granularity: Granularity,
    #[serde(default = "equal")]
    pub init: Init,
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "steps")]
    pub steps: usize,
    #[serde(default = "batch")]
    pub batch_size: usize,
    #[serde(default = "warmup")]
    pub warmup_frac: f64,
    #[serde(default = "eval_every")]
    pub eval_every: usize,
}

impl Default for AdaMergingSpec {
    fn default() -> Self {
        Self {
            granularity: Granularity::default(),
            init: equal(),
            lr: lr(),
            steps: steps(),
            batch_size: batch(),
            warmup_frac: warmup(),
            eval_every: eval_every(),
        }
    }
}

impl AdaMergingSpec {
    /// The gradient method's settings that this is.
    pub fn gradient(&self) -> GradientSpec {
        GradientSpec {
            granularity: self.granularity,
            activation: Activation::Identity,
            init: self.init,
            lr: self.lr,
            steps: self.steps,
            batch_size: self.batch_size,
            warmup_frac: self.warmup_frac,
            eval_every: self.eval_every,
            l1: 0.0,
        }
    }

    pub fn check(&self, f: Fields<'_>) -> Result<(), BadSetting> {
        self.gradient().check(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Granularity;

    #[test]
    fn granularity_names_are_the_spec_spelling() {
        for g in Granularity::ALL {
            assert_eq!(serde_json::to_value(g).unwrap(), g.name());
        }
    }
}
