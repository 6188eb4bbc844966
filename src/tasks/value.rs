//! A dataset cell as Python would hold it after `datasets` decodes a row (str, int, float, bool,
//! None, list, dict in schema order), and Python's `str()` and `repr()` of it, which the paper's
//! prompts are built with.

use std::fmt::Write;

/// One value of a row: what a parquet cell, a JSON value or a YAML node becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// A struct or a JSON object, its fields in their order.
    Map(Vec<(String, Value)>),
    /// A type loracycle does not render (binary, dates, decimals): its name.
    Other(&'static str),
}

impl Value {
    /// The type's name as an error shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Other(k) => k,
        }
    }

    /// A field of a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's `str(value)`: a string as itself, anything else as its repr.
    pub fn py_str(&self) -> Result<String, &'static str> {
        match self {
            Value::Str(s) => Ok(s.clone()),
            other => {
                let mut out = String::new();
                other.py_repr(&mut out)?;
                Ok(out)
            }
        }
    }

    /// Python's `repr(value)`, appended to `out`; a value Python would not hold as these types
    /// is an error naming its kind.
    pub fn py_repr(&self, out: &mut String) -> Result<(), &'static str> {
        match self {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&py_float(*f)),
            Value::Str(s) => py_str_repr(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.py_repr(out)?;
                }
                out.push(']');
            }
            Value::Map(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_str_repr(k, out);
                    out.push_str(": ");
                    v.py_repr(out)?;
                }
                out.push('}');
            }
            Value::Other(kind) => return Err(kind),
        }
        Ok(())
    }
}

/// Python's `repr(float)`: the shortest digits that read back, in fixed notation for decimal
/// exponents from -4 to 15 and as `1e-05` / `1.5e+16` beyond.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let e_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{e_sign}{:02}", exp.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double one;
/// backslash, the quote, tab, newline and carriage return escaped; other characters Python
/// does not print (controls, format characters, separators but the space, surrogates, private
/// use, unassigned) as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let n = c as u32;
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable()` for one character.
fn py_printable(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::SpaceSeparator
    )
}

/// Python's `str.strip()`: Python's whitespace (which includes U+001C..U+001F and U+0085).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

pub fn py_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\x1c'..='\x1f' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}'
        | '\u{2000}'..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// A parquet cell as a value; nested groups keep their schema order.
pub fn from_parquet(f: &parquet::record::Field) -> Value {
    use parquet::record::Field as F;
    match f {
        F::Null => Value::Null,
        F::Bool(b) => Value::Bool(*b),
        F::Byte(i) => Value::Int(*i as i128),
        F::Short(i) => Value::Int(*i as i128),
        F::Int(i) => Value::Int(*i as i128),
        F::Long(i) => Value::Int(*i as i128),
        F::UByte(i) => Value::Int(*i as i128),
        F::UShort(i) => Value::Int(*i as i128),
        F::UInt(i) => Value::Int(*i as i128),
        F::ULong(i) => Value::Int(*i as i128),
        F::Float16(x) => Value::Float(f64::from(*x)),
        F::Float(x) => Value::Float(*x as f64),
        F::Double(x) => Value::Float(*x),
        F::Str(s) => Value::Str(s.clone()),
        F::Group(row) => Value::Map(
            row.get_column_iter()
                .map(|(k, v)| (k.clone(), from_parquet(v)))
                .collect(),
        ),
        F::ListInternal(list) => Value::List(list.elements().iter().map(from_parquet).collect()),
        F::MapInternal(map) => Value::Map(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match from_parquet(k) {
                        Value::Str(s) => s,
                        other => other.py_str().unwrap_or_default(),
                    };
                    (key, from_parquet(v))
                })
                .collect(),
        ),
        F::Decimal(_) => Value::Other("a decimal"),
        F::Bytes(_) => Value::Other("binary data"),
        F::Date(_) => Value::Other("a date"),
        F::TimeMillis(_) | F::TimeMicros(_) => Value::Other("a time of day"),
        F::TimestampMillis(_) | F::TimestampMicros(_) => Value::Other("a timestamp"),
    }
}

/// Reads JSON and YAML into values with mappings in document order (serde_json's own map
/// sorts its keys; Python's dict keeps them as written).
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON or YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i as i128))
    }
    fn visit_u64<E>(self, i: u64) -> Result<Value, E> {
        Ok(Value::Int(i as i128))
    }
    fn visit_i128<E>(self, i: i128) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::List(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut v: Vec<(String, Value)> = Vec::new();
        while let Some((k, x)) = map.next_entry::<Value, Value>()? {
            // A YAML key may be a number (`0: opa`); Python would keep it as an int, and the
            // paper's code concatenates it as text, so it is kept as its text.
            let key = match k {
                Value::Str(s) => s,
                other => other.py_str().map_err(serde::de::Error::custom)?,
            };
            // A later duplicate replaces the earlier value in place, as a Python dict does.
            match v.iter_mut().find(|(kk, _)| *kk == key) {
                Some(slot) => slot.1 = x,
                None => v.push((key, x)),
            }
        }
        Ok(Value::Map(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(v: &Value) -> String {
        let mut s = String::new();
        v.py_repr(&mut s).unwrap();
        s
    }

    #[test]
    fn floats_print_as_python_prints_them() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
            (0.1f32 as f64, "0.10000000149011612"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_and_containers_repr_as_python() {
        let v = Value::List(vec![
            Value::Str("it's".into()),
            Value::Str("say \"hi\"".into()),
            Value::Str("both ' and \"".into()),
            Value::Str("tab\there\\ é\u{a0}\u{200b}\u{7f}".into()),
            Value::Int(-3),
            Value::Bool(true),
            Value::Null,
            Value::Map(vec![
                ("b".into(), Value::Float(2.0)),
                ("a".into(), Value::List(vec![])),
            ]),
        ]);
        assert_eq!(
            repr(&v),
            r#"["it's", 'say "hi"', 'both \' and "', 'tab\there\\ é\xa0\u200b\x7f', -3, True, None, {'b': 2.0, 'a': []}]"#
        );
        assert_eq!(Value::Str("plain".into()).py_str().unwrap(), "plain");
        assert_eq!(Value::Other("binary data").py_str(), Err("binary data"));
    }

    #[test]
    fn python_strip_takes_python_whitespace() {
        assert_eq!(py_strip("\x1c\u{85} a b \u{3000}\n"), "a b");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }
}
