//! The few BCS shapes our Move structs use: fixed-width little-endian integers, 32-byte
//! addresses and ids, ULEB128-length-prefixed strings and byte vectors.

use sui_sdk_types::Address;

use crate::stake::DecodeError;

#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn address(&mut self, a: &Address) -> &mut Self {
        self.0.extend_from_slice(a.inner());
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let mut n = b.len() as u64;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(low);
                break;
            }
            self.0.push(low | 0x80);
        }
        self.0.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or_else(|| DecodeError("truncated".into()))?;
        self.0 = rest;
        Ok(*head)
    }

    pub fn address(&mut self) -> Result<Address, DecodeError> {
        Ok(Address::new(self.array()?))
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn uleb128(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.array::<1>()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("length prefix too long".into()))
    }

    pub fn bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = usize::try_from(self.uleb128()?).map_err(|_| DecodeError(format!("{what}: length out of range")))?;
        if n > self.0.len() {
            return Err(DecodeError(format!("{what}: truncated")));
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(s.to_vec())
    }

    pub fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        if self.0.is_empty() { Ok(()) } else { Err(DecodeError(format!("{} bytes left over", self.0.len()))) }
    }
}
