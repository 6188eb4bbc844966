//! What a run reports while it works: stages, progress, curve points, coefficients and log lines.
//! The executor sends these; the run store writes what they leave on disk, the engine turns them
//! into protocol events and the CLI draws them as a progress bar.

use super::record::{ChosenAdapter, CurvePoint, ScreeningScore};

/// What a run reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// A new stage with this many units of work.
    Stage { name: String, total: usize },
    /// Units of the current stage done.
    Advance(usize),
    /// A point of the tuning curve.
    Curve(CurvePoint),
    /// Coefficients f(c) at a validation check: (step, groups × columns).
    Coefficients(usize, Vec<Vec<f32>>),
    /// The names of the coefficient matrix's rows (groups) and columns (adapters), sent before
    /// the first `Coefficients`.
    Layout {
        groups: Vec<String>,
        columns: Vec<String>,
    },
    /// Every pool adapter's screening score on the task (`task`), before top-k chose.
    Screened {
        task: String,
        scores: Vec<ScreeningScore>,
    },
    /// The adapters selection chose, with their screening scores where they were scored.
    Chosen(Vec<ChosenAdapter>),
    /// A line worth showing a person.
    Log(String),
}
