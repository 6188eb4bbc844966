//! The run data layer (spec, record, events, store, the engine's protocol) imports no tensor code
//! and no executor, all the way down: the UI, the `runs` commands and a client of the engine read
//! runs through it, and one `use` that reaches candle from there would pull the numeric stack
//! into all of them without anyone noticing.
//!
//! The check reads the sources. Starting from the data-layer files it follows every `crate::`,
//! `super::` and `self::` path (in `use` trees and in code) and every `use` of a child module to
//! the file that defines it, and fails with the chain of imports if a reached file names a
//! forbidden crate or the executor. A `pub use` re-export is followed only when something needs
//! the name it binds (the file's own code, or a path that looks the name up through the file), so
//! `process.rs`, which re-exports its candle half from `process/numeric.rs`, stays usable for the
//! half that is plain data. Comments, strings and inline `#[cfg(test)]` modules do not count.
//! A module imported by its name (`use crate::pool; pool::list(..)`) reaches that module's file,
//! not what the file re-exports: the data layer writes the narrow path of each item instead.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

#[path = "support/imports.rs"]
mod imports;

use imports::{Import, imports, tokens};

/// What no file reached from the data layer may name.
const FORBIDDEN: &[&str] = &[
    "candle_core",
    "candle_nn",
    "tokenizers",
    "safetensors",
    "run::execute",
    "Workbench",
    "ratatui",
];

/// A file's module path (`src/run/store/folder.rs` is `run::store::folder`).
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix("src").unwrap_or(file).with_extension("");
    let segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if segs == ["lib"] { Vec::new() } else { segs }
}

struct Parsed {
    tokens: Vec<String>,
    imports: Vec<Import>,
}

/// The files reached from a start set in one source tree (`root` holds `src/`).
struct Walk<'a> {
    root: &'a Path,
    parsed: BTreeMap<PathBuf, Parsed>,
    /// Each reached file, with the file and the path that first led to it.
    reached: BTreeMap<PathBuf, Option<(PathBuf, String)>>,
}

impl<'a> Walk<'a> {
    fn new(root: &'a Path, start: &[PathBuf]) -> Self {
        let mut w = Walk {
            root,
            parsed: BTreeMap::new(),
            reached: BTreeMap::new(),
        };
        let mut queue = VecDeque::new();
        for f in start {
            w.reached.insert(f.clone(), None);
            w.enter(f, &mut queue);
        }
        let mut looked_up = HashSet::new();
        while let Some((from, import)) = queue.pop_front() {
            let Some((file, item)) = w.resolve(&from, &import.path) else {
                continue;
            };
            if !w.reached.contains_key(&file) {
                w.reached
                    .insert(file.clone(), Some((from.clone(), import.path.join("::"))));
                w.enter(&file, &mut queue);
            }
            // A name looked up through the file (or all of them, by a glob): follow the file's
            // re-export of it, if any.
            let glob = (import.name == "*").then(|| "*".to_string());
            let Some(name) = import.path.get(item).cloned().or(glob) else {
                continue;
            };
            if looked_up.insert((file.clone(), name.clone())) {
                for r in &w.parsed[&file].imports {
                    if r.public && (r.name == name || r.name == "*" || name == "*") {
                        queue.push_back((file.clone(), r.clone()));
                    }
                }
            }
        }
        w
    }

    /// Parses a newly reached file and queues what it needs.
    fn enter(&mut self, file: &Path, queue: &mut VecDeque<(PathBuf, Import)>) {
        let text = std::fs::read_to_string(self.root.join(file)).unwrap_or_default();
        let tokens = tokens(&text);
        let (imports, idents) = imports(&tokens);
        for i in &imports {
            if !i.public || idents.contains(&i.name) {
                queue.push_back((file.to_path_buf(), i.clone()));
            }
        }
        self.parsed
            .insert(file.to_path_buf(), Parsed { tokens, imports });
    }

