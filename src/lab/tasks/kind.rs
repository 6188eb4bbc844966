//! What each task computes: an input generator and the rule that turns an input into its answer.
//! `answer` accepts only inputs of the shape the generator makes (so `Task::check` refuses
//! prompts that were never a task's), and returns `None` otherwise.

use super::inputs::{
    is_lowercase_word, is_vowel, letter, letter_except, letters, mixed_case, number_pair, pair,
    two_distinct_numbers, two_words_of_different_length, word,
};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Operands of `add-mod-n` are below this, whatever n: 400 possible inputs, so 80 training
/// examples cannot cover a test split (operands below n would give only n² inputs).
const ADD_OPERAND_BOUND: u32 = 20;

/// A transformation that copies its input with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOp {
    Reverse,
    Uppercase,
    SwapCase,
    Double,
    DropVowels,
    FirstToEnd,
    Mirror,
    EverySecond,
    ReverseUppercase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Shift every letter of a word forward by k (wrapping).
    Caesar(u8),
    /// Shift a single letter forward by k (wrapping).
    Next(u8),
    /// Map each letter through a fixed permutation of the alphabet.
    Table([u8; 26]),
    /// Rotate a word left by k.
    Rotate(usize),
    Copy(CopyOp),
    /// Sum of two numbers below `ADD_OPERAND_BOUND`, modulo n.
    AddMod(u32),
    Contains(char),
    Palindrome,
    Sorted,
    EvenLength,
    StartsWithVowel,
    Larger,
    Smaller,
    Longer,
    Shorter,
    Length,
    CountLetter(char),
    SortLetters,
    SortDescending,
    /// Alternate the letters of two words, then append what is left of the longer one.
    Interleave,
    /// Run-length encode: `aaabcc` → `3a1b2c`.
    RunLength,
}

impl Kind {
    /// Does the answer say yes or no?
    pub fn is_classification(&self) -> bool {
        matches!(
            self,
            Kind::Contains(_)
                | Kind::Palindrome
                | Kind::Sorted
                | Kind::EvenLength
                | Kind::StartsWithVowel
        )
    }

    pub fn input(&self, rng: &mut ChaCha8Rng) -> String {
        match self {
            Kind::Caesar(_) | Kind::Table(_) | Kind::SortLetters | Kind::SortDescending => {
                word(rng, 3, 12)
            }
            Kind::Next(_) => letter(rng).to_string(),
            Kind::Rotate(k) => word(rng, (k + 1).max(3), 12),
            Kind::Copy(op) => copy_input(*op, rng),
            Kind::AddMod(_) => format!(
                "{} {}",
                rng.random_range(0..ADD_OPERAND_BOUND),
                rng.random_range(0..ADD_OPERAND_BOUND)
            ),
            Kind::Contains(x) => {
                if rng.random_bool(0.5) {
                    let mut w = word(rng, 3, 11);
                    if !w.contains(*x) {
                        let at = rng.random_range(0..=w.len());
                        w.insert(at, *x);
                    }
                    return w;
                }
                loop {
                    let w = word(rng, 3, 12);
                    if !w.contains(*x) {
                        return w;
                    }
                }
            }
            Kind::Palindrome => palindrome_input(rng),
            Kind::Sorted => sorted_input(rng),
            Kind::EvenLength => word(rng, 3, 12),
            Kind::StartsWithVowel => {
                let want = rng.random_bool(0.5);
                loop {
                    let w = word(rng, 3, 10);
                    if w.starts_with(is_vowel) == want {
                        return w;
                    }
                }
            }
            Kind::Larger | Kind::Smaller => two_distinct_numbers(rng, 1000),
            Kind::Longer | Kind::Shorter => two_words_of_different_length(rng, 3, 8),
            Kind::Length => word(rng, 2, 14),
            Kind::CountLetter(x) => {
                let count = rng.random_range(0..=4);
                let filler = rng.random_range(3..=9);
                let mut chars: Vec<char> = (0..filler).map(|_| letter_except(rng, *x)).collect();
                for _ in 0..count {
                    let at = rng.random_range(0..=chars.len());
                    chars.insert(at, *x);
                }
                chars.into_iter().collect()
            }
            Kind::Interleave => format!("{} {}", word(rng, 2, 8), word(rng, 2, 8)),
            Kind::RunLength => run_length_input(rng),
        }
    }

