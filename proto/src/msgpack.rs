//! MessagePack, the part g3proxy's protocols use (`route_query`'s queries and answers,
//! fluentd's forward protocol): nil, booleans, integers, floats, strings, binaries, arrays,
//! maps and extension values. Encoding writes the shortest form; decoding reads every form,
//! and bounds nesting and sizes by the input itself (a length beyond the input is an error,
//! so no input makes us allocate more than it holds).

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    /// An extension value: its type and bytes (fluentd's EventTime is type 0, 8 bytes).
    Ext(i8, Vec<u8>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The value under the string key `key`, in a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(n) => Some(*n as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("message cut short")]
    Truncated,
    #[error("unsupported type byte {0:#04x}")]
    Unsupported(u8),
    #[error("string is not UTF-8")]
    Utf8,
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Arrays and maps inside arrays and maps: g3's messages nest two levels.
pub const MAX_DEPTH: usize = 16;

/// Decodes one value from the start of `data`; answers it and the bytes it used.
pub fn decode(data: &[u8]) -> Result<(Value, usize), MsgpackError> {
    let mut reader = Reader { data, at: 0 };
    let value = reader.value(0)?;
    Ok((value, reader.at))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MsgpackError> {
        let end = self.at.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let bytes = self.data.get(self.at..end).ok_or(MsgpackError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn uint(&mut self, width: usize) -> Result<u64, MsgpackError> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    fn int(&mut self, width: usize) -> Result<i64, MsgpackError> {
        let unsigned = self.uint(width)?;
        let shift = 64 - 8 * width as u32;
        Ok(((unsigned << shift) as i64) >> shift)
    }

    /// A length, checked against what is left: every element takes at least one byte.
    fn len(&mut self, width: usize) -> Result<usize, MsgpackError> {
        let len = usize::try_from(self.uint(width)?).map_err(|_| MsgpackError::Truncated)?;
        match len <= self.data.len() - self.at {
            true => Ok(len),
            false => Err(MsgpackError::Truncated),
        }
    }

    fn string(&mut self, len: usize) -> Result<Value, MsgpackError> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| MsgpackError::Utf8)?;
        Ok(Value::Str(text.to_string()))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, MsgpackError> {
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, MsgpackError> {
        let mut entries = Vec::with_capacity(len.min(self.data.len() - self.at));
        for _ in 0..len {
            let key = self.value(depth + 1)?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00..=0x7f => Value::Int(i128::from(marker)),
            0x80..=0x8f => return self.map(usize::from(marker & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => return self.string(usize::from(marker & 0x1f)),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                Value::Bin(self.take(len)?.to_vec())
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Value::Int(i128::from(self.uint(1 << (marker - 0xcc))?)),
            0xd0..=0xd3 => Value::Int(i128::from(self.int(1 << (marker - 0xd0))?)),
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                return self.string(len);
            }
            0xdc | 0xdd => {
                let len = self.len(2 << (marker - 0xdc))?;
                return self.array(len, depth);
            }
            0xde | 0xdf => {
                let len = self.len(2 << (marker - 0xde))?;
                return self.map(len, depth);
            }
            0xe0..=0xff => Value::Int(i128::from(marker as i8)),
            0xd4..=0xd8 => {
                let kind = self.take(1)?[0] as i8;
                Value::Ext(kind, self.take(1 << (marker - 0xd4))?.to_vec())
            }
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                let kind = self.take(1)?[0] as i8;
                Value::Ext(kind, self.take(len)?.to_vec())
            }
            other => return Err(MsgpackError::Unsupported(other)),
        })
    }
}

/// Appends `value` in its shortest encoding.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(n) => encode_int(*n, out),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(text) => encode_str(text, out),
        Value::Bin(bytes) => {
            length(bytes.len(), [0xc4, 0xc5, 0xc6], out);
            out.extend_from_slice(bytes);
        }
        Value::Array(items) => {
            encode_array_len(items.len(), out);
            items.iter().for_each(|item| encode(item, out));
        }
        Value::Map(entries) => {
            encode_map_len(entries.len(), out);
            for (key, value) in entries {
                encode(key, out);
                encode(value, out);
            }
        }
        Value::Ext(kind, bytes) => encode_ext(*kind, bytes, out),
    }
}

// The same piece by piece, for a writer that encodes straight from its own data.

