//! Tokenizer plus prompt template: how a (system, prompt, answer) row becomes token ids.
//!
//! With a hand-written template the prompt part and the answer part are tokenized separately and
//! concatenated, so the answer tokens are exactly the ones the loss is computed on (no boundary
//! merge across the two). With the model's own chat template (`chat`) the ids are
//! `apply_chat_template`'s: the conversation with the answer is rendered and tokenized whole, the
//! prompt (rendered with the generation prompt) must tokenize as its prefix, and the answer is the
//! rest up to and including the first end token.

pub mod chat;
pub use loracycle_data::model::template::kind;

use std::path::Path;

use tokenizers::Tokenizer;

use super::config::LlamaConfig;
use super::{ModelError, Result};

pub use chat::{ChatTemplate, Message};
pub use kind::Template;

const LLAMA3_TOKENS: [&str; 4] = [
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

const CHATML_TOKENS: [&str; 2] = ["<|im_start|>", "<|im_end|>"];
const LAB_TOKENS: [&str; 4] = ["<|begin|>", "<|user|>", "<|assistant|>", "<|end|>"];

/// One example as token ids; `ids[answer_start..]` are the answer tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    pub ids: Vec<u32>,
    pub answer_start: usize,
}

/// A tokenizer with its resolved template, padding id and end-of-answer ids.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    template: Template,
    pad_id: u32,
    eos_ids: Vec<u32>,
    /// The longest example the model takes (its positions, bounded).
    max_tokens: usize,
    /// The model's own chat template, when it has one.
    chat: Option<ChatTemplate>,
}

impl TextCodec {
    pub fn load(model_dir: &Path, template: Template, cfg: &LlamaConfig) -> Result<Self> {
        let path = model_dir.join("tokenizer.json");
        let bad = |reason: String| ModelError::Tokenizer {
            path: path.clone(),
            reason,
        };
        let bytes = crate::untrusted::read(&path, crate::untrusted::LARGE)
            .map_err(|e| bad(e.to_string()))?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        let chat = ChatTemplate::find(model_dir)?;
        Self::with_chat(tokenizer, template, cfg, chat)
    }

    pub fn new(tokenizer: Tokenizer, template: Template, cfg: &LlamaConfig) -> Result<Self> {
        Self::with_chat(tokenizer, template, cfg, None)
    }

    /// With the model's chat template: `chat` renders it, and `auto` picks it when there is one.
    pub fn with_chat(
        tokenizer: Tokenizer,
        template: Template,
        cfg: &LlamaConfig,
        chat: Option<ChatTemplate>,
    ) -> Result<Self> {
        let n = tokenizer.get_vocab_size(true);
        if n > cfg.vocab_size {
            return Err(ModelError::VocabMismatch {
                tokenizer: n,
                vocab: cfg.vocab_size,
            });
        }
        let has = |tokens: &[&str]| tokens.iter().all(|t| tokenizer.token_to_id(t).is_some());
        let missing = |template: &str, tokens: &[&str]| ModelError::Template {
            template: template.into(),
            reason: format!(
                "the tokenizer lacks the template's special tokens ({})",
                tokens.join(" ")
            ),
        };
        let template = match template {
            Template::Auto if chat.is_some() => Template::Chat,
            Template::Chat if chat.is_none() => {
                return Err(ModelError::Template {
                    template: "chat".into(),
                    reason: "the model has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)".into(),
                });
            }
            Template::Auto if has(&LLAMA3_TOKENS) => Template::Llama3,
            Template::Auto if has(&CHATML_TOKENS) => Template::Chatml,
            Template::Auto if has(&LAB_TOKENS) => Template::Lab,
            Template::Auto => Template::Raw,
            Template::Llama3 if !has(&LLAMA3_TOKENS) => {
                return Err(missing("llama3", &LLAMA3_TOKENS));
            }
            Template::Lab if !has(&LAB_TOKENS) => return Err(missing("lab", &LAB_TOKENS)),
            Template::Chatml if !has(&CHATML_TOKENS) => {
                return Err(missing("chatml", &CHATML_TOKENS));
            }
            t => t,
        };
        let mut eos_ids = cfg.eos_ids();
        let end_token = match template {
            Template::Llama3 => Some("<|eot_id|>"),
            Template::Chatml => Some("<|im_end|>"),
            Template::Lab => Some("<|end|>"),
            Template::Chat => chat.as_ref().and_then(|c| c.eos_token.as_deref()),
            _ => None,
        };
        if let Some(end) = end_token.and_then(|t| tokenizer.token_to_id(t))
            && !eos_ids.contains(&end)
        {
            eos_ids.push(end);
        }
        let pad_id = cfg
            .pad_token_id
            .as_ref()
            .and_then(|p| p.to_vec().first().copied())
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .or_else(|| tokenizer.token_to_id("<|pad|>"))
            .or_else(|| eos_ids.first().copied())
            .unwrap_or(0);
        Ok(Self {
            tokenizer,
            template,
            pad_id,
            eos_ids,
            max_tokens: cfg.max_sequence(),
            chat,
        })
    }

