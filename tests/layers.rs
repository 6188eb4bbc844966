//! The layers are crates: the run data (`crates/loracycle-data`: spec, record, events, store,
//! the engine's protocol) is a crate of its own, so whatever the UI, the `runs` commands and an
//! engine client read runs through cannot reach the tensor or terminal code — the compiler sees
//! to that. What is left to check is the crate's dependencies, all the way down: one that pulled
//! candle or ratatui in would link them into every reader without anyone noticing. The check
//! reads Cargo.lock, which holds the resolved graph of the whole workspace.

use std::collections::{BTreeMap, BTreeSet};

/// No crate the run data depends on, directly or not, may be one of these.
const FORBIDDEN: &[&str] = &[
    "candle-core",
    "candle-nn",
    "tokenizers",
    "safetensors",
    "gemm",
    "ratatui",
    "crossterm",
    "minijinja",
    "parquet",
    "ureq",
];

/// Package name → its dependencies' names, from a Cargo.lock's text.
fn graph(lock: &str) -> BTreeMap<String, Vec<String>> {
    let v: toml::Value = toml::from_str(lock).expect("Cargo.lock is TOML");
    let mut g = BTreeMap::new();
    for p in v["package"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("a name").to_string();
        let deps: Vec<String> = p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    // "name", or "name version" where two versions are locked.
                    .map(|x| {
                        x.as_str()
                            .expect("a dependency")
                            .split(' ')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        g.entry(name).or_insert_with(Vec::new).extend(deps);
    }
    g
}

/// Every package reachable from `root`, with the chain that first reached it.
fn reached(g: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut todo = vec![(root.to_string(), vec![root.to_string()])];
    while let Some((p, chain)) = todo.pop() {
        if seen.contains_key(&p) {
            continue;
        }
        for d in g.get(&p).into_iter().flatten() {
            let mut c = chain.clone();
            c.push(d.clone());
            todo.push((d.clone(), c));
        }
        seen.insert(p, chain);
    }
    seen
}

#[test]
fn the_run_data_crate_depends_on_no_tensor_or_terminal_code() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let g = graph(&lock);
    let all = reached(&g, "loracycle-data");
    assert!(
        all.contains_key("serde_json"),
        "the graph is read: {:?}",
        all.keys()
    );
    let bad: Vec<String> = FORBIDDEN
        .iter()
        .filter_map(|f| all.get(*f).map(|chain| chain.join(" -> ")))
        .collect();
    assert!(bad.is_empty(), "the run data reaches:\n{}", bad.join("\n"));
    // The main crate does reach them: the check would see a dependency that did.
    let main = reached(&g, "loracycle");
    assert!(main.contains_key("candle-core") && main.contains_key("ratatui"));
}

#[test]
fn a_forbidden_dependency_is_named_with_its_chain() {
    let lock = r#"
version = 4
[[package]]
name = "loracycle-data"
version = "0.1.0"
dependencies = ["serde_json", "helper"]
[[package]]
name = "helper"
version = "1.0.0"
dependencies = ["candle-core 0.11.1"]
[[package]]
name = "candle-core"
version = "0.11.1"
[[package]]
name = "serde_json"
version = "1.0.0"
"#;
    let all = reached(&graph(lock), "loracycle-data");
    assert_eq!(
        all["candle-core"],
        ["loracycle-data", "helper", "candle-core"]
    );
    let none: BTreeSet<&str> = ["ratatui"].into();
    assert!(none.iter().all(|f| !all.contains_key(*f)));
}
