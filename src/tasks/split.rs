//! The paper's splits, as `datasets` builds them from seeded NumPy permutations:
//!
//! 1. test: the dataset's `test` split, else `train_test_split(0.1)` of train; then at most
//!    5,000 rows by `shuffle(seed).select(range(5000))`;
//! 2. validation: `valid`, else `dev`, else `validation`, else `train_test_split(0.2)` of train;
//! 3. with `data_size` N > 0: validation cut to int(N · 0.2) rows and train to N minus that, each
//!    by a seeded shuffle.
//!
//! Only row counts go in; what comes out is, per split, the rows chosen as (source split, row
//! index), in the order `datasets` would hold them.

use std::collections::BTreeMap;

use super::numpy::permutation;

/// The paper's cap on test rows.
pub const TEST_CAP: usize = 5000;
/// The fraction of train taken as test when a dataset has no test split.
pub const TEST_FRACTION: f64 = 0.1;
/// The fraction of train taken as validation (and of data_size kept for it).
pub const VALID_FRACTION: f64 = 0.2;

/// A chosen row: the split it is in (by the paper's key) and its index there.
pub type Pick = (String, usize);

/// The rows of train, validation and test.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub train: Vec<Pick>,
    pub validation: Vec<Pick>,
    pub test: Vec<Pick>,
    /// How each came about, for the task's record ("test: 10% of train").
    pub notes: Vec<String>,
}

/// `train_test_split(test_size=fraction, seed)`: (train, test).
fn split_off(
    rows: &[Pick],
    fraction: f64,
    seed: u64,
    what: &str,
) -> Result<(Vec<Pick>, Vec<Pick>), String> {
    let n = rows.len();
    let n_test = (fraction * n as f64).ceil() as usize;
    let n_train = n.saturating_sub(n_test);
    if n_train == 0 {
        return Err(format!(
            "train has {n} row(s): too few to take {}% of it as {what} and keep any to train on",
            (fraction * 100.0).round()
        ));
    }
    let p = permutation(seed as u128, n);
    let test = p[..n_test].iter().map(|&i| rows[i].clone()).collect();
    let train = p[n_test..n_test + n_train]
        .iter()
        .map(|&i| rows[i].clone())
        .collect();
    Ok((train, test))
}

/// `shuffle(seed).select(range(k))`.
fn shuffle_take(rows: &[Pick], k: usize, seed: u64) -> Vec<Pick> {
    let p = permutation(seed as u128, rows.len());
    p[..k.min(rows.len())]
        .iter()
        .map(|&i| rows[i].clone())
        .collect()
}

/// The plan for splits of the given sizes (by the paper's keys: the split map's keys, or the
/// dataset's own split names).
pub fn plan(sizes: &[(String, usize)], data_size: usize, seed: u64) -> Result<Plan, String> {
    let mut data: BTreeMap<String, Vec<Pick>> = sizes
        .iter()
        .map(|(s, n)| (s.clone(), (0..*n).map(|i| (s.clone(), i)).collect()))
        .collect();
    let mut notes = Vec::new();
    let Some(mut train) = data.remove("train") else {
        let names: Vec<&str> = sizes.iter().map(|(s, _)| s.as_str()).collect();
        return Err(format!(
            "no train split (the dataset has {}; name one with split: {{train: NAME}})",
            names.join(", ")
        ));
    };
    let mut test = match data.remove("test") {
        Some(t) => t,
        None => {
            let (tr, te) = split_off(&train, TEST_FRACTION, seed, "test")?;
            notes.push(format!("test: 10% of train ({} rows)", te.len()));
            train = tr;
            te
        }
    };
    if test.len() > TEST_CAP {
        notes.push(format!(
            "test: {TEST_CAP} of {} rows (seeded shuffle)",
            test.len()
        ));
        test = shuffle_take(&test, TEST_CAP, seed);
    }
    let mut validation = match ["valid", "dev", "validation"]
        .iter()
        .find_map(|k| data.remove(*k))
    {
        Some(v) => v,
        None => {
            let (tr, va) = split_off(&train, VALID_FRACTION, seed, "validation")?;
            notes.push(format!("validation: 20% of train ({} rows)", va.len()));
            train = tr;
            va
        }
    };
    if data_size > 0 {
        let cap = (data_size as f64 * VALID_FRACTION) as usize;
        if validation.len() > cap {
            validation = shuffle_take(&validation, cap, seed);
        }
        let train_size = data_size - validation.len();
        if train.len() > train_size {
            train = shuffle_take(&train, train_size, seed);
        }
        notes.push(format!(
            "data_size {data_size}: {} train + {} validation",
            train.len(),
            validation.len()
        ));
    }
    Ok(Plan {
        train,
        validation,
        test,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(v: &[(&str, usize)]) -> Vec<(String, usize)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn ten_examples_are_eight_and_two() {
        let p = plan(&sizes(&[("train", 200), ("test", 30)]), 10, 123).unwrap();
        assert_eq!(
            (p.train.len(), p.validation.len(), p.test.len()),
            (8, 2, 30)
        );
        // Without test and validation splits: ceil(0.1 × 30) test rows, then ceil(0.2 × 27)
        // validation rows, as `train_test_split` rounds.
        let p = plan(&sizes(&[("train", 30)]), 0, 1).unwrap();
        assert_eq!(p.test.len(), 3);
        assert_eq!(p.validation.len(), 6);
        assert_eq!(p.train.len(), 21);
    }

    #[test]
    fn too_small_and_missing_splits_are_errors() {
        assert_eq!(
            plan(&sizes(&[("train", 1)]), 10, 0).unwrap_err(),
            "train has 1 row(s): too few to take 10% of it as test and keep any to train on"
        );
        assert_eq!(
            plan(&sizes(&[("train_r1", 5), ("test", 2)]), 10, 0).unwrap_err(),
            "no train split (the dataset has train_r1, test; name one with split: {train: NAME})"
        );
    }
}