    pub fn template(&self) -> Template {
        self.template
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Template {
                template: self.template.to_string(),
                reason: format!("cannot tokenize {text:?}: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// A hand-written template's prompt; a system turn where the format has one, else the
    /// system text on its own line before the prompt.
    fn prompt_text(&self, system: Option<&str>, prompt: &str) -> String {
        match (self.template, system) {
            (Template::Llama3, s) => format!(
                "<|begin_of_text|>{}<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                s.map_or(String::new(), |s| format!(
                    "<|start_header_id|>system<|end_header_id|>\n\n{s}<|eot_id|>"
                ))
            ),
            (Template::Chatml, s) => format!(
                "{}<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
                s.map_or(String::new(), |s| format!(
                    "<|im_start|>system\n{s}<|im_end|>\n"
                ))
            ),
            (Template::Lab, Some(s)) => format!("<|begin|><|user|>{s}\n{prompt}<|assistant|>"),
            (Template::Lab, None) => format!("<|begin|><|user|>{prompt}<|assistant|>"),
            (_, Some(s)) => format!("{s}\n{prompt}"),
            (_, None) => prompt.to_string(),
        }
    }

    fn messages<'a>(
        system: Option<&'a str>,
        prompt: &'a str,
        answer: Option<&'a str>,
    ) -> Vec<Message<'a>> {
        let mut m = Vec::with_capacity(3);
        if let Some(s) = system {
            m.push(Message {
                role: "system",
                content: s,
            });
        }
        m.push(Message {
            role: "user",
            content: prompt,
        });
        if let Some(a) = answer {
            m.push(Message {
                role: "assistant",
                content: a,
            });
        }
        m
    }

    fn answer_text(&self, answer: &str) -> String {
        match self.template {
            Template::Llama3 => format!("{answer}<|eot_id|>"),
            Template::Chatml => format!("{answer}<|im_end|>"),
            Template::Lab => format!("{answer}<|end|>"),
            _ => answer.to_string(),
        }
    }

    /// The prompt as the model sees it before generating.
    pub fn encode_prompt(&self, system: Option<&str>, prompt: &str) -> Result<Vec<u32>> {
        match &self.chat {
            Some(chat) if self.template == Template::Chat => {
                self.encode(&chat.render(&Self::messages(system, prompt, None), true)?)
            }
            _ => self.encode(&self.prompt_text(system, prompt)),
        }
    }

    /// An example as text, as the model reads it (the prompt with its template, then the
    /// answer and its end token): what `task show --model` prints.
    pub fn render_example(
        &self,
        system: Option<&str>,
        prompt: &str,
        answer: &str,
    ) -> Result<String> {
        match &self.chat {
            Some(chat) if self.template == Template::Chat => {
                chat.render(&Self::messages(system, prompt, Some(answer)), false)
            }
            _ => Ok(format!(
                "{}{}",
                self.prompt_text(system, prompt),
                self.answer_text(answer)
            )),
        }
    }

    /// A chat-templated example: the whole conversation tokenized, split where the prompt ends.
    fn encode_chat(
        &self,
        chat: &ChatTemplate,
        system: Option<&str>,
        prompt: &str,
        answer: &str,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let prompt_ids = self.encode_prompt(system, prompt)?;
        let full =
            self.encode(&chat.render(&Self::messages(system, prompt, Some(answer)), false)?)?;
        if !full.starts_with(&prompt_ids) {
            return Err(ModelError::Template {
                template: "chat".into(),
                reason: format!(
                    "{}: the prompt rendered with the generation prompt does not tokenize as the \
                     start of the conversation with its answer",
                    chat.path.display()
                ),
            });
        }
        let rest = &full[prompt_ids.len()..];
        let end = rest
            .iter()
            .position(|i| self.eos_ids.contains(i))
            .map_or(rest.len(), |p| p + 1);
        Ok((prompt_ids, rest[..end].to_vec()))
    }

    pub fn encode_example(
        &self,
        system: Option<&str>,
        prompt: &str,
        answer: &str,
    ) -> Result<EncodedExample> {
        let (mut ids, answer_ids) = match &self.chat {
            Some(chat) if self.template == Template::Chat => {
                self.encode_chat(chat, system, prompt, answer)?
            }
            _ => (
                self.encode_prompt(system, prompt)?,
                self.encode(&self.answer_text(answer))?,
            ),
        };
        let answer_start = ids.len();
        if answer_ids.is_empty() {
            return Err(ModelError::Template {
                template: self.template.to_string(),
                reason: format!("answer {answer:?} has no tokens"),
            });
        }
        ids.extend(answer_ids);
        if ids.len() > self.max_tokens {
            return Err(ModelError::TooLong {
                tokens: ids.len(),
                max: self.max_tokens,
            });
        }
        Ok(EncodedExample { ids, answer_start })
    }

    /// Every (system, prompt, answer) row encoded; an error names the row (1-based).
    pub fn encode_examples<'a>(
        &self,
        rows: impl IntoIterator<Item = (Option<&'a str>, &'a str, &'a str)>,
    ) -> Result<Vec<EncodedExample>> {
        rows.into_iter()
            .enumerate()
            .map(|(i, (s, p, a))| {
                self.encode_example(s, p, a).map_err(|e| ModelError::Row {
                    row: i + 1,
                    source: Box::new(e),
                })
            })
            .collect()
    }

    /// Generated ids as text: cut at the first end id, special tokens dropped.
    pub fn decode_answer(&self, ids: &[u32]) -> String {
        let end = ids
            .iter()
            .position(|i| self.eos_ids.contains(i))
            .unwrap_or(ids.len());
        self.tokenizer.decode(&ids[..end], true).unwrap_or_default()
    }
}
