//! The lab's synthetic task suite: short text-to-text tasks in families (caesar shifts, rotations,
//! copies with a twist, random substitution tables, modular addition, yes/no questions,
//! comparisons, counting, sorting), so that some pool LoRAs are close relatives of a held-out
//! target and others are no help at all. Everything is deterministic: fixed tables come from
//! constant seeds and example streams from a seed mixed with an FNV-1a hash of the task name.

mod inputs;
mod kind;
#[cfg(test)]
mod tests;

use kind::{CopyOp, Kind, random_table};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Longest prompt (instruction, `": "` and input) any task produces.
pub const MAX_PROMPT_CHARS: usize = 40;
/// Longest answer any task produces.
pub const MAX_ANSWER_CHARS: usize = 20;

/// Seed of the random substitution tables; changing it changes every `table-*` task.
const TABLE_SEED: u64 = 0x7AB1_E5EE_D000_0001;

/// One synthetic task: the model sees `"{instruction}: {input}"` and must answer with the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub family: String,
    pub instruction: String,
    kind: Kind,
}

impl Task {
    fn new(name: &str, family: &str, instruction: &str, kind: Kind) -> Self {
        Task {
            name: name.to_string(),
            family: family.to_string(),
            instruction: instruction.to_string(),
            kind,
        }
    }

    /// One (prompt, answer) example.
    pub fn example(&self, rng: &mut ChaCha8Rng) -> (String, String) {
        loop {
            let input = self.kind.input(rng);
            if let Some(answer) = self.kind.answer(&input) {
                let prompt = self.prompt(&input);
                if prompt.len() <= MAX_PROMPT_CHARS
                    && (1..=MAX_ANSWER_CHARS).contains(&answer.len())
                {
                    return (prompt, answer);
                }
            }
        }
    }

    /// `n` examples, deterministic in `seed`, with no duplicate prompts while the task's input
    /// space allows it (tasks with few possible inputs, such as `next-1`, repeat once exhausted).
    pub fn examples(&self, n: usize, seed: u64) -> Vec<(String, String)> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, fnv1a(&self.name)));
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(n);
        // After this many duplicates in a row the input space is taken to be used up.
        let mut misses_left = 500;
        while out.len() < n {
            let (prompt, answer) = self.example(&mut rng);
            if !seen.insert(prompt.clone()) && misses_left > 0 {
                misses_left -= 1;
                continue;
            }
            if misses_left > 0 {
                misses_left = 500;
            }
            out.push((prompt, answer));
        }
        out
    }

    /// Does `prediction` answer `prompt` correctly? The answer is recomputed from the prompt's
    /// input; surrounding whitespace in the prediction is ignored.
    pub fn check(&self, prompt: &str, prediction: &str) -> bool {
        self.answer(prompt)
            .is_some_and(|answer| answer == prediction.trim())
    }

    /// The right answer to `prompt`, or `None` when it is not one of this task's prompts.
    pub fn answer(&self, prompt: &str) -> Option<String> {
        let input = prompt
            .strip_prefix(self.instruction.as_str())?
            .strip_prefix(": ")?;
        self.kind.answer(input)
    }

    /// The prompt the model sees for `input`.
    pub fn prompt(&self, input: &str) -> String {
        format!("{}: {input}", self.instruction)
    }

    /// Is the answer `yes` or `no`?
    pub fn is_classification(&self) -> bool {
        self.kind.is_classification()
    }
}

