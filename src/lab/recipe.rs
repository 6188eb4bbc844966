//! The lab recipe: model shape, training budgets and the pool plan, full or `--quick`. Every
//! artefact is stamped with the hash of the part of the recipe that made it, so a rebuild skips
//! what is already built the same way.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::pretrain::PretrainSpec;
use super::tasks;
use crate::model::{LlamaConfig, Module};
use crate::tune::LoraTrainSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LabRecipe {
    pub quick: bool,
    pub seed: u64,
}

/// One adapter to train: its folder name, its task and its settings.
#[derive(Debug, Clone)]
pub struct AdapterPlan {
    pub name: String,
    pub task: String,
    pub spec: LoraTrainSpec,
    pub train_examples: usize,
}

pub const ALL_LINEAR: [Module; 7] = Module::ALL;
pub const QV: [Module; 2] = [Module::Q, Module::V];

pub fn hash_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl LabRecipe {
    pub fn model_config(&self) -> LlamaConfig {
        let tok = super::tokenizer::SPECIALS;
        let id = |t: &str| tok.iter().position(|s| *s == t).expect("special") as u32;
        serde_json::from_value(serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 128,
            "intermediate_size": 344,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": super::tokenizer::vocab_size(),
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 96,
            "tie_word_embeddings": false,
            "bos_token_id": id(super::tokenizer::BEGIN),
            "eos_token_id": id(super::tokenizer::END),
            "pad_token_id": id(super::tokenizer::PAD),
            "torch_dtype": "float32",
            "hidden_act": "silu",
            "_name_or_path": "loracycle/lab-base",
        }))
        .expect("static config")
    }

    /// The quick lab's tasks are ones a model learns in a minute; the full lab's are DESIGN's.
    pub fn base_tasks(&self) -> Vec<&'static str> {
        if self.quick {
            vec!["uppercase", "swap-case", "which-is-larger"]
        } else {
            tasks::base_mixture()
        }
    }

    pub fn held_out(&self) -> Vec<&'static str> {
        let all = tasks::held_out();
        if self.quick {
            // one with a relative in the pool, one without
            let with = all
                .iter()
                .copied()
                .find(|t| tasks::relative_of(t).is_some());
            let without = all
                .iter()
                .copied()
                .find(|t| tasks::relative_of(t).is_none());
            with.into_iter().chain(without).collect()
        } else {
            all
        }
    }

    pub fn pretrain_spec(&self) -> PretrainSpec {
        if self.quick {
            PretrainSpec {
                batch_size: 32,
                introduce_every: 40,
                main_steps: 160,
                peak_lr: 3e-3,
                warmup: 20,
                polish_steps: 0,
                polish_lr: 1e-3,
                measure_every: 50,
                seed: self.seed,
            }
        } else {
            PretrainSpec {
                batch_size: 64,
                introduce_every: 200,
                main_steps: 4000,
                peak_lr: 3e-3,
                warmup: 100,
                polish_steps: 1000,
                polish_lr: 1e-3,
                measure_every: 250,
                seed: self.seed,
            }
        }
    }

    /// Shape of the i-th pool adapter: mostly all seven modules, some q,v only; ranks 4, 8, 16;
    /// alpha r or 2r — the Hub pool's mix, scaled down.
    fn shape(i: usize) -> (usize, &'static [Module], f64) {
        match i % 8 {
            0 | 3 | 5 => (8, &ALL_LINEAR, 2.0),
            1 => (16, &ALL_LINEAR, 1.0),
            2 => (8, &QV, 2.0),
            4 => (4, &ALL_LINEAR, 2.0),
            6 => (16, &QV, 1.0),
            _ => (8, &ALL_LINEAR, 1.0),
        }
    }

    fn lora_spec(&self, i: usize, seed: u64) -> LoraTrainSpec {
        let (rank, modules, alpha_mult) = Self::shape(i);
        LoraTrainSpec {
            rank,
            alpha: alpha_mult * rank as f64,
            modules: modules.to_vec(),
            lr: if modules.len() == 2 { 5e-3 } else { 3e-3 },
            steps: if self.quick { 60 } else { 600 },
            batch_size: 32,
            warmup_frac: 0.05,
            final_lr_frac: 0.1,
            best_every: 0,
            weight_decay: 0.0,
            seed,
            early_stop: Some(0.99),
            check_every: if self.quick { 20 } else { 50 },
        }
    }

    /// The default pool: adapters for every task that is neither held out nor already solved by
    /// the base (an adapter cannot clearly beat a base at 100%), two per task and a third for one
    /// task in three — other shapes and seeds, as the Hub has several adapters for a popular task.
    pub fn pool_plan(&self) -> Vec<AdapterPlan> {
        let held = tasks::held_out();
        let base = tasks::base_mixture();
        let names: Vec<String> = if self.quick {
            ["contains-a", "has-even-length", "double"]
                .map(String::from)
                .to_vec()
        } else {
            tasks::suite()
                .into_iter()
                .map(|t| t.name)
                .filter(|n| !held.contains(&n.as_str()) && !base.contains(&n.as_str()))
                .collect()
        };
        let mut plan = Vec::new();
        for (i, task) in names.iter().enumerate() {
            let variants = if self.quick {
                1
            } else {
                2 + usize::from(i % 3 == 0)
            };
            for v in 0..variants {
                let k = plan.len();
                let name = if v == 0 {
                    task.clone()
                } else {
                    format!("{task}-v{}", v + 1)
                };
                plan.push(AdapterPlan {
                    name,
                    task: task.clone(),
                    spec: self
                        .lora_spec(k, self.seed.wrapping_mul(1_000_003).wrapping_add(k as u64)),
                    train_examples: if self.quick { 400 } else { 1500 },
                });
            }
        }
        plan
    }

    /// One adapter per held-out task, kept out of the default pool.
    pub fn oracle_plan(&self) -> Vec<AdapterPlan> {
        self.held_out()
            .into_iter()
            .enumerate()
            .map(|(i, task)| AdapterPlan {
                name: task.to_string(),
                task: task.to_string(),
                spec: LoraTrainSpec {
                    rank: 8,
                    alpha: 16.0,
                    modules: ALL_LINEAR.to_vec(),
                    ..self.lora_spec(0, self.seed.wrapping_add(7_000 + i as u64))
                },
                train_examples: if self.quick { 400 } else { 1500 },
            })
            .collect()
    }

    pub fn base_hash(&self) -> String {
        hash_of(&[
            &serde_json::to_string(&self.model_config()).unwrap_or_default(),
            &format!("{:?}", self.pretrain_spec()),
            &self.base_tasks().join(","),
        ])
    }

    pub fn adapter_hash(&self, plan: &AdapterPlan) -> String {
        hash_of(&[
            &self.base_hash(),
            &plan.task,
            &format!("{:?}", plan.spec),
            &plan.train_examples.to_string(),
        ])
    }
}
