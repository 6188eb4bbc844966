//! The one place a run's progress goes: every event to the caller (the engine, `run`, a study),
//! and the loss and coefficient curves kept for the record.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Result, RunError};
use crate::run::event::RunEvent;
use crate::run::record::{CoefficientSnapshot, CurvePoint};

pub struct Recorder<'a> {
    on: &'a mut dyn FnMut(RunEvent),
    cancel: Option<&'a AtomicBool>,
    curve: Vec<CurvePoint>,
    coefficients: Vec<CoefficientSnapshot>,
}

impl<'a> Recorder<'a> {
    pub fn new(on: &'a mut dyn FnMut(RunEvent), cancel: Option<&'a AtomicBool>) -> Self {
        Self {
            on,
            cancel,
            curve: Vec::new(),
            coefficients: Vec::new(),
        }
    }

    /// The caller's event sink, for code that reports progress itself (pool loading, screening).
    pub fn sink(&mut self) -> &mut dyn FnMut(RunEvent) {
        &mut *self.on
    }

    /// The cancellation flag, for loops that check it between steps.
    pub fn cancel(&self) -> Option<&'a AtomicBool> {
        self.cancel
    }

    pub fn emit(&mut self, e: RunEvent) {
        (self.on)(e);
    }

    pub fn stage(&mut self, name: impl Into<String>, total: usize) {
        self.emit(RunEvent::Stage {
            name: name.into(),
            total,
        });
    }

    pub fn log(&mut self, line: String) {
        self.emit(RunEvent::Log(line));
    }

    /// One step of a loss curve: the stage advances to `step` and the point is kept.
    pub fn point(&mut self, step: usize, train_loss: f64, val_loss: Option<f64>) {
        self.emit(RunEvent::Advance(step));
        let p = CurvePoint {
            step,
            train_loss,
            val_loss,
        };
        self.emit(RunEvent::Curve(p.clone()));
        self.curve.push(p);
    }

    /// The activated coefficients at `step`, kept for the record's coefficient curve.
    pub fn coefficients(&mut self, step: usize, values: &[Vec<f32>]) {
        self.emit(RunEvent::Coefficients(step, values.to_vec()));
        self.coefficients.push(CoefficientSnapshot {
            step,
            values: values.to_vec(),
        });
    }

    /// `Err(Cancelled)` once the run was asked to stop.
    pub fn check(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            Err(RunError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The curves kept so far: (loss curve, coefficient snapshots).
    pub fn into_curves(self) -> (Vec<CurvePoint>, Vec<CoefficientSnapshot>) {
        (self.curve, self.coefficients)
    }
}