/// The whole suite, in a fixed order.
pub fn suite() -> Vec<Task> {
    let mut s = Vec::new();
    for k in 1..=12u8 {
        s.push(Task::new(
            &format!("caesar-{k}"),
            "caesar",
            &format!("shift {k}"),
            Kind::Caesar(k),
        ));
    }
    for k in 1..=5u8 {
        s.push(Task::new(
            &format!("next-{k}"),
            "next",
            &format!("next {k}"),
            Kind::Next(k),
        ));
    }
    for k in 1..=6 {
        s.push(Task::new(
            &format!("rotate-{k}"),
            "rotate",
            &format!("rotate {k}"),
            Kind::Rotate(k),
        ));
    }
    let copies = [
        ("reverse", "reverse", CopyOp::Reverse),
        ("uppercase", "uppercase", CopyOp::Uppercase),
        ("swap-case", "swap case", CopyOp::SwapCase),
        ("double", "double", CopyOp::Double),
        ("drop-vowels", "drop vowels", CopyOp::DropVowels),
        ("first-to-end", "first to end", CopyOp::FirstToEnd),
        ("mirror", "mirror", CopyOp::Mirror),
        ("every-second", "every second", CopyOp::EverySecond),
        (
            "reverse-uppercase",
            "reverse uppercase",
            CopyOp::ReverseUppercase,
        ),
    ];
    for (name, instruction, op) in copies {
        s.push(Task::new(name, "copy", instruction, Kind::Copy(op)));
    }
    for c in 'a'..='q' {
        let name = format!("table-{c}");
        let table = random_table(mix(TABLE_SEED, fnv1a(&name)));
        s.push(Task::new(
            &name,
            "table",
            &format!("table {c}"),
            Kind::Table(table),
        ));
    }
    for n in 5..=13u32 {
        s.push(Task::new(
            &format!("add-mod-{n}"),
            "add-mod",
            &format!("add mod {n}"),
            Kind::AddMod(n),
        ));
    }
    for c in ['a', 'e', 'o', 's', 't'] {
        s.push(Task::new(
            &format!("contains-{c}"),
            "contains",
            &format!("contains {c}"),
            Kind::Contains(c),
        ));
    }
    let classify = [
        ("is-palindrome", "palindrome", Kind::Palindrome),
        ("is-sorted", "sorted", Kind::Sorted),
        ("has-even-length", "even length", Kind::EvenLength),
        (
            "starts-with-vowel",
            "starts with vowel",
            Kind::StartsWithVowel,
        ),
    ];
    for (name, instruction, kind) in classify {
        s.push(Task::new(name, "classify", instruction, kind));
    }
    let compare = [
        ("which-is-larger", "which is larger", Kind::Larger),
        ("which-is-smaller", "which is smaller", Kind::Smaller),
        ("which-is-longer", "which is longer", Kind::Longer),
        ("which-is-shorter", "which is shorter", Kind::Shorter),
    ];
    for (name, instruction, kind) in compare {
        s.push(Task::new(name, "compare", instruction, kind));
    }
    s.push(Task::new("length", "count", "length", Kind::Length));
    for c in ['a', 'e', 'o'] {
        s.push(Task::new(
            &format!("count-{c}"),
            "count",
            &format!("count {c}"),
            Kind::CountLetter(c),
        ));
    }
    s.push(Task::new("sort-letters", "sort", "sort", Kind::SortLetters));
    s.push(Task::new(
        "sort-descending",
        "sort",
        "sort descending",
        Kind::SortDescending,
    ));
    s.push(Task::new(
        "interleave",
        "interleave",
        "interleave",
        Kind::Interleave,
    ));
    s.push(Task::new(
        "run-length",
        "run-length",
        "run length",
        Kind::RunLength,
    ));
    s
}

pub fn find(name: &str) -> Option<Task> {
    suite().into_iter().find(|t| t.name == name)
}

/// Held-out targets with their closest pool relative (`None`: nothing in the pool is related).
/// They span difficulty: a sibling caesar shift is learned from 80 examples, modular addition
/// hardly at all, and a fresh random table or an unseen task type has nothing to recycle.
const HELD_OUT: &[(&str, Option<&str>)] = &[
    ("caesar-5", Some("caesar-4")),
    ("rotate-4", Some("rotate-3")),
    ("reverse-uppercase", Some("reverse")),
    ("mirror", Some("reverse")),
    ("contains-e", Some("contains-a")),
    ("which-is-smaller", Some("which-is-larger")),
    ("add-mod-9", Some("add-mod-8")),
    ("table-m", None),
    ("table-n", None),
    ("table-o", None),
    ("table-p", None),
    ("table-q", None),
    ("interleave", None),
    ("run-length", None),
];

/// Names of the held-out target tasks: never in the pool, never in base pretraining.
pub fn held_out() -> Vec<&'static str> {
    HELD_OUT.iter().map(|(name, _)| *name).collect()
}

/// For a held-out task, the name of its closest pool relative, or `None` when nothing in the pool
/// is related (or the name is not a held-out task).
pub fn relative_of(held_out_task: &str) -> Option<&'static str> {
    HELD_OUT
        .iter()
        .find(|(name, _)| *name == held_out_task)
        .and_then(|(_, relative)| *relative)
}

/// Names of the tasks that get a LoRA in the pool: every task that is not held out.
pub fn pool() -> Vec<String> {
    let held = held_out();
    suite()
        .into_iter()
        .map(|t| t.name)
        .filter(|name| !held.contains(&name.as_str()))
        .collect()
}

/// Tasks the base model is pretrained on. Together their answers contain every character any
/// task's answer can (lowercase from the shifts and tables, uppercase from `uppercase` and
/// `swap-case`, digits from `which-is-larger`, `yes`/`no` from `starts-with-vowel`), because a
/// LoRA on the linear layers cannot teach the base to emit a new character. Tasks a model this
/// small cannot learn (modular addition, palindromes, counting, sorting) are left out.
pub fn base_mixture() -> Vec<&'static str> {
    vec![
        "caesar-1",
        "caesar-3",
        "caesar-7",
        "caesar-10",
        "next-1",
        "rotate-1",
        "reverse",
        "uppercase",
        "swap-case",
        "table-a",
        "table-b",
        "which-is-larger",
        "which-is-longer",
        "starts-with-vowel",
    ]
}

/// FNV-1a, 64 bit: a hash that is the same on every machine and every run.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Combine a seed with a name hash (splitmix64 finaliser), so nearby seeds give unrelated streams.
fn mix(seed: u64, hash: u64) -> u64 {
    let mut z = (seed ^ hash).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
