//! The pool filter: comma-separated conditions that must all hold.
//!
//! `KEY OP VALUE` with keys `name`, `rank`, `alpha`, `modules`; operators `=`, `!=`, `<`, `<=`,
//! `>`, `>=` and `~` / `!~` (contains / does not contain). `modules` takes `all` or a `+`-joined
//! set such as `q+v`: `modules=q+v` is that exact set, `modules~gate` means "touches gate_proj".
//! Example: `rank<=16,modules=all,name!~math`.

use std::collections::BTreeSet;

use crate::adapter::config::AdapterConfig;
use crate::model::module::Module;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("filter condition {0:?}: expected KEY OP VALUE, e.g. rank<=16")]
    Syntax(String),
    #[error("filter condition {cond:?}: unknown key {key:?} (use name, rank, alpha or modules)")]
    Key { cond: String, key: String },
    #[error("filter condition {cond:?}: {reason}")]
    Value { cond: String, reason: String },
}

/// A condition's operator; the runs filter (`run::filter`) reads the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Lacks,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Name(Op, String),
    Rank(Op, f64),
    Alpha(Op, f64),
    Modules(Op, BTreeSet<Module>),
}

/// A parsed filter; the empty filter keeps everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    conds: Vec<Cond>,
    text: String,
}

fn parse_modules(v: &str) -> Result<BTreeSet<Module>, String> {
    if v == "all" {
        return Ok(Module::ALL.into_iter().collect());
    }
    v.split('+')
        .map(|m| {
            let m = m.trim();
            Module::from_peft_name(m)
                .or_else(|| Module::from_peft_name(&format!("{m}_proj")))
                .ok_or_else(|| {
                    format!("unknown module {m:?} (use q, k, v, o, gate, up, down or all)")
                })
        })
        .collect()
}

/// A condition `KEY OP VALUE` split at its first operator (the longer of two that start at one
/// place: `<=` before `<`), trimmed; None when it has no operator.
pub fn split_condition(raw: &str) -> Option<(&str, Op, &str)> {
    let ops = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("!~", Op::Lacks),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Contains),
    ];
    let (at, sym, op) = ops
        .iter()
        .filter_map(|(s, op)| raw.find(s).map(|at| (at, *s, *op)))
        .min_by_key(|(at, s, _)| (*at, usize::MAX - s.len()))?;
    Some((raw[..at].trim(), op, raw[at + sym.len()..].trim()))
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(text: &str) -> Result<Self, FilterError> {
        let mut conds = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let Some((key, op, value)) = split_condition(raw) else {
                return Err(FilterError::Syntax(raw.into()));
            };
            if key.is_empty() || value.is_empty() {
                return Err(FilterError::Syntax(raw.into()));
            }
            let bad = |reason: String| FilterError::Value {
                cond: raw.into(),
                reason,
            };
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{value:?} is not a number")))
            };
            let numeric_op = || {
                if matches!(op, Op::Contains | Op::Lacks) {
                    Err(bad(format!("{key} takes =, !=, <, <=, > or >=")))
                } else {
                    Ok(op)
                }
            };
            conds.push(match key {
                "name" => match op {
                    Op::Eq | Op::Ne | Op::Contains | Op::Lacks => Cond::Name(op, value.into()),
                    _ => return Err(bad("name takes =, !=, ~ or !~".into())),
                },
                "rank" => Cond::Rank(numeric_op()?, number()?),
                "alpha" => Cond::Alpha(numeric_op()?, number()?),
                "modules" => match op {
                    Op::Eq | Op::Ne | Op::Contains | Op::Lacks => {
                        Cond::Modules(op, parse_modules(value).map_err(bad)?)
                    }
                    _ => return Err(bad("modules takes =, !=, ~ or !~".into())),
                },
                _ => {
                    return Err(FilterError::Key {
                        cond: raw.into(),
                        key: key.into(),
                    });
                }
            });
        }
        Ok(Filter {
            conds,
            text: text.trim().into(),
        })
    }
}

