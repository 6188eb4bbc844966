//! Task definitions in the paper's `tasks.yaml` format: where the rows come from (`path:
//! [dataset, config]` on the Hub, or a local `json_file`), how splits are named (`split`), how a
//! row becomes a conversation (`instruction`, `user_input`, `assistant_output`) and how its
//! answers are judged (`answer_len`, `task_type`, `metric`).

use std::path::{Path, PathBuf};

use super::value::Value;

/// The most a tasks file may be (the paper's is 46 KB).
pub const MAX_TASKS_FILE: u64 = 16 << 20;

/// Where a task's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A Hugging Face dataset and its config (`default` when none is named); `subsets` lists the
    /// configs whose splits are concatenated instead (`combine_subsets`), each row tagged with
    /// its config in a `category` column.
    Hub {
        dataset: String,
        config: Option<String>,
        subsets: Vec<String>,
    },
    /// A local JSON or JSONL file (one `train` split), relative paths read from the tasks file's
    /// folder.
    Json(PathBuf),
}

/// A part of a mapping `user_input`.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// `KEY: column`: rendered `KEY - str(value) [SEP] `.
    Column(String),
    /// `KEY: {key_name, fields: [label, text], concat_symbol}`: the column's two lists zipped
    /// into `label SYMBOL text` lines (or, with no symbol, the first field as is).
    Choices {
        column: String,
        fields: Vec<String>,
        symbol: Option<String>,
    },
}

/// What the user turn holds.
#[derive(Debug, Clone, PartialEq)]
pub enum UserInput {
    Column(String),
    Fields(Vec<(String, Part)>),
}

/// `answer_len`: the generation budget, 30 tokens (short) or 500 (long), as the paper's
/// evaluation sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerLen {
    Short,
    Long,
}

impl AnswerLen {
    pub fn max_new_tokens(self) -> usize {
        match self {
            AnswerLen::Short => 30,
            AnswerLen::Long => 500,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            AnswerLen::Short => "short",
            AnswerLen::Long => "long",
        }
    }
}

/// One task of a tasks file.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDef {
    pub name: String,
    pub source: Source,
    /// `split:` the paper's split keys (train, valid, test) and the dataset's split each takes.
    pub split: Option<Vec<(String, String)>>,
    pub instruction: String,
    pub user_input: UserInput,
    pub assistant_output: String,
    pub task_type: String,
    pub answer_len: AnswerLen,
    pub metric: Option<String>,
    /// Keys the paper's format does not have, ignored as its code ignores them.
    pub ignored: Vec<String>,
}

impl TaskDef {
    /// Every column a row must have, in the order the definition names them.
    pub fn columns(&self) -> Vec<String> {
        let mut v = Vec::new();
        match &self.user_input {
            UserInput::Column(c) => v.push(c.clone()),
            UserInput::Fields(parts) => {
                for (_, p) in parts {
                    match p {
                        Part::Column(c) | Part::Choices { column: c, .. } => v.push(c.clone()),
                    }
                }
            }
        }
        v.push(self.assistant_output.clone());
        let mut seen = std::collections::HashSet::new();
        v.retain(|c| seen.insert(c.clone()));
        v
    }

    /// Where the rows come from, as the task list shows it.
    pub fn source_name(&self) -> String {
        match &self.source {
            Source::Hub {
                dataset, config, ..
            } => match config {
                Some(c) => format!("{dataset} ({c})"),
                None => dataset.clone(),
            },
            Source::Json(p) => p.display().to_string(),
        }
    }
}

const KNOWN: [&str; 11] = [
    "path",
    "json_file",
    "split",
    "combine_subsets",
    "instruction",
    "user_input",
    "assistant_output",
    "task_type",
    "answer_len",
    "metric",
    "filter",
];

/// Reads a tasks file: every task in file order. `dir` is where relative `json_file` paths
/// start (the file's folder).
pub fn parse(text: &str, dir: &Path) -> Result<Vec<TaskDef>, String> {
    // serde-saphyr's default budget bounds events, depth, aliases and anchors (no alias bombs).
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("not a tasks file (YAML): {e}"))?;
    let Value::Map(tasks) = doc else {
        return Err(format!(
            "a tasks file is a mapping of task names to definitions; this one is {}",
            doc.kind()
        ));
    };
    tasks
        .iter()
        .map(|(name, def)| one(name, def, dir))
        .collect()
}