pub fn encode_str(text: &str, out: &mut Vec<u8>) {
    let len = text.len();
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        _ => length(len, [0xd9, 0xda, 0xdb], out),
    }
    out.extend_from_slice(text.as_bytes());
}

pub fn encode_uint(n: u64, out: &mut Vec<u8>) {
    encode_int(i128::from(n), out);
}

/// The head of an array of `len` items (the items follow).
pub fn encode_array_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=15 => out.push(0x90 | len as u8),
        _ => length(len, [0, 0xdc, 0xdd], out),
    }
}

/// The head of a map of `len` entries (each key, then its value, follow).
pub fn encode_map_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=15 => out.push(0x80 | len as u8),
        _ => length(len, [0, 0xde, 0xdf], out),
    }
}

pub fn encode_ext(kind: i8, bytes: &[u8], out: &mut Vec<u8>) {
    match bytes.len() {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        len => length(len, [0xc7, 0xc8, 0xc9], out),
    }
    out.push(kind as u8);
    out.extend_from_slice(bytes);
}

/// A length after the marker of its width: 8, 16 or 32 bits (`markers[0]` unused for arrays
/// and maps, which have no 8-bit form).
fn length(len: usize, markers: [u8; 3], out: &mut Vec<u8>) {
    if len <= 0xff && markers[0] != 0 {
        out.extend_from_slice(&[markers[0], len as u8]);
    } else if len <= 0xffff {
        out.push(markers[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(markers[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode_int(n: i128, out: &mut Vec<u8>) {
    if (0..=0x7f).contains(&n) {
        out.push(n as u8);
    } else if (-32..0).contains(&n) {
        out.push(n as i8 as u8);
    } else if n > 0 {
        let n = n.min(i128::from(u64::MAX)) as u64;
        match n {
            0..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    } else {
        let n = n.max(i128::from(i64::MIN)) as i64;
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: Value) {
        let mut out = Vec::new();
        encode(&value, &mut out);
        assert_eq!(decode(&out), Ok((value, out.len())));
    }

    #[test]
    fn values_round_trip() {
        for n in [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            -1,
            -32,
            -33,
            -40_000,
        ] {
            round_trip(Value::Int(n));
        }
        round_trip(Value::Str(String::new()));
        round_trip(Value::Str("x".repeat(31)));
        round_trip(Value::Str("x".repeat(300)));
        round_trip(Value::Bin(vec![7; 16]));
        round_trip(Value::Float(0.5));
        round_trip(Value::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2]));
        round_trip(Value::Ext(5, vec![9; 3]));
        round_trip(Value::Array((0..20).map(Value::Int).collect()));
        round_trip(Value::Map(vec![
            (Value::Str("id".into()), Value::Bin(vec![1; 16])),
            (
                Value::Str("nodes".into()),
                Value::Array(vec![Value::Str("a".into())]),
            ),
            (Value::Str("ttl".into()), Value::Int(30)),
            (Value::Str("ok".into()), Value::Bool(true)),
            (Value::Str("none".into()), Value::Nil),
        ]));
    }

    #[test]
    fn what_other_encoders_write_decodes() {
        // {"ttl": uint16 300, "w": float32 1.5, "n": int8 -100, "s": str8 "ab"}
        let data = [
            0x84, 0xa3, b't', b't', b'l', 0xcd, 0x01, 0x2c, 0xa1, b'w', 0xca, 0x3f, 0xc0, 0, 0,
            0xa1, b'n', 0xd0, 0x9c, 0xa1, b's', 0xd9, 2, b'a', b'b',
        ];
        let (value, used) = decode(&data).unwrap();
        assert_eq!(used, data.len());
        assert_eq!(value.get("ttl").and_then(Value::as_u64), Some(300));
        assert_eq!(value.get("w").and_then(Value::as_f64), Some(1.5));
        assert_eq!(value.get("n"), Some(&Value::Int(-100)));
        assert_eq!(value.get("s").and_then(Value::as_str), Some("ab"));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(decode(&[]), Err(MsgpackError::Truncated));
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(decode(&[0xc4, 5, 1]), Err(MsgpackError::Truncated));
        assert_eq!(decode(&[0xc1]), Err(MsgpackError::Unsupported(0xc1)));
        assert_eq!(decode(&[0xd7, 0, 1]), Err(MsgpackError::Truncated));
        assert_eq!(decode(&[0xa1, 0xff]), Err(MsgpackError::Utf8));
        assert_eq!(decode(&[0x91; 40]), Err(MsgpackError::TooDeep));
    }
}