    /// The crate file a path written in `file` points into, and the index of the path's first
    /// segment past that file's module (the item looked up in it). Paths into other crates
    /// resolve to nothing.
    fn resolve(&self, file: &Path, path: &[String]) -> Option<(PathBuf, usize)> {
        let mut module = module_of(file);
        let mut k = 0;
        match path.first()?.as_str() {
            "crate" => (module, k) = (Vec::new(), 1),
            "self" => k = 1,
            _ => {
                while path.get(k).is_some_and(|s| s == "super") {
                    module.pop();
                    k += 1;
                }
            }
        }
        let base = module.len();
        let full: Vec<String> = module
            .into_iter()
            .chain(path[k..].iter().cloned())
            .collect();
        // A bare path (`numeric::prepare`) names a child module or another crate, never the file
        // itself.
        let shortest = if k == 0 { base + 1 } else { base };
        (shortest..=full.len()).rev().find_map(|n| {
            let f = match n {
                0 => PathBuf::from("src/lib.rs"),
                _ => PathBuf::from("src")
                    .join(full[..n].join("/"))
                    .with_extension("rs"),
            };
            self.root.join(&f).is_file().then_some((f, k + n - base))
        })
    }

    /// How the walk got from a start file to `file`.
    fn chain(&self, file: &Path) -> String {
        let mut hops = vec![file.display().to_string()];
        let mut at = file.to_path_buf();
        while let Some(Some((from, via))) = self.reached.get(&at) {
            hops.push(format!("{} --({via})-->", from.display()));
            at = from.clone();
        }
        hops.reverse();
        hops.join(" ")
    }

    /// Each reached file that names a forbidden word, with the chain that reached it.
    fn offences(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (file, p) in &self.parsed {
            for word in FORBIDDEN {
                let want: Vec<String> = tokens(word);
                if p.tokens.windows(want.len()).any(|w| w == want.as_slice()) {
                    out.push(format!("{} names {word}", self.chain(file)));
                }
            }
        }
        out
    }
}

fn data_layer(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["spec", "record", "event", "store"]
        .iter()
        .map(|f| PathBuf::from(format!("src/run/{f}.rs")))
        .collect();
    let mut store: Vec<PathBuf> = std::fs::read_dir(root.join("src/run/store"))
        .expect("src/run/store is a folder")
        .map(|e| PathBuf::from("src/run/store").join(e.expect("a folder entry").file_name()))
        .collect();
    store.sort();
    files.extend(store);
    files.push(PathBuf::from("src/engine/protocol.rs"));
    files
}

#[test]
fn the_run_data_layer_reaches_no_tensor_code_and_no_executor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let walk = Walk::new(root, &data_layer(root));
    let offences = walk.offences();
    assert!(
        offences.is_empty(),
        "the data layer reaches:\n{}",
        offences.join("\n")
    );
    // The walk does follow imports: these are reached only through them.
    for f in [
        "src/merge/method.rs",
        "src/pool/source.rs",
        "src/process.rs",
        "src/eval/bootstrap.rs",
        "src/slurm.rs",
    ] {
        assert!(
            walk.reached.contains_key(Path::new(f)),
            "{f} not reached: {:?}",
            walk.reached.keys()
        );
    }
}

#[test]
fn a_file_that_uses_candle_is_flagged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let walk = Walk::new(root, &[PathBuf::from("src/model/llama.rs")]);
    assert!(
        walk.offences()
            .iter()
            .any(|o| o.starts_with("src/model/llama.rs names candle_core")),
        "{:?}",
        walk.offences()
    );
}

/// A small tree: `a` is clean itself, reaches candle through `b`'s re-export of its child `c`, and
/// mentions candle only where it does not count.
#[test]
fn imports_are_followed_through_super_and_re_exports_but_not_comments_or_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let p = tmp.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "src/x/a.rs",
        "//! Not candle_core.\nuse super::b::{Plain, self};\nfn f() { let _ = \"ratatui\"; }\n#[cfg(test)]\nmod tests { use crate::t::Heavy; }\n",
    );
    write(
        "src/x/b.rs",
        "mod c;\npub use c::Heavy;\npub struct Plain;\n",
    );
    write("src/x/b/c.rs", "pub struct Heavy(candle_core::Tensor);\n");
    write("src/t.rs", "use tokenizers::Tokenizer;\n");
    let start = [PathBuf::from("src/x/a.rs")];
    let clean = Walk::new(tmp.path(), &start);
    assert_eq!(clean.offences(), Vec::<String>::new());
    assert!(clean.reached.contains_key(Path::new("src/x/b.rs")));
    // Naming the re-exported item reaches the child that defines it.
    write("src/x/a.rs", "fn f() -> crate::x::b::Heavy { todo!() }\n");
    let heavy = Walk::new(tmp.path(), &start);
    assert_eq!(
        heavy.offences(),
        [
            "src/x/a.rs --(crate::x::b::Heavy)--> src/x/b.rs --(c::Heavy)--> src/x/b/c.rs names candle_core"
        ]
    );
}