    pub fn answer(&self, input: &str) -> Option<String> {
        let word_in = || is_lowercase_word(input).then_some(input);
        let yes_no = |b: bool| Some(if b { "yes" } else { "no" }.to_string());
        match self {
            Kind::Caesar(k) => Some(
                word_in()?
                    .bytes()
                    .map(|c| char::from(shift(c, *k)))
                    .collect(),
            ),
            Kind::Next(k) => {
                let w = word_in()?;
                (w.len() == 1).then(|| char::from(shift(w.as_bytes()[0], *k)).to_string())
            }
            Kind::Table(map) => Some(
                word_in()?
                    .bytes()
                    .map(|c| char::from(map[usize::from(c - b'a')]))
                    .collect(),
            ),
            Kind::Rotate(k) => {
                let w = word_in()?;
                let k = k % w.len();
                Some(format!("{}{}", &w[k..], &w[..k]))
            }
            Kind::Copy(op) => copy_answer(*op, input),
            Kind::AddMod(n) => {
                let (a, b) = number_pair(input)?;
                (a < ADD_OPERAND_BOUND && b < ADD_OPERAND_BOUND).then(|| ((a + b) % n).to_string())
            }
            Kind::Contains(x) => yes_no(word_in()?.contains(*x)),
            Kind::Palindrome => {
                let w = word_in()?;
                yes_no(w.bytes().eq(w.bytes().rev()))
            }
            Kind::Sorted => yes_no(word_in()?.as_bytes().is_sorted()),
            Kind::EvenLength => yes_no(word_in()?.len() % 2 == 0),
            Kind::StartsWithVowel => yes_no(word_in()?.starts_with(is_vowel)),
            Kind::Larger | Kind::Smaller => {
                let (a, b) = number_pair(input)?;
                let (ta, tb) = pair(input)?;
                let a_wins = (a > b) == (*self == Kind::Larger);
                (a != b).then(|| if a_wins { ta } else { tb }.to_string())
            }
            Kind::Longer | Kind::Shorter => {
                let (a, b) = pair(input)?;
                if !is_lowercase_word(a) || !is_lowercase_word(b) || a.len() == b.len() {
                    return None;
                }
                let a_wins = (a.len() > b.len()) == (*self == Kind::Longer);
                Some(if a_wins { a } else { b }.to_string())
            }
            Kind::Length => Some(word_in()?.len().to_string()),
            Kind::CountLetter(x) => Some(word_in()?.matches(*x).count().to_string()),
            Kind::SortLetters | Kind::SortDescending => {
                let mut b = word_in()?.as_bytes().to_vec();
                b.sort_unstable();
                if *self == Kind::SortDescending {
                    b.reverse();
                }
                String::from_utf8(b).ok()
            }
            Kind::Interleave => {
                let (a, b) = pair(input)?;
                if !is_lowercase_word(a) || !is_lowercase_word(b) {
                    return None;
                }
                let (a, b) = (a.as_bytes(), b.as_bytes());
                let mut out = String::new();
                for i in 0..a.len().max(b.len()) {
                    out.extend(a.get(i).map(|&c| char::from(c)));
                    out.extend(b.get(i).map(|&c| char::from(c)));
                }
                Some(out)
            }
            Kind::RunLength => {
                let w = word_in()?.as_bytes();
                let mut out = String::new();
                let mut start = 0;
                while start < w.len() {
                    let run = w[start..].iter().take_while(|&&c| c == w[start]).count();
                    out.push_str(&format!("{run}{}", char::from(w[start])));
                    start += run;
                }
                Some(out)
            }
        }
    }
}

fn shift(c: u8, k: u8) -> u8 {
    b'a' + (c - b'a' + k) % 26
}

