//! A dataset row as the paper's prompts hold it: the instruction as the system turn, the
//! `user_input` rendering as the user turn and `str(row[assistant_output])` as the answer.
//!
//! A mapping `user_input` renders each field as `KEY - str(value) [SEP] ` on its own line, and a
//! choices field as a blank line, `KEY - `, then `label SYMBOL text` lines; the whole is
//! stripped (Python's whitespace) and a trailing ` [SEP]` removed. The paper's code removes the
//! last five characters whatever they are, which cuts the end off a final choices field
//! (ARC's last option loses five letters); loracycle removes `[SEP]` only where it ends the text.

use std::collections::HashMap;

use super::define::{Part, TaskDef, UserInput};
use super::value::{Value, py_strip};

/// One row: its columns by name.
pub type Row = HashMap<String, Value>;

/// A rendered example, as a task's JSONL files hold it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    /// The paper's example id: the split's key and the row's index in it (`train_12`).
    pub id: String,
    pub system: String,
    pub prompt: String,
    pub answer: String,
}

/// Renders `row` (example `id`) by `def`; an unusable value is an error naming the task, the
/// field, the column and the row.
pub fn render(def: &TaskDef, id: &str, row: &Row) -> Result<Rendered, String> {
    let bad = |field: &str, column: &str, what: String| {
        format!(
            "task {}: {field} (column {column}) in row {id}: {what}",
            def.name
        )
    };
    let col = |field: &str, c: &str| -> Result<&Value, String> {
        row.get(c)
            .ok_or_else(|| bad(field, c, "the row has no such column".into()))
    };
    let prompt = match &def.user_input {
        UserInput::Column(c) => match col("user_input", c)? {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            v => {
                return Err(bad(
                    "user_input",
                    c,
                    format!("{}, not text (name it in a mapping to render it)", v.kind()),
                ));
            }
        },
        UserInput::Fields(parts) => {
            let mut s = String::new();
            for (key, part) in parts {
                let field = format!("user_input.{key}");
                match part {
                    Part::Column(c) => {
                        let v = col(&field, c)?;
                        let text = v
                            .py_str()
                            .map_err(|k| bad(&field, c, format!("{k} cannot be rendered")))?;
                        s.push_str(key);
                        s.push_str(" - ");
                        s.push_str(&text);
                        s.push_str(" [SEP] \n");
                    }
                    Part::Choices {
                        column,
                        fields,
                        symbol,
                    } => {
                        let v = col(&field, column)?;
                        let list = |f: &str| -> Result<Vec<&str>, String> {
                            match v.get(f) {
                                Some(Value::List(items)) => items
                                    .iter()
                                    .map(|x| {
                                        x.as_str().ok_or_else(|| {
                                            bad(
                                                &field,
                                                column,
                                                format!("{f} holds {}, not text", x.kind()),
                                            )
                                        })
                                    })
                                    .collect(),
                                Some(Value::Str(s)) => Ok(vec![s.as_str()]),
                                Some(o) => Err(bad(&field, column, format!("{f} is {}", o.kind()))),
                                None => Err(bad(
                                    &field,
                                    column,
                                    format!("{} has no field {f}", v.kind()),
                                )),
                            }
                        };
                        s.push('\n');
                        s.push_str(key);
                        s.push_str(" - ");
                        match symbol {
                            Some(sym) => {
                                s.push('\n');
                                let (a, b) = (list(&fields[0])?, list(&fields[1])?);
                                for (x, y) in a.iter().zip(&b) {
                                    s.push_str(x);
                                    s.push(' ');
                                    s.push_str(sym);
                                    s.push(' ');
                                    s.push_str(y);
                                    s.push('\n');
                                }
                            }
                            None => match v.get(&fields[0]) {
                                Some(Value::Str(t)) => s.push_str(t),
                                Some(o) => {
                                    return Err(bad(
                                        &field,
                                        column,
                                        format!("{} is {}, not text", fields[0], o.kind()),
                                    ));
                                }
                                None => {
                                    return Err(bad(
                                        &field,
                                        column,
                                        format!("{} has no field {}", v.kind(), fields[0]),
                                    ));
                                }
                            },
                        }
                    }
                }
            }
            let t = py_strip(&s);
            py_strip(t.strip_suffix("[SEP]").unwrap_or(t)).to_string()
        }
    };
    let a = &def.assistant_output;
    let answer = match col("assistant_output", a)? {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        v => {
            return Err(bad(
                "assistant_output",
                a,
                format!("the label is {}, not a string or an integer", v.kind()),
            ));
        }
    };
    Ok(Rendered {
        id: id.to_string(),
        system: def.instruction.clone(),
        prompt,
        answer,
    })
}
