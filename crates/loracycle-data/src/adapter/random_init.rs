//! The random-init control as a run spec's `[controls]` table names it: plain data, so that the
//! spec parser and the UI know it without the code that redraws the adapters (and candle).

use serde::{Deserialize, Serialize};

/// Where σ comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RandomInit {
    /// Real adapters.
    #[default]
    Off,
    /// σ per (layer, module), pooled over all the adapters being replaced (the paper's choice).
    Pooled,
    /// σ per (adapter, layer, module): each random adapter matches its own real one.
    PerAdapter,
}
