//! What `--device` / `--dtype` and a spec's `[model]` table ask for, before anything is opened:
//! plain data, so that the spec parser knows it without candle. Opening the device and resolving
//! the dtype are in `model::device`.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePref {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DevicePref {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DevicePref::Auto),
            "cpu" => Ok(DevicePref::Cpu),
            "cuda" => Ok(DevicePref::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DevicePref::Cuda(n)),
                _ => Err(format!(
                    "unknown device {s:?} (use cpu, cuda, cuda:N or auto)"
                )),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtypePref {
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl FromStr for DtypePref {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DtypePref::Auto),
            "f32" | "float32" => Ok(DtypePref::F32),
            "f16" | "float16" => Ok(DtypePref::F16),
            "bf16" | "bfloat16" => Ok(DtypePref::Bf16),
            _ => Err(format!("unknown dtype {s:?} (use f32, f16, bf16 or auto)")),
        }
    }
}
