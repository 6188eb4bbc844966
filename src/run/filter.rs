//! The runs filter (`runs list --filter`, the Runs screen's `/`): comma-separated conditions that
//! must all hold.
//!
//! - `KEY OP VALUE`, with `OP` one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `~` (contains) and `!~`.
//!   `KEY` is `id`, `label`, `state`, `exact` or `loss`, or a setting: its dotted key
//!   (`selection.k`) or the end of one (`k`, `lr`, `by`), which then holds when any setting so
//!   named satisfies it. Values that both read as numbers compare as numbers, others as text.
//! - Anything else is text that the id, label, state or one of the settings must contain.
//!
//! Text compares without regard to case. Example: `caesar, k>=10, by=loss, state!=failed`.

use std::collections::BTreeMap;

use crate::pool::filter::{Op, split_condition};

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Text(String),
    Field { key: String, op: Op, value: String },
}

/// A parsed runs filter; the empty filter keeps every run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    conds: Vec<Cond>,
}

/// What the filter reads of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunFields<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub state: &'a str,
    pub exact: Option<f64>,
    pub loss: Option<f64>,
    pub settings: &'a BTreeMap<String, String>,
}

impl std::str::FromStr for RunFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut conds = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let Some((key, op, value)) = split_condition(raw) else {
                conds.push(Cond::Text(raw.to_lowercase()));
                continue;
            };
            if key.is_empty() || value.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!(
                    "filter condition {raw:?}: expected KEY OP VALUE (e.g. k>=10, by=loss) or text"
                ));
            }
            conds.push(Cond::Field {
                key: key.to_string(),
                op,
                value: value.to_string(),
            });
        }
        Ok(RunFilter { conds })
    }
}

/// Whether `have OP want`: as numbers when both read as numbers, else as text without case.
fn holds(op: Op, have: &str, want: &str) -> bool {
    use std::cmp::Ordering;
    let (a, b) = (have.to_lowercase(), want.to_lowercase());
    let order = match (have.parse::<f64>(), want.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y),
        _ => Some(a.cmp(&b)),
    };
    match op {
        Op::Contains => a.contains(&b),
        Op::Lacks => !a.contains(&b),
        Op::Eq => order == Some(Ordering::Equal),
        Op::Ne => order != Some(Ordering::Equal),
        Op::Lt => order == Some(Ordering::Less),
        Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => order == Some(Ordering::Greater),
        Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
    }
}

impl RunFilter {
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    pub fn matches(&self, r: &RunFields<'_>) -> bool {
        self.conds.iter().all(|c| match c {
            Cond::Text(t) => {
                [r.id, r.label, r.state]
                    .iter()
                    .any(|f| f.to_lowercase().contains(t.as_str()))
                    || r.settings.values().any(|v| v.to_lowercase().contains(t))
            }
            Cond::Field { key, op, value } => {
                let number = |v: Option<f64>| v.map(|v| v.to_string());
                let have: Vec<String> = match key.as_str() {
                    "id" => vec![r.id.to_string()],
                    "label" => vec![r.label.to_string()],
                    "state" => vec![r.state.to_string()],
                    "exact" => number(r.exact).into_iter().collect(),
                    "loss" => number(r.loss).into_iter().collect(),
                    _ => {
                        let tail = format!(".{key}");
                        r.settings
                            .iter()
                            .filter(|(k, _)| *k == key || k.ends_with(&tail))
                            .map(|(_, v)| v.clone())
                            .collect()
                    }
                };
                match op {
                    // A run without the setting has none that equals or contains the value.
                    Op::Ne | Op::Lacks => have.iter().all(|h| holds(*op, h, value)),
                    _ => have.iter().any(|h| holds(*op, h, value)),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(settings: &'a BTreeMap<String, String>) -> RunFields<'a> {
        RunFields {
            id: "20261202T0501Z-caesar-5-gradient-1a2b",
            label: "caesar-5 / gradient",
            state: "finished",
            exact: Some(0.25),
            loss: Some(1.5),
            settings,
        }
    }

    fn settings() -> BTreeMap<String, String> {
        [
            ("selection.k", "12"),
            ("selection.by", "loss"),
            ("method.lr", "0.05"),
            ("task.lab", "caesar-5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn keeps(filter: &str) -> bool {
        let s = settings();
        filter.parse::<RunFilter>().unwrap().matches(&fields(&s))
    }

    #[test]
    fn settings_by_their_full_key_or_its_end() {
        assert!(keeps("selection.k=12"));
        assert!(keeps("k=12"));
        assert!(keeps("k>=10, by=loss"));
        assert!(!keeps("k>12"));
        // Numbers compare as numbers: 12 > 9, though "12" < "9" as text.
        assert!(keeps("k>9"));
        assert!(keeps("lr<0.1"));
        assert!(!keeps("by=exact"));
        // A key no setting ends with: nothing equals, and nothing differs.
        assert!(!keeps("seedling=1"));
        assert!(keeps("seedling!=1"));
    }

    #[test]
    fn text_and_fixed_fields() {
        assert!(keeps("CAESAR"));
        assert!(keeps("gradient, state=finished"));
        assert!(!keeps("state!=finished"));
        assert!(keeps("exact>=0.25, loss<2"));
        assert!(!keeps("exact>0.25"));
        assert!(keeps("label~/ grad"));
        assert!(!keeps("lorahub"));
        assert!(RunFilter::default().matches(&fields(&settings())));
    }

    #[test]
    fn a_condition_without_a_key_or_value_is_refused() {
        assert_eq!(
            "=3".parse::<RunFilter>().unwrap_err(),
            "filter condition \"=3\": expected KEY OP VALUE (e.g. k>=10, by=loss) or text"
        );
        assert!("k>=".parse::<RunFilter>().is_err());
    }
}
