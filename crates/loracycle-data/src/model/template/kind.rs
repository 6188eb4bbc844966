//! Which prompt template a spec or `--template` asks for: plain data, so that the spec parser
//! knows it without the tokenizer. Applying a template is in `model::template`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Template {
    /// Prompt tokens then answer tokens; no special tokens added.
    Raw,
    /// The Llama 3 chat format: a user turn, an assistant header, `<|eot_id|>` closing the answer.
    Llama3,
    /// The model's own Jinja chat template (`chat_template.jinja`, or `chat_template` in
    /// `tokenizer_config.json`), rendered as transformers' `apply_chat_template` does.
    Chat,
    /// ChatML, Qwen's chat format: `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n`,
    /// `<|im_end|>` closing the answer (no system turn is added).
    Chatml,
    /// The embedded lab's format: `<|begin|><|user|>prompt<|assistant|>answer<|end|>`.
    Lab,
    /// `chat` when the model has a chat template; else `llama3`, `chatml` or `lab` when the
    /// tokenizer has that template's special tokens; else `raw`.
    #[default]
    Auto,
}

impl FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(Template::Raw),
            "llama3" => Ok(Template::Llama3),
            "chat" => Ok(Template::Chat),
            "chatml" => Ok(Template::Chatml),
            "lab" => Ok(Template::Lab),
            "auto" => Ok(Template::Auto),
            _ => Err(format!(
                "unknown template {s:?} (use chat, raw, llama3, chatml, lab or auto)"
            )),
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Template::Raw => "raw",
            Template::Llama3 => "llama3",
            Template::Chat => "chat",
            Template::Chatml => "chatml",
            Template::Lab => "lab",
            Template::Auto => "auto",
        })
    }
}
