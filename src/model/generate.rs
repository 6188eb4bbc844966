//! Greedy decoding with a KV cache, stopping on any end id.

use candle_core::D;

use super::Result;
use super::branch::Branches;
use super::llama::{KvCache, Llama};

/// Greedily extends `prompt` by at most `max_new_tokens`; returns the new ids, including the end id
/// when one was produced.
pub fn greedy(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    eos_ids: &[u32],
    branches: Option<&Branches>,
) -> Result<Vec<u32>> {
    let mut cache = KvCache::new(model.config().num_hidden_layers);
    let mut out = Vec::new();
    let mut next_input = prompt.to_vec();
    for _ in 0..max_new_tokens {
        let logits = model.step(&next_input, &mut cache, branches)?;
        let next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
        out.push(next);
        if eos_ids.contains(&next) {
            break;
        }
        next_input = vec![next];
    }
    Ok(out)
}
