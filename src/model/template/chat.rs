//! A model's own chat template, rendered as `transformers`' `apply_chat_template` renders it: the
//! Jinja source from `chat_template.jinja` (what transformers 5 writes) or `chat_template` in
//! `tokenizer_config.json`, through minijinja with transformers' settings (`trim_blocks`,
//! `lstrip_blocks`, loop controls, Python string methods), with `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception` and `strftime_now` in
//! scope. `LORACYCLE_DATE_STRING` sets `date_string`, which Llama 3.1-style templates print in
//! their system header (else today's date, as transformers does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use super::super::{ModelError, Result};
use crate::untrusted;

/// The most template instructions one render may execute.
pub const FUEL: u64 = 1_000_000;
/// The longest conversation one render may produce; a longer one is an error.
pub const MAX_RENDERED: usize = 8 << 20;
/// The memory one render may hold while it runs (strings it builds and drops included): a
/// real chat template needs a few kilobytes beyond its messages.
pub const MEMORY: usize = 256 << 20;

/// One turn of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    /// The template, parsed once, in transformers' environment.
    env: Arc<Environment<'static>>,
    /// Set once a render ran out of memory: the template is not run again.
    spent: Arc<AtomicBool>,
    /// Where it was read, for messages.
    pub path: PathBuf,
    pub bos_token: String,
    pub eos_token: Option<String>,
    /// `LORACYCLE_DATE_STRING`, read when the template is.
    date_string: Option<String>,
}

/// A special token as tokenizer_config.json gives it: a string, or `{"content": ...}`.
fn token(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

impl ChatTemplate {
    /// The model folder's chat template, if it has one.
    pub fn find(model_dir: &Path) -> Result<Option<ChatTemplate>> {
        let bad = |path: &Path, reason: String| ModelError::Template {
            template: "chat".into(),
            reason: format!("{}: {reason}", path.display()),
        };
        let config_path = model_dir.join("tokenizer_config.json");
        let config: Option<serde_json::Value> = match std::fs::symlink_metadata(&config_path) {
            Err(_) => None,
            Ok(_) => {
                let text = untrusted::read_text(&config_path, untrusted::SMALL)
                    .map_err(|e| bad(&config_path, e.to_string()))?;
                Some(
                    serde_json::from_str(&text)
                        .map_err(|e| bad(&config_path, format!("not valid JSON: {e}")))?,
                )
            }
        };
        let jinja = model_dir.join("chat_template.jinja");
        let (source, path) = if std::fs::symlink_metadata(&jinja).is_ok() {
            let text = untrusted::read_text(&jinja, untrusted::SMALL)
                .map_err(|e| bad(&jinja, e.to_string()))?;
            (text, jinja)
        } else {
            // A string, or a list of named templates (the one named "default").
            let found = config.as_ref().and_then(|c| match c.get("chat_template")? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(list) => list.iter().find_map(|t| {
                    (t.get("name")?.as_str()? == "default")
                        .then(|| t.get("template")?.as_str().map(String::from))
                        .flatten()
                }),
                _ => None,
            });
            match found {
                Some(s) => (s, config_path),
                None => return Ok(None),
            }
        };
        ChatTemplate::new(
            source,
            path,
            token(config.as_ref().and_then(|c| c.get("bos_token"))).unwrap_or_default(),
            token(config.as_ref().and_then(|c| c.get("eos_token"))),
        )
        .map(Some)
    }

    /// Parses `source` once; a broken template is reported where it is read.
    fn new(
        source: String,
        path: PathBuf,
        bos_token: String,
        eos_token: Option<String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        // A template comes with a downloaded model: its work per render is bounded (a real chat
        // template takes a few thousand instructions per conversation).
        env.set_fuel(Some(FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        if let Err(e) = env.add_template_owned("chat", source) {
            return Err(template_error(&path, &e));
        }
        Ok(Self {
            env: Arc::new(env),
            spent: Arc::new(AtomicBool::new(false)),
            path,
            bos_token,
            eos_token,
            date_string: std::env::var("LORACYCLE_DATE_STRING").ok(),
        })
    }

    fn error(&self, e: &Error) -> ModelError {
        template_error(&self.path, e)
    }

    /// The conversation as text; with `add_generation_prompt`, followed by the assistant's header.
    /// The template runs on a thread of its own under a memory budget ([`MEMORY`]), with its
    /// output capped at [`MAX_RENDERED`] bytes.
    pub fn render(&self, messages: &[Message<'_>], add_generation_prompt: bool) -> Result<String> {
        let spent = || ModelError::Template {
            template: "chat".into(),
            reason: format!(
                "{}: {}; a chat template needs a few kilobytes beyond its messages",
                self.path.display(),
                crate::budget::BudgetError::Spent(MEMORY)
            ),
        };
        if self.spent.load(Ordering::SeqCst) {
            return Err(spent());
        }
        let env = self.env.clone();
        let owned: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.role.to_string(), m.content.to_string()))
            .collect();
        let bos = self.bos_token.clone();
        let eos = self.eos_token.clone().unwrap_or_default();
        let date = self.date_string.clone();
        let rendered = crate::budget::run(MEMORY, move || {
            let messages: Vec<Message<'_>> = owned
                .iter()
                .map(|(role, content)| Message { role, content })
                .collect();
            let tmpl = env.get_template("chat")?;
            let ctx = context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos,
                eos_token => eos,
            };
            let ctx = match date {
                Some(d) => context! { date_string => d, ..ctx },
                None => ctx,
            };
            let mut out = Capped::default();
            if let Err(e) = tmpl.render_captured_to(ctx, &mut out) {
                // minijinja reports a refused write as an I/O error without its reason.
                if out.refused {
                    return Err(Error::new(ErrorKind::WriteFailure, too_long()));
                }
                return Err(e);
            }
            String::from_utf8(out.text).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "the template wrote bytes that are not UTF-8",
                )
            })
        });
        match rendered {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(e)) => Err(self.error(&e)),
            Err(crate::budget::BudgetError::Spent(_)) => {
                self.spent.store(true, Ordering::SeqCst);
                Err(spent())
            }
            Err(e) => Err(ModelError::Template {
                template: "chat".into(),
                reason: format!("{}: {e}", self.path.display()),
            }),
        }
    }
}

