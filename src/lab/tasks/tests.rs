use super::*;
use std::collections::{BTreeSet, HashMap};

fn task(name: &str) -> Task {
    find(name).unwrap_or_else(|| panic!("no task {name}"))
}

/// The answer `name` gives to `input`.
fn answer(name: &str, input: &str) -> String {
    let t = task(name);
    t.answer(&t.prompt(input))
        .unwrap_or_else(|| panic!("{name} refused {input:?}"))
}

#[test]
fn suite_has_enough_unique_tasks_and_families() {
    let s = suite();
    assert!(s.len() >= 75, "{} tasks", s.len());
    let names: HashSet<&str> = s.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), s.len(), "duplicate task names");
    let instructions: HashSet<&str> = s.iter().map(|t| t.instruction.as_str()).collect();
    assert_eq!(
        instructions.len(),
        s.len(),
        "two tasks share an instruction"
    );
    let families: BTreeSet<&str> = s.iter().map(|t| t.family.as_str()).collect();
    assert!(families.len() >= 10, "{families:?}");
    for t in &s {
        let kebab = |x: &str| {
            !x.starts_with('-')
                && !x.ends_with('-')
                && x.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        };
        assert!(kebab(&t.name) && kebab(&t.family), "{}", t.name);
        assert!(!t.instruction.contains(':'), "{}", t.name);
        assert_eq!(t.instruction, t.instruction.to_lowercase(), "{}", t.name);
    }
    // The suite is rebuilt identically every time, tables included.
    assert_eq!(s, suite());
}

#[test]
fn held_out_targets_are_half_related() {
    let held = held_out();
    assert!(held.len() >= 12);
    assert_eq!(held.iter().collect::<HashSet<_>>().len(), held.len());
    let related: Vec<&str> = held.iter().filter_map(|h| relative_of(h)).collect();
    assert_eq!(related.len() * 2, held.len());
    let pool = pool();
    for h in &held {
        assert!(find(h).is_some(), "{h} not in suite");
        assert!(!pool.iter().any(|p| p == h), "{h} is in the pool");
    }
    for r in related {
        assert!(find(r).is_some() && !held.contains(&r), "{r}");
        assert!(pool.iter().any(|p| p == r), "{r} not in pool");
    }
    assert_eq!(relative_of("caesar-5"), Some("caesar-4"));
    assert_eq!(relative_of("table-m"), None);
    assert_eq!(relative_of("caesar-4"), None, "not held out");
    assert_eq!(pool.len() + held.len(), suite().len());
    // Tables a-l are in the pool, tables m-q are fresh.
    assert_eq!(pool.iter().filter(|p| p.starts_with("table-")).count(), 12);
}

#[test]
fn base_mixture_is_pool_tasks_a_small_model_can_learn() {
    let base = base_mixture();
    assert!((12..=16).contains(&base.len()), "{}", base.len());
    assert_eq!(base.iter().collect::<HashSet<_>>().len(), base.len());
    let held = held_out();
    let families: HashSet<String> = base.iter().map(|b| task(b).family).collect();
    assert!(families.len() >= 6, "{families:?}");
    for b in &base {
        assert!(!held.contains(b), "{b} is held out");
        let t = task(b);
        let hard = ["add-mod", "count", "sort"];
        assert!(
            !hard.contains(&t.family.as_str()) && t.name != "is-palindrome",
            "{b}"
        );
    }
}

#[test]
fn examples_are_deterministic_in_seed() {
    for t in suite() {
        let a = t.examples(50, 7);
        assert_eq!(a, t.examples(50, 7), "{}", t.name);
        assert_ne!(a, t.examples(50, 8), "{}", t.name);
    }
    // Different tasks with the same seed do not share an input stream.
    let c1 = task("caesar-1").examples(20, 1);
    let c2 = task("caesar-2").examples(20, 1);
    let inputs = |v: &[(String, String)]| {
        v.iter()
            .map(|(p, _)| p.split_once(": ").unwrap().1.to_string())
            .collect::<Vec<_>>()
    };
    assert_ne!(inputs(&c1), inputs(&c2));
}

#[test]
fn examples_are_well_formed_and_pass_check() {
    for t in suite() {
        let examples = t.examples(300, 11);
        assert_eq!(examples.len(), 300);
        let printable = |s: &str| s.bytes().all(|c| (0x20..=0x7e).contains(&c));
        let mut lengths = HashSet::new();
        for (prompt, answer) in &examples {
            assert!(prompt.len() <= MAX_PROMPT_CHARS, "{}: {prompt:?}", t.name);
            assert!(
                (1..=MAX_ANSWER_CHARS).contains(&answer.len()),
                "{}: {answer:?}",
                t.name
            );
            assert!(
                printable(prompt) && printable(answer),
                "{}: {prompt:?}",
                t.name
            );
            assert!(
                t.check(prompt, answer),
                "{}: {prompt:?} -> {answer:?}",
                t.name
            );
            assert!(t.check(prompt, &format!(" {answer}\n")), "{}", t.name);
            assert!(!t.check(prompt, &format!("{answer}x")), "{}", t.name);
            lengths.insert(prompt.len());
        }
        if !t.name.starts_with("next-") {
            assert!(lengths.len() >= 3, "{}: inputs barely vary", t.name);
            let unique: HashSet<&String> = examples.iter().map(|(p, _)| p).collect();
            assert_eq!(unique.len(), 300, "{}: duplicate prompts", t.name);
        }
    }
    // next-k has 26 possible inputs: all of them show up before any repeats.
    let next = task("next-1").examples(40, 3);
    let first: HashSet<&String> = next[..26].iter().map(|(p, _)| p).collect();
    assert_eq!(first.len(), 26);
}

