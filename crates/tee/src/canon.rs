//! The canonical byte encoding that every signature in this crate covers: a list of fields,
//! each written as its length (u32, big-endian) followed by its bytes, the first field being a
//! domain-separation label. Two different lists never encode to the same bytes, and a signature
//! made for one purpose (a report) can never be replayed as another (simulated evidence).
//! docs/attestation.md, "Attestation report", spells out the field lists.

/// Encodes `domain` and then every field, each as `len u32 BE | bytes`.
pub fn encode(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + domain.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    push(&mut out, domain.as_bytes());
    for f in fields {
        push(&mut out, f);
    }
    out
}

/// Appends one field.
pub fn push(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are bounded far below 4 GiB (evidence is a few KiB); a longer one cannot be
    // encoded and is cut to a length that can never verify.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// Reads fields back from an encoding, with bounds checks.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The next field, or `None` if the input ends or a length runs past it.
    pub fn field(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        self.rest = rest;
        Some(field)
    }

    /// How many bytes are left unread.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_separates() {
        let e = encode("d", &[b"ab", b""]);
        assert_eq!(e, [0, 0, 0, 1, b'd', 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]);
        let mut r = Reader::new(&e);
        assert_eq!(r.field(), Some(&b"d"[..]));
        assert_eq!(r.field(), Some(&b"ab"[..]));
        assert_eq!(r.field(), Some(&b""[..]));
        assert!(r.is_empty());
        assert_ne!(encode("d", &[b"a", b"b"]), encode("d", &[b"ab"]));
        assert_eq!(Reader::new(&[0, 0, 0, 9, 1]).field(), None);
    }
}
