//! How a generated answer is judged: the part of the text that is the answer ([`Extract`]), the
//! normalisation both sides get before they are compared ([`Normalize`]), and a task's own
//! settings of these (its `task.toml`). Plain data, so the spec parser knows them without candle.

use serde::{Deserialize, Serialize};

/// Which part of a generation (and of a reference answer) is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Extract {
    /// The whole text.
    #[default]
    #[serde(rename = "none")]
    Whole,
    /// The text after the last `####` (the whole text when there is none): the final answer of a
    /// chain of thought, as gsm8k writes it. The paper's evaluation applies this to every task.
    #[serde(rename = "####")]
    AfterMarker,
}

impl Extract {
    pub fn name(self) -> &'static str {
        match self {
            Extract::Whole => "none",
            Extract::AfterMarker => "####",
        }
    }

    /// The part of `text` that is compared.
    pub fn apply(self, text: &str) -> &str {
        match self {
            Extract::Whole => text,
            Extract::AfterMarker => text.rsplit("####").next().unwrap_or(text),
        }
    }
}

/// What a prediction and an answer go through before they are compared for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// Surrounding whitespace trimmed (the lab's tasks, whose answers are exact strings).
    Exact,
    /// Runs of whitespace collapsed to one space, trimmed, lower-cased.
    Whitespace,
    /// The paper's exact string match: every space removed, then surrounding whitespace, then
    /// surrounding full stops, then lower-cased (`" The Cat. "` → `"thecat"`).
    Paper,
}

impl Normalize {
    pub fn name(self) -> &'static str {
        match self {
            Normalize::Exact => "exact",
            Normalize::Whitespace => "whitespace",
            Normalize::Paper => "paper",
        }
    }

    pub fn apply(self, text: &str) -> String {
        match self {
            Normalize::Exact => text.trim().to_string(),
            Normalize::Whitespace => text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
            // Python's str.replace(" ", "").strip().strip(".").lower(), in that order.
            Normalize::Paper => text
                .replace(' ', "")
                .trim()
                .trim_matches('.')
                .to_lowercase(),
        }
    }
}

impl std::str::FromStr for Extract {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Extract::Whole),
            "####" => Ok(Extract::AfterMarker),
            _ => Err(format!("unknown extraction {s:?} (use none or ####)")),
        }
    }
}

impl std::str::FromStr for Normalize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Normalize::Exact),
            "whitespace" => Ok(Normalize::Whitespace),
            "paper" => Ok(Normalize::Paper),
            _ => Err(format!(
                "unknown normalisation {s:?} (use exact, whitespace or paper)"
            )),
        }
    }
}

/// How one task's generations are judged, every setting resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scoring {
    /// Greedy generation stops after this many new tokens.
    pub max_new_tokens: usize,
    pub extract: Extract,
    pub normalize: Normalize,
    /// Examples whose prompt (template included) has this many tokens or more are dropped from
    /// generated evaluation and counted; `None` (or 0) keeps every prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<usize>,
}

impl Scoring {
    /// Whether `prediction` answers `answer`: both extracted, then normalised, then equal.
    pub fn matches(&self, prediction: &str, answer: &str) -> bool {
        let side = |s: &str| self.normalize.apply(self.extract.apply(s));
        side(prediction) == side(answer)
    }

    /// Whether a teacher-forced verdict is the generated one: only for exact strings with no
    /// extraction (every other setting can accept generations that are not the answer's tokens).
    pub fn strict(&self) -> bool {
        self.normalize == Normalize::Exact && self.extract == Extract::Whole
    }

    /// Whether a prompt of `tokens` tokens is dropped.
    pub fn drops(&self, tokens: usize) -> bool {
        self.max_prompt_tokens
            .is_some_and(|cap| cap > 0 && tokens >= cap)
    }
}

/// A task's own settings, from `task.toml` in its folder; each unset one takes the protocol's
/// default.
///
/// ```toml
/// max_new_tokens = 500   # a chain-of-thought task
/// extract = "####"       # or "none"
/// normalize = "paper"    # exact, whitespace or paper
/// max_prompt_tokens = 2048   # 0: keep every prompt
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<usize>,
}

/// The file a task folder keeps its settings in.
pub const TASK_FILE: &str = "task.toml";