fn compare(op: Op, a: f64, b: f64) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Contains | Op::Lacks => false,
    }
}

fn config_modules(cfg: &AdapterConfig) -> Option<BTreeSet<Module>> {
    let v = cfg.target_modules.as_ref()?;
    let names: Vec<String> = match v {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        serde_json::Value::String(s) if s == "all-linear" => {
            return Some(Module::ALL.into_iter().collect());
        }
        _ => return None,
    };
    names.iter().map(|n| Module::from_peft_name(n)).collect()
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn check(
        &self,
        name: &str,
        rank: usize,
        alpha: f64,
        modules: Option<&BTreeSet<Module>>,
    ) -> bool {
        self.conds.iter().all(|c| match c {
            Cond::Name(op, v) => match op {
                Op::Eq => name == v,
                Op::Ne => name != v,
                Op::Contains => name.contains(v.as_str()),
                Op::Lacks => !name.contains(v.as_str()),
                _ => false,
            },
            Cond::Rank(op, v) => compare(*op, rank as f64, *v),
            Cond::Alpha(op, v) => compare(*op, alpha, *v),
            Cond::Modules(op, v) => match modules {
                // Unknown from the config alone: decided once the weights are read.
                None => true,
                Some(m) => match op {
                    Op::Eq => m == v,
                    Op::Ne => m != v,
                    Op::Contains => v.is_subset(m),
                    Op::Lacks => v.is_disjoint(m),
                    _ => false,
                },
            },
        })
    }

    /// Decides from the config alone where it can (before any weight is read).
    pub fn matches_config(&self, name: &str, cfg: &AdapterConfig) -> bool {
        self.check(name, cfg.r, cfg.lora_alpha, config_modules(cfg).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(r: usize, alpha: f64, modules: &[&str]) -> AdapterConfig {
        AdapterConfig {
            r,
            lora_alpha: alpha,
            target_modules: Some(serde_json::json!(modules)),
            ..Default::default()
        }
    }

    #[test]
    fn conditions_all_hold() {
        let f: Filter = "rank<=8, modules=q+v, name!~table".parse().unwrap();
        assert!(f.matches_config("caesar-2", &cfg(8, 16.0, &["q_proj", "v_proj"])));
        assert!(!f.matches_config("caesar-2", &cfg(16, 16.0, &["q_proj", "v_proj"])));
        assert!(!f.matches_config("table-a", &cfg(4, 8.0, &["q_proj", "v_proj"])));
        assert!(!f.matches_config("caesar-2", &cfg(4, 8.0, &["q_proj", "k_proj", "v_proj"])));
        let all: Filter = "modules=all,alpha>=16,modules~gate".parse().unwrap();
        let seven = [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ];
        assert!(all.matches_config("x", &cfg(8, 16.0, &seven)));
        assert!(!all.matches_config("x", &cfg(8, 8.0, &seven)));
        assert!(
            "".parse::<Filter>()
                .unwrap()
                .matches_config("x", &cfg(1, 1.0, &[]))
        );
    }

    #[test]
    fn errors_name_the_condition() {
        let err = |s: &str| s.parse::<Filter>().unwrap_err().to_string();
        assert_eq!(
            err("rank"),
            "filter condition \"rank\": expected KEY OP VALUE, e.g. rank<=16"
        );
        assert_eq!(
            err("size<3"),
            "filter condition \"size<3\": unknown key \"size\" (use name, rank, alpha or modules)"
        );
        assert_eq!(
            err("rank<=x"),
            "filter condition \"rank<=x\": \"x\" is not a number"
        );
        assert_eq!(
            err("modules=q+w"),
            "filter condition \"modules=q+w\": unknown module \"w\" (use q, k, v, o, gate, up, down or all)"
        );
        assert_eq!(
            err("rank~8"),
            "filter condition \"rank~8\": rank takes =, !=, <, <=, > or >="
        );
    }
}
