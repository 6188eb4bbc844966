//! The tiny fixture model with its codec and the fixture examples, encoded with the llama3 template.

use std::path::Path;

use candle_core::{DType, Device};

use loracycle::eval::read_jsonl;
use loracycle::model::template::EncodedExample;
use loracycle::model::weights::read_config;
use loracycle::model::{Llama, Template, TextCodec};

pub const FIX: &str = "tests/fixtures";

pub fn setup(dtype: DType) -> (Llama, TextCodec, Vec<EncodedExample>) {
    let dir = Path::new(FIX).join("tiny");
    let cfg = read_config(&dir).unwrap();
    let codec = TextCodec::load(&dir, Template::Llama3, &cfg).unwrap();
    let model = Llama::load(&dir, dtype, &Device::Cpu).unwrap();
    let enc = read_jsonl(&Path::new(FIX).join("data.jsonl"))
        .unwrap()
        .iter()
        .map(|e| {
            codec
                .encode_example(e.system.as_deref(), &e.prompt, &e.answer)
                .unwrap()
        })
        .collect();
    (model, codec, enc)
}