impl TaskSettings {
    /// The settings in `dir/task.toml`, or none when the file is absent.
    pub fn read(dir: &std::path::Path) -> Result<TaskSettings, String> {
        let path = dir.join(TASK_FILE);
        if !path.is_file() {
            return Ok(TaskSettings::default());
        }
        let text = crate::untrusted::read_text(&path, crate::untrusted::SMALL)
            .map_err(|e| format!("{}: {}", path.display(), e.into_io()))?;
        // `[source]` (what `task import` records of the task's making) is not a setting.
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.message().trim_end()))?;
        table.remove("source");
        let s: TaskSettings = table.try_into().map_err(|e: toml::de::Error| {
            format!("{}: {}", path.display(), e.message().trim_end())
        })?;
        s.check(crate::run::setting::Fields(""))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(s)
    }

    /// Checks the sizes given are in range, each named with `f`'s prefix.
    pub fn check(
        &self,
        f: crate::run::setting::Fields<'_>,
    ) -> Result<(), crate::run::setting::BadSetting> {
        if let Some(n) = self.max_new_tokens {
            f.count("max_new_tokens", n, 1, crate::run::setting::MAX_NEW_TOKENS)?;
        }
        Ok(())
    }

    /// These settings over `under`: each one set here wins.
    pub fn over(self, under: TaskSettings) -> TaskSettings {
        TaskSettings {
            max_new_tokens: self.max_new_tokens.or(under.max_new_tokens),
            extract: self.extract.or(under.extract),
            normalize: self.normalize.or(under.normalize),
            max_prompt_tokens: self.max_prompt_tokens.or(under.max_prompt_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_normalisation_removes_spaces_then_strips_then_lowercases() {
        let p = Normalize::Paper;
        assert_eq!(p.apply(" The Cat. "), "thecat");
        assert_eq!(p.apply("1, 2 and 3"), "1,2and3");
        // Only spaces are removed inside: a tab or newline stays unless it is at an end.
        assert_eq!(p.apply("a\tb\n"), "a\tb");
        // Full stops go only at the ends, after the whitespace: "..x.." → "x", "x. y" → "x.y".
        assert_eq!(p.apply("..x.. \n"), "x");
        assert_eq!(p.apply("x. y"), "x.y");
        // Whitespace inside the stripped full stops stays stripped only once (Python's order).
        assert_eq!(p.apply(". x ."), "x");
        assert_eq!(p.apply(".\nx\n."), "\nx\n");
        assert_eq!(Normalize::Whitespace.apply("  A \n B "), "a b");
        assert_eq!(Normalize::Exact.apply("  A \n B "), "A \n B");
    }

    #[test]
    fn the_answer_after_the_last_marker_is_extracted() {
        let e = Extract::AfterMarker;
        assert_eq!(e.apply("3 + 4 = 7\n#### 7"), " 7");
        assert_eq!(e.apply("a #### b #### c"), " c");
        assert_eq!(e.apply("no marker"), "no marker");
        assert_eq!(e.apply("####"), "");
        assert_eq!(Extract::Whole.apply("x #### 7"), "x #### 7");
        let gsm = Scoring {
            max_new_tokens: 500,
            extract: Extract::AfterMarker,
            normalize: Normalize::Paper,
            max_prompt_tokens: Some(2048),
        };
        assert!(gsm.matches("She has 3 + 4 = 7 apples.\n#### 7.", "Reasoning...\n#### 7"));
        assert!(!gsm.matches("#### 8", "#### 7"));
        assert!(
            gsm.matches("7", "#### 7"),
            "a bare answer is its own final answer"
        );
        assert!(!gsm.strict());
        assert!(gsm.drops(2048) && !gsm.drops(2047));
        let uncapped = Scoring {
            max_prompt_tokens: Some(0),
            ..gsm
        };
        assert!(!uncapped.drops(100_000), "0 keeps every prompt");
    }

    #[test]
    fn task_settings_layer_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            TaskSettings::read(dir.path()).unwrap(),
            TaskSettings::default()
        );
        std::fs::write(
            dir.path().join(TASK_FILE),
            "max_new_tokens = 500\nextract = \"####\"\n",
        )
        .unwrap();
        let t = TaskSettings::read(dir.path()).unwrap();
        let under = TaskSettings {
            max_new_tokens: Some(30),
            extract: Some(Extract::Whole),
            normalize: Some(Normalize::Paper),
            max_prompt_tokens: None,
        };
        assert_eq!(
            t.over(under),
            TaskSettings {
                max_new_tokens: Some(500),
                extract: Some(Extract::AfterMarker),
                normalize: Some(Normalize::Paper),
                max_prompt_tokens: None,
            }
        );
        std::fs::write(dir.path().join(TASK_FILE), "normalise = \"paper\"\n").unwrap();
        let err = TaskSettings::read(dir.path()).unwrap_err();
        assert!(err.contains("unknown field `normalise`"), "{err}");
        std::fs::write(dir.path().join(TASK_FILE), "max_new_tokens = 0\n").unwrap();
        let err = TaskSettings::read(dir.path()).unwrap_err();
        assert!(
            err.ends_with("max_new_tokens: must be between 1 and 32768, got 0"),
            "{err}"
        );
    }
}
