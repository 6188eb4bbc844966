//! Every method kind a run can name, in one list that the spec's messages, `loracycle merge`,
//! the New run form and the help-text test read.

use crate::merge::method::MergeMethod;
use crate::run::spec::MethodSpec;

/// A `[method] kind`: what a run does with the pool (or without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    Base,
    NewLora,
    Gradient,
    Lorahub,
    Adamerging,
    PiTuning,
    Arrow,
    Sum,
    Average,
    TaskArithmetic,
    Ties,
    Dare,
    Tsv,
    Svd,
    LorahubSum,
}

impl MethodKind {
    /// In the order messages list them: the controls, the adaptive methods, the merges.
    pub const ALL: [MethodKind; 15] = [
        MethodKind::Base,
        MethodKind::NewLora,
        MethodKind::Gradient,
        MethodKind::Lorahub,
        MethodKind::Adamerging,
        MethodKind::PiTuning,
        MethodKind::Arrow,
        MethodKind::Sum,
        MethodKind::Average,
        MethodKind::TaskArithmetic,
        MethodKind::Ties,
        MethodKind::Dare,
        MethodKind::Tsv,
        MethodKind::Svd,
        MethodKind::LorahubSum,
    ];

    /// The name a spec's `kind` (and `loracycle merge --method`) takes.
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Base => "base",
            MethodKind::NewLora => "new-lora",
            MethodKind::Gradient => "gradient",
            MethodKind::Lorahub => "lorahub",
            MethodKind::Adamerging => "adamerging",
            MethodKind::PiTuning => "pi-tuning",
            MethodKind::Arrow => "arrow",
            MethodKind::Sum => "sum",
            MethodKind::Average => "average",
            MethodKind::TaskArithmetic => "task-arithmetic",
            MethodKind::Ties => "ties",
            MethodKind::Dare => "dare",
            MethodKind::Tsv => "tsv",
            MethodKind::Svd => "svd",
            MethodKind::LorahubSum => "lorahub-sum",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A non-adaptive merge (what `loracycle merge` can write).
    pub fn is_merge(self) -> bool {
        !matches!(
            self,
            MethodKind::Base
                | MethodKind::NewLora
                | MethodKind::Gradient
                | MethodKind::Lorahub
                | MethodKind::Adamerging
                | MethodKind::PiTuning
                | MethodKind::Arrow
        )
    }

    /// The method with every setting at its default: what a spec's `[method] kind = NAME`
    /// alone means.
    pub fn default_spec(self) -> MethodSpec {
        match self {
            MethodKind::Base => MethodSpec::Base,
            MethodKind::NewLora => MethodSpec::NewLora(Default::default()),
            MethodKind::Gradient => MethodSpec::Gradient(Default::default()),
            MethodKind::Lorahub => MethodSpec::Lorahub(Default::default()),
            MethodKind::Adamerging => MethodSpec::Adamerging(Default::default()),
            MethodKind::PiTuning => MethodSpec::PiTuning(Default::default()),
            MethodKind::Arrow => MethodSpec::Arrow(Default::default()),
            merge => MethodSpec::Merge(
                MergeMethod::default_of(merge).expect("every other kind is a merge"),
            ),
        }
    }

    /// The names of `kinds`, comma-separated.
    pub fn names(kinds: impl IntoIterator<Item = MethodKind>) -> String {
        kinds
            .into_iter()
            .map(MethodKind::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl MergeMethod {
    pub fn kind(&self) -> MethodKind {
        match self {
            MergeMethod::Sum => MethodKind::Sum,
            MergeMethod::Average { .. } => MethodKind::Average,
            MergeMethod::TaskArithmetic { .. } => MethodKind::TaskArithmetic,
            MergeMethod::Ties { .. } => MethodKind::Ties,
            MergeMethod::Dare { .. } => MethodKind::Dare,
            MergeMethod::Tsv { .. } => MethodKind::Tsv,
            MergeMethod::Svd { .. } => MethodKind::Svd,
            MergeMethod::LorahubSum => MethodKind::LorahubSum,
        }
    }
}

impl MethodSpec {
    pub fn kind(&self) -> MethodKind {
        match self {
            MethodSpec::Base => MethodKind::Base,
            MethodSpec::NewLora(_) => MethodKind::NewLora,
            MethodSpec::Gradient(_) => MethodKind::Gradient,
            MethodSpec::Lorahub(_) => MethodKind::Lorahub,
            MethodSpec::Adamerging(_) => MethodKind::Adamerging,
            MethodSpec::PiTuning(_) => MethodKind::PiTuning,
            MethodSpec::Arrow(_) => MethodKind::Arrow,
            MethodSpec::Merge(m) => m.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_s_default_spec_is_what_its_name_alone_reads_as() {
        for k in MethodKind::ALL {
            let read: MethodSpec = toml::from_str::<toml::Value>(&format!("kind = {:?}", k.name()))
                .unwrap()
                .try_into()
                .unwrap();
            assert_eq!(k.default_spec(), read, "{}", k.name());
            assert_eq!(k.default_spec().kind(), k);
        }
    }

    #[test]
    fn every_name_reads_back_and_merges_are_the_last_eight() {
        for k in MethodKind::ALL {
            assert_eq!(MethodKind::from_name(k.name()), Some(k));
        }
        assert_eq!(MethodKind::from_name("magic"), None);
        assert_eq!(
            MethodKind::names(MethodKind::ALL.into_iter().filter(|k| k.is_merge())),
            "sum, average, task-arithmetic, ties, dare, tsv, svd, lorahub-sum"
        );
    }

    #[test]
    fn a_spec_of_each_kind_parses_under_that_name() {
        for k in MethodKind::ALL {
            let text = format!(
                "[task]\nlab = \"caesar-5\"\n[method]\nkind = \"{}\"\n",
                k.name()
            );
            let spec: crate::run::spec::RunSpec =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", k.name()));
            assert_eq!(spec.method.kind(), k);
            assert_eq!(spec.method.name(), k.name());
        }
    }
}
