//! A small, strict CBOR (RFC 8949) decoder for the structures attestation evidence uses:
//! COSE_Sign1 envelopes and the Nitro attestation document inside them.
//!
//! It borrows byte and text strings from the input, accepts indefinite-length arrays and maps
//! (recent Nitro Secure Modules write the document as one) but not indefinite-length strings,
//! refuses nesting deeper than [`MAX_DEPTH`], and never reserves more memory than the input could fill, so
//! arbitrary bytes cost at most a small multiple of their own size to reject. Start with
//! [`decode`].

use std::fmt;

/// Deepest nesting of arrays, maps and tags accepted. Attestation documents nest three deep.
pub const MAX_DEPTH: usize = 16;

/// One decoded data item. Strings borrow from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Unsigned(u64),
    /// A negative integer, stored as `-1 - n` would be: `Negative(n)` means `-1 - n`.
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
    Undefined,
    /// Floats and other simple values; kept only so that they can be reported.
    Other(u8),
}

/// Why bytes are not a CBOR item we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for CborError {}

/// Decodes exactly one item that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, CborError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.item(0)?;
    if d.pos != input.len() {
        return Err(d.err("trailing bytes after the item"));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, reason: &'static str) -> CborError {
        CborError { offset: self.pos, reason }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len()).ok_or_else(|| self.err("item runs past the end"))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The argument of an initial byte: the length, count or value it announces.
    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| self.err("short argument"))?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| self.err("short argument"))?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| self.err("short argument"))?),
            31 => return Err(self.err("indefinite-length strings are not accepted")),
            _ => return Err(self.err("reserved additional information")),
        })
    }

    /// Consumes the break byte that ends an indefinite-length item, if it comes next.
    fn at_break(&mut self) -> Result<bool, CborError> {
        match self.input.get(self.pos) {
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(self.err("indefinite-length item has no break")),
        }
    }

    fn len(&mut self, info: u8) -> Result<usize, CborError> {
        let n = self.argument(info)?;
        usize::try_from(n).map_err(|_| self.err("length does not fit in memory"))
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        Ok(match major {
            0 => Value::Unsigned(self.argument(info)?),
            1 => Value::Negative(self.argument(info)?),
            2 => {
                let n = self.len(info)?;
                Value::Bytes(self.take(n)?)
            }
            3 => {
                let n = self.len(info)?;
                let start = self.pos;
                let raw = self.take(n)?;
                Value::Text(std::str::from_utf8(raw).map_err(|_| CborError { offset: start, reason: "text string is not UTF-8" })?)
            }
            4 if info == 31 => {
                let mut items = Vec::new();
                while !self.at_break()? {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 if info == 31 => {
                let mut entries = Vec::new();
                while !self.at_break()? {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            4 => {
                let n = self.len(info)?;
                // Every element takes at least one byte, so the remaining input bounds the count.
                let mut items = Vec::with_capacity(n.min(self.input.len() - self.pos));
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.len(info)?;
                let mut entries = Vec::with_capacity(n.min((self.input.len() - self.pos) / 2));
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            6 => {
                let tag = self.argument(info)?;
                Value::Tag(tag, Box::new(self.item(depth + 1)?))
            }
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                23 => Value::Undefined,
                24 => Value::Other(self.take(1)?[0]),
                25 => {
                    self.take(2)?;
                    Value::Other(25)
                }
                26 => {
                    self.take(4)?;
                    Value::Other(26)
                }
                27 => {
                    self.take(8)?;
                    Value::Other(27)
                }
                31 => return Err(self.err("unexpected break")),
                n if n < 20 => Value::Other(n),
                _ => return Err(self.err("reserved simple value")),
            },
        })
    }
}

impl<'a> Value<'a> {
    /// The value under text key `key` in a map, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| matches!(k, Value::Text(t) if *t == key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the item's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Unsigned(_) | Value::Negative(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::Text(_) => "text string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tag(..) => "tag",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
            Value::Undefined => "undefined",
            Value::Other(_) => "simple value",
        }
    }
}

/// Appends the head of a definite-length item of major type `major` and argument `n`, in the
/// shortest form (the canonical encoding COSE's Sig_structure needs).
pub fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Appends a byte string.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a text string.
pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes() {
        let mut b = Vec::new();
        write_head(&mut b, 5, 2);
        write_text(&mut b, "a");
        write_bytes(&mut b, &[1, 2, 3]);
        write_text(&mut b, "n");
        write_head(&mut b, 0, 70000);
        let v = decode(&b).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Bytes(&[1, 2, 3])));
        assert_eq!(v.get("n"), Some(&Value::Unsigned(70000)));
    }

    #[test]
    fn refuses_what_it_must() {
        // Truncated byte string, indefinite array, trailing byte, huge declared array.
        assert_eq!(decode(&[0x43, 1, 2]).unwrap_err().reason, "item runs past the end");
        assert_eq!(decode(&[0x5f, 0x41, 0, 0xff]).unwrap_err().reason, "indefinite-length strings are not accepted");
        assert_eq!(decode(&[0x9f, 0x01]).unwrap_err().reason, "indefinite-length item has no break");
        assert_eq!(decode(&[0xbf, 0x61, b'a', 0x01, 0xff]).unwrap().get("a"), Some(&Value::Unsigned(1)));
        assert_eq!(decode(&[0x01, 0x01]).unwrap_err().reason, "trailing bytes after the item");
        assert_eq!(decode(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err().reason, "item runs past the end");
        let deep = vec![0x81u8; 100];
        assert_eq!(decode(&deep).unwrap_err().reason, "nested too deeply");
        assert_eq!(decode(&[0x62, 0xff, 0xfe]).unwrap_err().reason, "text string is not UTF-8");
    }
}