fn copy_input(op: CopyOp, rng: &mut ChaCha8Rng) -> String {
    match op {
        // The answer doubles the input: keep it within 20 characters.
        CopyOp::Double | CopyOp::Mirror => word(rng, 3, 10),
        CopyOp::SwapCase => mixed_case(rng, 3, 12),
        _ => word(rng, 3, 12),
    }
}

fn copy_answer(op: CopyOp, input: &str) -> Option<String> {
    // Swap-case inputs are mixed case; every other copy takes a lowercase word.
    let valid = if op == CopyOp::SwapCase {
        !input.is_empty() && input.bytes().all(|c| c.is_ascii_alphabetic())
    } else {
        is_lowercase_word(input)
    };
    if !valid {
        return None;
    }
    let rev = || input.chars().rev().collect::<String>();
    let swap = |c: char| {
        if c.is_ascii_lowercase() {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        }
    };
    Some(match op {
        CopyOp::Reverse => rev(),
        CopyOp::Uppercase => input.to_ascii_uppercase(),
        CopyOp::SwapCase => input.chars().map(swap).collect(),
        CopyOp::Double => input.chars().flat_map(|c| [c, c]).collect(),
        CopyOp::DropVowels => input.chars().filter(|&c| !is_vowel(c)).collect(),
        CopyOp::FirstToEnd => format!("{}{}", &input[1..], &input[..1]),
        CopyOp::Mirror => format!("{input}{}", rev()),
        CopyOp::EverySecond => input.chars().skip(1).step_by(2).collect(),
        CopyOp::ReverseUppercase => rev().to_ascii_uppercase(),
    })
}

/// Half palindromes; of the rest, half are one letter away from a palindrome, so the rule has to
/// look at every pair.
fn palindrome_input(rng: &mut ChaCha8Rng) -> String {
    let half_len = rng.random_range(1..=5);
    let half = letters(rng, half_len);
    let middle = if rng.random_bool(0.5) {
        letters(rng, 1)
    } else {
        String::new()
    };
    let mut p: Vec<u8> = format!("{half}{middle}{}", half.chars().rev().collect::<String>()).into();
    if p.len() < 3 {
        p.push(p[0]);
    }
    if rng.random_bool(0.5) {
        return String::from_utf8(p).expect("ascii");
    }
    if rng.random_bool(0.5) {
        let at = rng.random_range(0..p.len() / 2);
        let old = char::from(p[at]);
        p[at] = letter_except(rng, old) as u8;
        return String::from_utf8(p).expect("ascii");
    }
    let len = rng.random_range(3..=11);
    letters(rng, len)
}

/// Half sorted; the rest are half random, half sorted with one adjacent pair swapped.
fn sorted_input(rng: &mut ChaCha8Rng) -> String {
    let len = rng.random_range(3..=8);
    let mut b = letters(rng, len).into_bytes();
    let roll = rng.random_range(0..4);
    if roll == 0 {
        return String::from_utf8(b).expect("ascii");
    }
    b.sort_unstable();
    if roll == 1 {
        let steps: Vec<usize> = (0..len - 1).filter(|&i| b[i] != b[i + 1]).collect();
        if !steps.is_empty() {
            let i = steps[rng.random_range(0..steps.len())];
            b.swap(i, i + 1);
        }
    }
    String::from_utf8(b).expect("ascii")
}

/// 2 to 5 runs of 1 to 4 equal letters, neighbours different.
fn run_length_input(rng: &mut ChaCha8Rng) -> String {
    let runs = rng.random_range(2..=5);
    let mut out = String::new();
    let mut prev = ' ';
    for _ in 0..runs {
        let c = letter_except(rng, prev);
        for _ in 0..rng.random_range(1..=4) {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// A permutation of the alphabet with no fixed point, derived from `seed` alone.
pub fn random_table(seed: u64) -> [u8; 26] {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut map: [u8; 26] = std::array::from_fn(|i| b'a' + i as u8);
    loop {
        map.shuffle(&mut rng);
        if map
            .iter()
            .enumerate()
            .all(|(i, &c)| usize::from(c - b'a') != i)
        {
            return map;
        }
    }
}
