//! Random inputs for the task generators: dictionary words, random letter strings, numbers.
//! Half the words come from a small word list and half are random letters, so a task can be
//! learned as a rule but not memorised as a lookup.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// Lowercase English words of 3 to 10 letters.
const WORDS: &[&str] = &[
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "house",
    "light",
    "music",
    "night",
    "ocean",
    "paper",
    "quiet",
    "robot",
    "sugar",
    "table",
    "water",
    "zebra",
    "bread",
    "chair",
    "dream",
    "earth",
    "flame",
    "grape",
    "heart",
    "juice",
    "knife",
    "lemon",
    "mouse",
    "north",
    "olive",
    "plant",
    "queen",
    "radio",
    "sheep",
    "tiger",
    "uncle",
    "voice",
    "whale",
    "young",
    "cat",
    "dog",
    "sun",
    "map",
    "pen",
    "box",
    "cup",
    "fox",
    "hat",
    "jam",
    "key",
    "log",
    "net",
    "owl",
    "pig",
    "rug",
    "sky",
    "toy",
    "van",
    "web",
    "yak",
    "zip",
    "bird",
    "cake",
    "door",
    "fish",
    "gold",
    "hill",
    "kite",
    "lamp",
    "milk",
    "nest",
    "park",
    "rain",
    "ship",
    "tree",
    "wind",
    "yarn",
    "garden",
    "window",
    "forest",
    "planet",
    "bridge",
    "castle",
    "dragon",
    "engine",
    "frozen",
    "jungle",
    "kitten",
    "ladder",
    "market",
    "number",
    "orange",
    "pencil",
    "rabbit",
    "silver",
    "ticket",
    "valley",
    "winter",
    "yellow",
    "blanket",
    "chicken",
    "diamond",
    "finger",
    "harvest",
    "journey",
    "kingdom",
    "lantern",
    "morning",
    "picture",
    "quarter",
    "rainbow",
    "station",
    "thunder",
    "village",
    "weather",
    "mountain",
    "elephant",
    "sandwich",
    "notebook",
    "triangle",
    "keyboard",
    "question",
    "umbrella",
    "whisper",
    "butterfly",
    "chocolate",
    "adventure",
    "telescope",
    "waterfall",
    "strawberry",
    "basketball",
    "lighthouse",
    "friendship",
];

pub fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'A' | 'E' | 'I' | 'O' | 'U')
}

/// A random lowercase letter.
pub fn letter(rng: &mut ChaCha8Rng) -> char {
    char::from(b'a' + rng.random_range(0..26u8))
}

/// A random lowercase letter other than `not`.
pub fn letter_except(rng: &mut ChaCha8Rng, not: char) -> char {
    loop {
        let c = letter(rng);
        if c != not {
            return c;
        }
    }
}

/// `len` random lowercase letters.
pub fn letters(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len).map(|_| letter(rng)).collect()
}

/// A word of `min..=max` letters: half the time from the word list, otherwise random letters.
pub fn word(rng: &mut ChaCha8Rng, min: usize, max: usize) -> String {
    let len = rng.random_range(min..=max);
    if rng.random_bool(0.5) {
        let fitting: Vec<&str> = WORDS.iter().copied().filter(|w| w.len() == len).collect();
        if let Some(w) = fitting.choose(rng) {
            return (*w).to_string();
        }
    }
    letters(rng, len)
}

/// Random letters in random case.
pub fn mixed_case(rng: &mut ChaCha8Rng, min: usize, max: usize) -> String {
    word(rng, min, max)
        .chars()
        .map(|c| {
            if rng.random_bool(0.5) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Two words of different lengths, space separated.
pub fn two_words_of_different_length(rng: &mut ChaCha8Rng, min: usize, max: usize) -> String {
    loop {
        let a = word(rng, min, max);
        let b = word(rng, min, max);
        if a.len() != b.len() {
            return format!("{a} {b}");
        }
    }
}

/// Two distinct numbers below `bound`, space separated.
pub fn two_distinct_numbers(rng: &mut ChaCha8Rng, bound: u32) -> String {
    let a = rng.random_range(0..bound);
    loop {
        let b = rng.random_range(0..bound);
        if a != b {
            return format!("{a} {b}");
        }
    }
}

/// Split `"a b"` into exactly two non-empty parts.
pub fn pair(input: &str) -> Option<(&str, &str)> {
    let (a, b) = input.split_once(' ')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then_some((a, b))
}

/// Parse `"a b"` as two plain decimal numbers (no sign, no leading `+`).
pub fn number_pair(input: &str) -> Option<(u32, u32)> {
    let (a, b) = pair(input)?;
    let parse = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_digit()) && s.len() <= 6 {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    Some((parse(a)?, parse(b)?))
}

/// True when `s` is non-empty lowercase ASCII letters only.
pub fn is_lowercase_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_lowercase())
}
