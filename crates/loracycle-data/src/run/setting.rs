//! Range checks for the settings a spec (or a command line) gives: every number finite and in
//! its range, every size below a bound that keeps allocations sane, each refusal naming the field
//! as the spec writes it (`method.lr`). Plain data, shared by the serde-only settings files.

/// The most steps a tuning or training loop takes (curves and schedules are sized by it).
pub const MAX_STEPS: usize = 1_000_000;
/// The most bootstrap resamples of an interval.
pub const MAX_BOOTSTRAP: usize = 1_000_000;
/// The largest LoRA rank a run trains, truncates to or exports.
pub const MAX_RANK: usize = 65_536;
/// The most examples (or rows) in one forward.
pub const MAX_BATCH: usize = 65_536;
/// The most adapters a selection picks.
pub const MAX_K: usize = 100_000;
/// The most new tokens a generation makes.
pub const MAX_NEW_TOKENS: usize = 32_768;

/// A setting out of its range: the field, the rule it breaks and the value given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: must be {rule}, got {got}")]
pub struct BadSetting {
    pub field: String,
    pub rule: String,
    pub got: String,
}

/// A number as a spec writes it (`nan`, `inf`, `-inf` in TOML's spelling).
pub fn spelled(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        v.to_string()
    }
}

/// The checks of one table's fields, each named with the prefix: `Fields("method.")` names
/// `method.lr`, `Fields("--")` a command line's `--rank`.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a str);

impl Fields<'_> {
    fn bad(&self, field: &str, rule: String, got: String) -> BadSetting {
        BadSetting {
            field: format!("{}{field}", self.0),
            rule,
            got,
        }
    }

    /// Any finite number.
    pub fn finite(&self, field: &str, v: f64) -> Result<(), BadSetting> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.bad(field, "a finite number".into(), spelled(v)))
        }
    }

    /// A finite number ≥ `min`.
    pub fn at_least(&self, field: &str, v: f64, min: f64) -> Result<(), BadSetting> {
        if v.is_finite() && v >= min {
            Ok(())
        } else {
            Err(self.bad(field, format!("a finite number ≥ {min}"), spelled(v)))
        }
    }

    /// A finite number > `min`.
    pub fn above(&self, field: &str, v: f64, min: f64) -> Result<(), BadSetting> {
        if v.is_finite() && v > min {
            Ok(())
        } else {
            Err(self.bad(field, format!("a finite number > {min}"), spelled(v)))
        }
    }

    /// A number in [lo, hi] (`hi_open`: [lo, hi)).
    pub fn within(
        &self,
        field: &str,
        v: f64,
        lo: f64,
        hi: f64,
        hi_open: bool,
    ) -> Result<(), BadSetting> {
        let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
        if ok {
            Ok(())
        } else {
            let close = if hi_open { ')' } else { ']' };
            Err(self.bad(field, format!("in [{lo}, {hi}{close}"), spelled(v)))
        }
    }

    /// A number in (0, 1].
    pub fn fraction(&self, field: &str, v: f64) -> Result<(), BadSetting> {
        if v > 0.0 && v <= 1.0 {
            Ok(())
        } else {
            Err(self.bad(field, "in (0, 1]".into(), spelled(v)))
        }
    }

    /// A count in [min, max].
    pub fn count(&self, field: &str, n: usize, min: usize, max: usize) -> Result<(), BadSetting> {
        if (min..=max).contains(&n) {
            Ok(())
        } else {
            Err(self.bad(field, format!("between {min} and {max}"), n.to_string()))
        }
    }

    /// A count of at least 1 (the rest is bounded by what it counts).
    pub fn positive(&self, field: &str, n: usize) -> Result<(), BadSetting> {
        if n >= 1 {
            Ok(())
        } else {
            Err(self.bad(field, "at least 1".into(), n.to_string()))
        }
    }

    /// A list with at least one entry.
    pub fn non_empty<T>(&self, field: &str, list: &[T]) -> Result<(), BadSetting> {
        if list.is_empty() {
            Err(self.bad(field, "a non-empty list".into(), "[]".into()))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field_and_spell_the_value_as_toml_does() {
        let m = Fields("method.");
        assert_eq!(
            m.at_least("lr", f64::NAN, 0.0).unwrap_err().to_string(),
            "method.lr: must be a finite number ≥ 0, got nan"
        );
        assert_eq!(
            m.within("warmup_frac", 1.5, 0.0, 1.0, false)
                .unwrap_err()
                .to_string(),
            "method.warmup_frac: must be in [0, 1], got 1.5"
        );
        assert_eq!(
            m.count("steps", 100_000_000_000, 1, MAX_STEPS)
                .unwrap_err()
                .to_string(),
            "method.steps: must be between 1 and 1000000, got 100000000000"
        );
        assert_eq!(
            Fields("--")
                .finite("weights", f64::NEG_INFINITY)
                .unwrap_err()
                .to_string(),
            "--weights: must be a finite number, got -inf"
        );
        assert!(m.fraction("density", f64::NAN).is_err());
        assert!(m.above("sigma", 0.0, 0.0).is_err());
        assert!(m.non_empty::<u8>("modules", &[]).is_err());
    }
}