fn one(name: &str, def: &Value, dir: &Path) -> Result<TaskDef, String> {
    if !word(name) {
        return Err(format!(
            "task {:?}: a task name is letters, digits, '-', '_' and '.' (it names a folder)",
            crate::untrusted::printable(name)
        ));
    }
    let bad = |field: &str, why: String| format!("task {name}: {field}: {why}");
    let Value::Map(fields) = def else {
        return Err(format!(
            "task {name}: the definition is {}, not a mapping",
            def.kind()
        ));
    };
    let get = |k: &str| def.get(k);
    let text = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(v) => Err(bad(k, format!("{} where text was expected", v.kind()))),
        }
    };
    let need = |k: &str| -> Result<String, String> {
        text(k)?.ok_or_else(|| bad(k, "missing (every task needs it)".into()))
    };
    if get("filter").is_some() {
        return Err(bad(
            "filter",
            "row filters are not supported by `task import`; filter the dataset first".into(),
        ));
    }
    let subsets = match get("combine_subsets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("combine_subsets", format!("{} in the list", v.kind())))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(bad("combine_subsets", format!("{}, not a list", v.kind()))),
    };
    let source = match (get("path"), text("json_file")?) {
        (Some(_), Some(_)) => {
            return Err(bad("path", "give path or json_file, not both".into()));
        }
        (Some(Value::List(p)), None) => {
            let parts: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
            if parts.len() != p.len() || parts.is_empty() || parts.len() > 2 {
                return Err(bad(
                    "path",
                    "[dataset id] or [dataset id, config name], as text".into(),
                ));
            }
            if !crate::pool::hub::valid_dataset_id(parts[0]) {
                return Err(bad(
                    "path",
                    format!(
                        "{:?} is not a Hub dataset id",
                        crate::untrusted::printable(parts[0])
                    ),
                ));
            }
            Source::Hub {
                dataset: parts[0].to_string(),
                config: parts.get(1).map(|c| c.to_string()),
                subsets,
            }
        }
        (Some(Value::Str(id)), None) => Source::Hub {
            dataset: id.clone(),
            config: None,
            subsets,
        },
        (Some(v), None) => return Err(bad("path", format!("{}, not a list", v.kind()))),
        (None, Some(f)) => {
            if !subsets.is_empty() {
                return Err(bad("combine_subsets", "needs path, not json_file".into()));
            }
            let p = PathBuf::from(&f);
            Source::Json(if p.is_absolute() { p } else { dir.join(p) })
        }
        (None, None) => {
            return Err(format!(
                "task {name}: no data: give path: [dataset, config] or json_file"
            ));
        }
    };
    for c in subsets_and_config(&source) {
        if !word(&c) {
            return Err(bad("path", format!("config {:?} is not a plain name", c)));
        }
    }
    let split = match get("split") {
        None | Some(Value::Null) => None,
        Some(Value::Map(m)) => {
            let mut v = Vec::new();
            for (k, s) in m {
                let s = s
                    .as_str()
                    .ok_or_else(|| bad("split", format!("{k}: {}, not a split name", s.kind())))?;
                if !word(k) || !word(s) {
                    return Err(bad(
                        "split",
                        format!("{k}: {s:?} is not a plain split name (slices are not supported)"),
                    ));
                }
                v.push((k.clone(), s.to_string()));
            }
            if v.is_empty() {
                return Err(bad("split", "an empty mapping".into()));
            }
            Some(v)
        }
        Some(v) => return Err(bad("split", format!("{}, not a mapping", v.kind()))),
    };
    let user_input = match get("user_input") {
        None | Some(Value::Null) => return Err(bad("user_input", "missing".into())),
        Some(Value::Str(c)) => UserInput::Column(c.clone()),
        Some(Value::Map(m)) if !m.is_empty() => {
            let mut parts = Vec::new();
            for (key, v) in m {
                let field = format!("user_input.{key}");
                let part = match v {
                    Value::Str(c) => Part::Column(c.clone()),
                    Value::Map(_) => {
                        let column = v
                            .get("key_name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad(&field, "key_name (a column) is missing".into()))?
                            .to_string();
                        let fields: Vec<String> = match v.get("fields") {
                            Some(Value::List(l)) => l
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                            _ => Vec::new(),
                        };
                        let symbol = match v.get("concat_symbol") {
                            None | Some(Value::Null) => None,
                            Some(Value::Str(s)) if s.is_empty() => None,
                            Some(Value::Str(s)) => Some(s.clone()),
                            Some(Value::Bool(false)) => None,
                            Some(o) => {
                                return Err(bad(
                                    &field,
                                    format!("concat_symbol is {}, not text", o.kind()),
                                ));
                            }
                        };
                        let want = if symbol.is_some() { 2 } else { 1 };
                        if fields.len() < want {
                            return Err(bad(
                                &field,
                                format!(
                                    "fields names {} field(s) of {column}; {want} are needed",
                                    fields.len()
                                ),
                            ));
                        }
                        Part::Choices {
                            column,
                            fields,
                            symbol,
                        }
                    }
                    o => return Err(bad(&field, format!("{}, not a column name", o.kind()))),
                };
                parts.push((key.clone(), part));
            }
            UserInput::Fields(parts)
        }
        Some(v) => {
            return Err(bad(
                "user_input",
                format!("{}, not a column or a mapping", v.kind()),
            ));
        }
    };
    let answer_len = match text("answer_len")?.as_deref() {
        None | Some("short") => AnswerLen::Short,
        Some("long") => AnswerLen::Long,
        Some(o) => return Err(bad("answer_len", format!("{o:?}: short or long"))),
    };
    let ignored = fields
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    Ok(TaskDef {
        name: name.to_string(),
        source,
        split,
        instruction: text("instruction")?.unwrap_or_default(),
        user_input,
        assistant_output: need("assistant_output")?,
        task_type: text("task_type")?.unwrap_or_default(),
        answer_len,
        metric: text("metric")?,
        ignored,
    })
}