fn too_long() -> String {
    format!(
        "the conversation it renders is longer than {} MiB",
        MAX_RENDERED >> 20
    )
}

/// The output of one render, refused past [`MAX_RENDERED`] bytes.
#[derive(Default)]
struct Capped {
    text: Vec<u8>,
    refused: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDERED {
            self.refused = true;
            return Err(std::io::Error::other(too_long()));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// transformers' `strftime_now`: the local time in a strftime format. A format chrono cannot
/// read (`%`, `%Q`) is a template error, as Python's `strftime` would raise.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    use std::fmt::Write;
    let items = chrono::format::StrftimeItems::new(&format)
        .parse()
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now: {format:?} is not a strftime format"),
            )
        })?;
    let mut out = String::new();
    write!(
        out,
        "{}",
        chrono::Local::now().format_with_items(items.iter())
    )
    .map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: {format:?} cannot be written"),
        )
    })?;
    if out.len() > MAX_RENDERED {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "strftime_now: the date it writes is too long",
        ));
    }
    Ok(out)
}

fn template_error(path: &Path, e: &Error) -> ModelError {
    ModelError::Template {
        template: "chat".into(),
        reason: format!("{}: {e:#}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(
            source.into(),
            "t.jinja".into(),
            "<s>".into(),
            Some("</s>".into()),
        )
        .unwrap()
    }

    #[test]
    fn renders_as_transformers_does() {
        let t = template(
            "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}[{{ m.content.strip() }}]{% else %}{{ m.content }}{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}",
        );
        let msgs = [
            Message {
                role: "user",
                content: "  hi ",
            },
            Message {
                role: "assistant",
                content: "yo",
            },
        ];
        // trim_blocks and lstrip_blocks drop the newlines and indentation around the tags.
        assert_eq!(t.render(&msgs, false).unwrap(), "<s>[hi]yo</s>");
        assert_eq!(t.render(&msgs[..1], true).unwrap(), "<s>[hi]>");
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let t = template(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        );
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(e.contains("t.jinja") && e.contains("fuel"), "{e}");
    }

    #[test]
    fn a_bad_strftime_format_or_an_overlong_output_is_an_error() {
        for f in ["%", "%Q", "abc%"] {
            let t = template(&format!("{{{{ strftime_now('{f}') }}}}"));
            let e = t.render(&[], false).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "template chat: t.jinja: invalid operation: strftime_now: {f:?} is not a strftime format (in chat:1)"
                )
            );
        }
        assert_eq!(
            template("{{ strftime_now('%Y') }}")
                .render(&[], false)
                .unwrap()
                .len(),
            4
        );
        // 100 x 100 KB: past the output cap, not an allocation of the whole.
        let t = template("{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}");
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(e.contains("longer than 8 MiB"), "{e}");
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_template() {
        let t = template("{{ raise_exception('only user turns') }}");
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(
            e.contains("t.jinja") && e.contains("only user turns"),
            "{e}"
        );
    }
}
