//! Reading a Rust source file as tokens and imports, for tests/layers.rs: comments, strings and
//! inline test modules dropped, `use` trees expanded into paths. Enough of Rust's syntax for this
//! crate's sources, not a parser.

use std::collections::HashSet;

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source's tokens (identifiers, `::`, single punctuation), without comments, string and
/// char literals, or inline `#[cfg(test)] mod … { … }` blocks.
pub fn tokens(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let raw_hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && at(i) != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                let pair = (at(i), at(i + 1));
                depth += (pair == ('/', '*')) as i32 - (pair == ('*', '/')) as i32;
                i += if matches!(pair, ('/', '*') | ('*', '/')) {
                    2
                } else {
                    1
                };
                if depth == 0 {
                    break;
                }
            }
        } else if at(i) == 'r'
            && at(i + 1 + raw_hashes) == '"'
            && (raw_hashes > 0 || at(i + 1) == '"')
        {
            i += 2 + raw_hashes;
            while i < c.len() && !(at(i) == '"' && (1..=raw_hashes).all(|h| at(i + h) == '#')) {
                i += 1;
            }
            i += 1 + raw_hashes;
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && at(i) != '"' {
                i += if at(i) == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            i += 2;
            while i < c.len() && at(i) != '\'' {
                i += 1;
            }
            i += 1;
        } else if is_ident(at(i)) {
            let n = c[i..].iter().take_while(|&&ch| is_ident(ch)).count();
            out.push(c[i..i + n].iter().collect());
            i += n;
        } else if at(i) == ':' && at(i + 1) == ':' {
            out.push("::".into());
            i += 2;
        } else {
            if !at(i).is_whitespace() {
                out.push(at(i).to_string());
            }
            i += 1;
        }
    }
    strip_test_modules(out)
}

fn strip_test_modules(t: Vec<String>) -> Vec<String> {
    const HEAD: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let is_head = t.len() >= i + 10 && t[i..i + 7].iter().zip(HEAD).all(|(a, b)| a == b);
        if is_head && t[i + 7] == "mod" && t[i + 9] == "{" {
            let mut depth = 0;
            i += 9;
            while i < t.len() {
                depth += (t[i] == "{") as i32 - (t[i] == "}") as i32;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        } else {
            out.push(t[i].clone());
            i += 1;
        }
    }
    out
}

/// One path a file names: its segments, whether it is a `pub use`, and the name it binds (the
/// last segment, an alias, or `*`).
#[derive(Debug, Clone)]
pub struct Import {
    pub path: Vec<String>,
    pub public: bool,
    pub name: String,
}

/// Expands the `use` tree at `t[*at..]` (`a::{b, c::{self, D as E}, *}`) into its paths.
fn use_tree(
    t: &[String],
    at: &mut usize,
    mut path: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    while let Some(tok) = t.get(*at) {
        match tok.as_str() {
            "::" => *at += 1,
            "{" => {
                *at += 1;
                while t.get(*at).is_some_and(|s| s != "}") {
                    use_tree(t, at, path.clone(), out);
                    if t.get(*at).is_some_and(|s| s == ",") {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            "*" | "as" => {
                let name = if tok == "*" {
                    "*".to_string()
                } else {
                    t.get(*at + 1).cloned().unwrap_or_default()
                };
                *at += if tok == "*" { 1 } else { 2 };
                out.push((path, name));
                return;
            }
            "," | "}" => break,
            seg => {
                path.push(seg.to_string());
                *at += 1;
            }
        }
    }
    if path.last().is_some_and(|s| s == "self") {
        path.pop();
    }
    let name = path.last().cloned().unwrap_or_default();
    out.push((path, name));
}

/// A file's imports, and the identifiers of its code outside `use` statements.
pub fn imports(t: &[String]) -> (Vec<Import>, HashSet<String>) {
    let mut out = Vec::new();
    let mut idents = HashSet::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == "use" {
            let public =
                (i >= 1 && t[i - 1] == "pub") || (i >= 4 && t[i - 4] == "pub" && t[i - 1] == ")");
            let end = t[i..]
                .iter()
                .position(|s| s == ";")
                .map_or(t.len(), |e| i + e);
            let mut trees = Vec::new();
            use_tree(&t[..end], &mut (i + 1), Vec::new(), &mut trees);
            out.extend(
                trees
                    .into_iter()
                    .map(|(path, name)| Import { path, public, name }),
            );
            i = end + 1;
            continue;
        }
        let root = matches!(t[i].as_str(), "crate" | "super" | "self");
        if root && t.get(i + 1).is_some_and(|s| s == "::") && (i == 0 || t[i - 1] != "::") {
            let mut path = vec![t[i].clone()];
            while t.get(i + 1).is_some_and(|s| s == "::")
                && t.get(i + 2).is_some_and(|s| s.starts_with(is_ident))
            {
                path.push(t[i + 2].clone());
                i += 2;
            }
            let name = path.last().cloned().unwrap_or_default();
            out.push(Import {
                path,
                public: false,
                name,
            });
        }
        idents.insert(t[i].clone());
        i += 1;
    }
    (out, idents)
}