/// A task, config or split name: letters, digits, `-`, `_` and `.`, not starting with `.`, at
/// most 128 characters (it names folders and files).
pub fn word(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn subsets_and_config(s: &Source) -> Vec<String> {
    match s {
        Source::Hub {
            config, subsets, ..
        } => config.iter().chain(subsets).cloned().collect(),
        Source::Json(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_user_input_keeps_its_order_and_choices() {
        let t = parse(
            "q:\n  path: [\"org/qa\", easy]\n  instruction: |\n    Pick one.\n  user_input:\n    \
             ZED: question\n    0: opa\n    CHOICES:\n      key_name: choices\n      fields: [label, text]\n      \
             concat_symbol: \":\"\n  assistant_output: answerKey\n  answer_len: long\n  extra: 1\n",
            Path::new("/t"),
        )
        .unwrap();
        let t = &t[0];
        assert_eq!(t.instruction, "Pick one.\n");
        assert_eq!(
            t.user_input,
            UserInput::Fields(vec![
                ("ZED".into(), Part::Column("question".into())),
                ("0".into(), Part::Column("opa".into())),
                (
                    "CHOICES".into(),
                    Part::Choices {
                        column: "choices".into(),
                        fields: vec!["label".into(), "text".into()],
                        symbol: Some(":".into())
                    }
                ),
            ])
        );
        assert_eq!(t.columns(), ["question", "opa", "choices", "answerKey"]);
        assert_eq!(t.answer_len.max_new_tokens(), 500);
        assert_eq!(t.ignored, ["extra"]);
    }

    #[test]
    fn bad_definitions_name_the_task_and_the_field() {
        let dir = Path::new("/t");
        let err = |y: &str| parse(y, dir).unwrap_err();
        assert_eq!(
            err("a:\n  path: [x/y]\n  user_input: t\n"),
            "task a: assistant_output: missing (every task needs it)"
        );
        assert_eq!(
            err("a:\n  path: [x/y]\n  user_input: [t]\n  assistant_output: l\n"),
            "task a: user_input: a list, not a column or a mapping"
        );
        assert_eq!(
            err(
                "a:\n  path: [x/y]\n  split: {train: \"train[:10%]\"}\n  user_input: t\n  assistant_output: l\n"
            ),
            "task a: split: train: \"train[:10%]\" is not a plain split name (slices are not supported)"
        );
        assert_eq!(
            err("a:\n  user_input: t\n  assistant_output: l\n"),
            "task a: no data: give path: [dataset, config] or json_file"
        );
        assert_eq!(
            err(
                "a:\n  path: [x/y]\n  user_input: t\n  assistant_output: l\n  answer_len: medium\n"
            ),
            "task a: answer_len: \"medium\": short or long"
        );
        assert_eq!(
            err("- a\n"),
            "a tasks file is a mapping of task names to definitions; this one is a list"
        );
    }
}