#[test]
fn hand_computed_answers() {
    let cases = [
        ("caesar-3", "hello", "khoor"),
        ("caesar-12", "xyz", "jkl"),
        ("next-2", "c", "e"),
        ("next-2", "z", "b"),
        ("rotate-2", "abcdef", "cdefab"),
        ("rotate-4", "abc", "bca"),
        ("reverse", "hello", "olleh"),
        ("uppercase", "hello", "HELLO"),
        ("swap-case", "HeLLo", "hEllO"),
        ("double", "abc", "aabbcc"),
        ("drop-vowels", "hello", "hll"),
        ("first-to-end", "hello", "elloh"),
        ("mirror", "abc", "abccba"),
        ("every-second", "abcdefg", "bdf"),
        ("reverse-uppercase", "abc", "CBA"),
        ("add-mod-7", "5 4", "2"),
        ("add-mod-13", "12 12", "11"),
        ("add-mod-5", "19 18", "2"),
        ("contains-e", "hello", "yes"),
        ("contains-a", "hello", "no"),
        ("is-palindrome", "level", "yes"),
        ("is-palindrome", "levels", "no"),
        ("is-sorted", "abbc", "yes"),
        ("is-sorted", "acb", "no"),
        ("has-even-length", "abcd", "yes"),
        ("has-even-length", "abc", "no"),
        ("starts-with-vowel", "apple", "yes"),
        ("starts-with-vowel", "pear", "no"),
        ("which-is-larger", "12 7", "12"),
        ("which-is-smaller", "12 7", "7"),
        ("which-is-longer", "cat horse", "horse"),
        ("which-is-shorter", "cat horse", "cat"),
        ("length", "hello", "5"),
        ("count-a", "banana", "3"),
        ("count-o", "banana", "0"),
        ("sort-letters", "dcab", "abcd"),
        ("sort-descending", "dcab", "dcba"),
        ("interleave", "abc xy", "axbyc"),
        ("run-length", "aaabcc", "3a1b2c"),
    ];
    for (name, input, expected) in cases {
        assert_eq!(answer(name, input), expected, "{name} {input:?}");
    }
    let c3 = task("caesar-3");
    assert_eq!(c3.prompt("hello"), "shift 3: hello");
    assert!(c3.check("shift 3: hello", "khoor"));
    assert!(!c3.check("shift 3: hello", "lipps"));
    assert!(
        !c3.check("shift 4: hello", "khoor"),
        "another task's prompt"
    );
    assert!(
        !c3.check("shift 3: HELLO", "KHOOR"),
        "not an input caesar-3 makes"
    );
    assert!(
        !task("add-mod-7").check("add mod 7: 20 1", "0"),
        "operand out of range"
    );
    assert!(!task("which-is-larger").check("which is larger: 4 4", "4"));
}

#[test]
fn tables_are_distinct_derangements() {
    let tables: Vec<String> = ('a'..='q')
        .map(|c| answer(&format!("table-{c}"), "abcdefghijklmnopqrstuvwxyz"))
        .collect();
    for t in &tables {
        let letters: BTreeSet<char> = t.chars().collect();
        assert_eq!(letters.len(), 26, "{t} is not a permutation");
        assert!(
            t.chars().zip('a'..='z').all(|(x, y)| x != y),
            "{t} has a fixed point"
        );
    }
    assert_eq!(tables.iter().collect::<HashSet<_>>().len(), tables.len());
    // Pinned, so a change to the tables (and so to every lab artefact) is deliberate.
    assert_eq!(tables[0], "bxfglvmnyahrcjwodikstqpzeu");
    assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn base_mixture_emits_every_answer_character() {
    let chars_of = |name: &str| -> BTreeSet<char> {
        task(name)
            .examples(300, 5)
            .into_iter()
            .flat_map(|(_, a)| a.chars().collect::<Vec<_>>())
            .collect()
    };
    let base: BTreeSet<char> = base_mixture().iter().flat_map(|b| chars_of(b)).collect();
    for t in suite() {
        let missing: Vec<char> = chars_of(&t.name).difference(&base).copied().collect();
        assert!(
            missing.is_empty(),
            "{}: base never emits {missing:?}",
            t.name
        );
    }
    let expected: BTreeSet<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    assert_eq!(base, expected);
}

#[test]
fn classification_tasks_are_balanced() {
    let mut rates = HashMap::new();
    for t in suite().into_iter().filter(Task::is_classification) {
        let examples = t.examples(400, 21);
        let yes = examples.iter().filter(|(_, a)| a == "yes").count();
        let no = examples.iter().filter(|(_, a)| a == "no").count();
        assert_eq!(yes + no, 400, "{}", t.name);
        assert!((140..=260).contains(&yes), "{}: {yes}/400 yes", t.name);
        rates.insert(t.name, yes);
    }
    assert!(rates.len() >= 8, "{rates:?}");
}
