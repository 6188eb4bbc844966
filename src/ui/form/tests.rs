//! The form's fields, validation and spec round trip.

use super::*;
use crate::pool::PoolSource;
use crate::run::spec::{MethodSpec, RunSpec};
use crate::select::ScoreMetric;

#[test]
fn the_form_offers_every_method_kind_once() {
    for k in MethodKind::ALL {
        assert_eq!(
            METHODS.iter().filter(|&&m| m == k).count(),
            1,
            "{}",
            k.name()
        );
    }
}

fn form() -> Form {
    let mut f = Form::new(vec!["caesar-5".into(), "table-m".into()]);
    f.pool_size = Some(119);
    f
}

#[test]
fn default_form_makes_the_paper_recipe_and_two_controls() {
    let specs = form().specs("lab", &PoolSource::Lab).unwrap();
    let labels: Vec<String> = specs.iter().map(|s| s.label()).collect();
    assert_eq!(
        labels,
        [
            "caesar-5 / gradient",
            "caesar-5 / gradient / random-init",
            "caesar-5 / base"
        ]
    );
    assert_eq!(
        specs[0].selection,
        Selection::TopK {
            k: 30,
            by: ScoreMetric::ExactMatch
        }
    );
    let MethodSpec::Gradient(g) = &specs[0].method else {
        panic!("gradient expected")
    };
    assert_eq!(g, &crate::tune::coef::GradientSpec::default());
}

#[test]
fn inline_validation_blocks_bad_values() {
    let mut f = form();
    f.k = "200".into();
    assert_eq!(
        f.specs("lab", &PoolSource::Lab).unwrap_err(),
        "k: the pool has 119 usable adapters"
    );
    f.k = "x".into();
    assert_eq!(f.problem(FieldId::K).unwrap(), "a whole number ≥ 1");
    f.k = "5".into();
    f.selection = Selection::Manual {
        adapters: Vec::new(),
    };
    assert_eq!(
        f.problem(FieldId::Strategy).unwrap(),
        "select adapters on the Pool screen (space)"
    );
    f.task = "/nowhere".into();
    assert_eq!(
        f.problem(FieldId::Task).unwrap(),
        "looking for the folder's task files…"
    );
    assert_eq!(f.wants_check(), Some(PathBuf::from("/nowhere")));
    // Asked once per folder.
    assert_eq!(f.wants_check(), None);
    f.on_task_checked(
        "/nowhere".into(),
        TASK_FILES.iter().map(|s| s.to_string()).collect(),
    );
    assert_eq!(
        f.problem(FieldId::Task).unwrap(),
        "not a lab or imported task, nor a folder with train.jsonl, validation.jsonl, test.jsonl"
    );
}

#[test]
fn imported_tasks_follow_the_labs_and_are_named_by_name() {
    let mut f = form();
    f.add_imported(vec!["banking77".into(), "caesar-5".into()]);
    assert_eq!(f.tasks, ["caesar-5", "table-m", "banking77"]);
    assert_eq!(f.imported, ["banking77"]);
    f.cursor = FIELDS.iter().position(|x| *x == FieldId::Task).unwrap();
    f.task = "table-m".into();
    f.cycle(true);
    assert_eq!(f.task, "banking77");
    assert_eq!(f.problem(FieldId::Task), None);
    assert_eq!(f.wants_check(), None);
    let spec = f.specs("lab", &PoolSource::Lab).unwrap().remove(0);
    assert_eq!(spec.task.name.as_deref(), Some("banking77"));
    assert_eq!(spec.task.lab, None);
    let mut g = form();
    g.add_imported(vec!["banking77".into()]);
    g.load_spec(&spec);
    assert_eq!(g.task, "banking77");
    f.cycle(true);
    assert_eq!(f.task, "caesar-5");
}

#[test]
fn a_spec_round_trips_through_the_form() {
    let mut f = form();
    f.method = MethodKind::Lorahub;
    f.steps = "64".into();
    f.selection = Selection::Random { k: 0, seed: None };
    f.k = "7".into();
    f.seed = "3".into();
    let spec = f.specs("lab", &PoolSource::Lab).unwrap().remove(0);
    let mut g = form();
    g.load_spec(&spec);
    assert_eq!(g.specs("lab", &PoolSource::Lab).unwrap()[0], spec);
    // A strategy the form does not offer survives a load and a save.
    let similar = Selection::Similar {
        to: "caesar-4".into(),
        k: 5,
        measure: crate::select::selection::Closeness::QuasiFim,
        aggregate: Default::default(),
    };
    let mut h = form();
    h.load_spec(&RunSpec {
        selection: similar.clone(),
        ..spec
    });
    assert_eq!(h.value(FieldId::K), "5");
    assert_eq!(
        h.specs("lab", &PoolSource::Lab).unwrap()[0].selection,
        similar
    );
}

#[test]
fn the_paper_protocol_fills_what_the_form_does_not_set() {
    let mut f = form();
    f.cursor = FIELDS.iter().position(|&x| x == FieldId::Protocol).unwrap();
    f.cycle(true);
    assert_eq!(f.value(FieldId::Protocol), "paper");
    // Top-k follows the protocol's metric, both ways.
    assert_eq!(f.value(FieldId::Strategy), "top-k by generated exact match");
    f.cycle(true);
    assert_eq!(f.value(FieldId::Strategy), "top-k by exact match");
    f.cycle(true);
    f.cursor = FIELDS.iter().position(|&x| x == FieldId::Strategy).unwrap();
    f.cycle(true);
    f.cycle(false);
    assert_eq!(f.value(FieldId::Strategy), "top-k by generated exact match");
    f.method = MethodKind::Lorahub;
    f.steps = "100".into();
    f.twin_new_lora = true;
    let specs = f.specs("lab", &PoolSource::Lab).unwrap();
    let main = &specs[0];
    assert_eq!(main.protocol, Protocol::Paper);
    assert_eq!(main.task.examples, Some(100));
    assert_eq!(
        main.selection,
        Selection::TopK {
            k: 30,
            by: ScoreMetric::Generated
        }
    );
    let MethodSpec::Lorahub(h) = &main.method else {
        panic!("{:?}", main.method)
    };
    assert_eq!(
        (h.budget, h.objective),
        (100, crate::tune::settings::Objective::TrainValidation)
    );
    // The controls share the protocol; a loaded spec brings its protocol back.
    assert!(specs.iter().all(|s| s.protocol == Protocol::Paper));
    let lora = specs
        .iter()
        .find_map(|s| match &s.method {
            MethodSpec::NewLora(n) => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!((lora.checkpoint_every, lora.final_lr_frac), (10, 0.0));
    let mut g = form();
    g.load_spec(main);
    assert_eq!(g.protocol, Protocol::Paper);
    let back = RunSpec::from_toml(&main.to_toml(), std::path::Path::new("t.toml")).unwrap();
    assert_eq!(&back, main);
}
