//! The lab's character tokenizer: five special tokens, then one token per printable ASCII
//! character (100 in all). A BPE model with no merges splits text into characters; the Fuse
//! decoder joins them back without spaces. Saved as an ordinary `tokenizer.json`.

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::{AddedToken, Tokenizer};

/// The lab template's special tokens, in id order.
pub const BEGIN: &str = "<|begin|>";
pub const USER: &str = "<|user|>";
pub const ASSISTANT: &str = "<|assistant|>";
pub const END: &str = "<|end|>";
pub const PAD: &str = "<|pad|>";
pub const SPECIALS: [&str; 5] = [BEGIN, USER, ASSISTANT, END, PAD];

pub fn vocab_size() -> usize {
    SPECIALS.len() + (0x20u8..=0x7e).count()
}

pub fn build() -> tokenizers::Result<Tokenizer> {
    let mut vocab = Vocab::default();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).to_string(), i as u32);
    }
    for (i, c) in (0x20u8..=0x7e).enumerate() {
        vocab.insert((c as char).to_string(), (SPECIALS.len() + i) as u32);
    }
    let bpe = BPE::builder().vocab_and_merges(vocab, vec![]).build()?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_decoder(Some(Fuse::new()));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tok.add_special_tokens(specials)?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_round_trip_and_specials_are_single_tokens() {
        let tok = build().unwrap();
        assert_eq!(tok.get_vocab_size(true), 100);
        let enc = tok
            .encode("<|begin|><|user|>shift 3: ab<|assistant|>de<|end|>", false)
            .unwrap();
        let ids = enc.get_ids();
        assert_eq!(&ids[..2], &[0, 1]);
        // 's' is 0x73: 5 specials + (0x73 - 0x20)
        assert_eq!(ids[2], 5 + 0x73 - 0x20);
        assert_eq!(ids[ids.len() - 1], 3);
        assert_eq!(ids.len(), 2 + "shift 3: ab".len() + 1 + 2 + 1);
        assert_eq!(tok.decode(ids, true).unwrap(), "shift 3: abde");
        let space = tok.encode(" ", false).unwrap();
        assert_eq!(space.get_ids(), &[5]);
    }
}
