//! On-disk layout: redb tables and the byte encoding of a history record.
//!
//! Record (value of [`REVS`], keyed by `(main revision, sub revision)`):
//! `kind u8 | create i64 BE | version i64 BE | lease i64 BE | key_len u32 BE | key | sealed value`.
//! The associated data of the sealed value is [`aad`]: it names the revision and repeats the
//! record header and key, so none of them can be altered or swapped without the value failing
//! to open. See docs/design.md for the full key hierarchy.

use redb::TableDefinition;

use crate::index::{Entry, Rev};

/// History: every retained version of every key.
pub const REVS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("revs");
/// Leases: `ttl i64 BE | expiry unix ms i64 BE`.
pub const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
/// Data keys: `writes u64 BE | created unix ms i64 BE | wrapped key`.
pub const DEKS: TableDefinition<u32, &[u8]> = TableDefinition::new("deks");
/// Store-wide facts (format, ids, revisions, active DEK, sealing mode).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub const META_FORMAT: &str = "format";
pub const META_CLUSTER_ID: &str = "cluster_id";
pub const META_MEMBER_ID: &str = "member_id";
pub const META_CURRENT: &str = "current_revision";
pub const META_COMPACTED: &str = "compact_revision";
pub const META_SEALED: &str = "sealed";
pub const META_ACTIVE_DEK: &str = "active_dek";
pub const META_CHECKPOINT: &str = "checkpoint_ms";

/// Version of this layout; a store refuses data files of another version.
pub const FORMAT_VERSION: u64 = 1;

pub const KIND_PUT: u8 = 0;
pub const KIND_DELETE: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 8 + 4;

/// A decoded record; `sealed` still has to be opened.
#[derive(Debug)]
pub struct Record<'a> {
    pub tombstone: bool,
    pub create: i64,
    pub version: i64,
    pub lease: i64,
    pub key: &'a [u8],
    pub sealed: &'a [u8],
}

impl Record<'_> {
    pub fn entry(&self, rev: Rev) -> Entry {
        Entry { rev, tombstone: self.tombstone, create: self.create, version: self.version, lease: self.lease }
    }
}

/// Encodes a record header and key; the caller appends the sealed value.
pub fn encode_header(tombstone: bool, create: i64, version: i64, lease: i64, key: &[u8], extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + key.len() + extra);
    out.push(if tombstone { KIND_DELETE } else { KIND_PUT });
    out.extend_from_slice(&create.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Decodes a record; an error means the bytes are not a record (damaged file).
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, String> {
    if bytes.len() < HEADER {
        return Err("record is truncated".into());
    }
    let kind = bytes[0];
    if kind > KIND_DELETE {
        return Err(format!("record has unknown kind {kind}"));
    }
    let key_len = u32::from_be_bytes([bytes[25], bytes[26], bytes[27], bytes[28]]) as usize;
    let key_end = HEADER.checked_add(key_len).filter(|&e| e <= bytes.len()).ok_or("record key overruns the record")?;
    Ok(Record {
        tombstone: kind == KIND_DELETE,
        create: be_i64(&bytes[1..]),
        version: be_i64(&bytes[9..]),
        lease: be_i64(&bytes[17..]),
        key: &bytes[HEADER..key_end],
        sealed: &bytes[key_end..],
    })
}

/// The associated data sealed with a record's value: domain, revision, header and key.
pub fn aad(rev: Rev, header_and_key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(10 + 12 + header_and_key.len());
    a.extend_from_slice(b"daas.kv.v1");
    a.extend_from_slice(&rev.main.to_be_bytes());
    a.extend_from_slice(&rev.sub.to_be_bytes());
    a.extend_from_slice(header_and_key);
    a
}

/// The part of an encoded record that [`aad`] covers (header and key).
pub fn header_and_key<'a>(rec: &Record<'a>, raw: &'a [u8]) -> &'a [u8] {
    &raw[..HEADER + rec.key.len()]
}

pub fn encode_lease(ttl: i64, expiry_ms: i64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ttl.to_be_bytes());
    b[8..].copy_from_slice(&expiry_ms.to_be_bytes());
    b
}

pub fn decode_lease(b: &[u8]) -> Option<(i64, i64)> {
    (b.len() == 16).then(|| (be_i64(&b[..8]), be_i64(&b[8..])))
}

pub fn encode_dek(writes: u64, created_ms: i64, wrapped: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + wrapped.len());
    b.extend_from_slice(&writes.to_be_bytes());
    b.extend_from_slice(&created_ms.to_be_bytes());
    b.extend_from_slice(wrapped);
    b
}

pub fn decode_dek(b: &[u8]) -> Option<(u64, i64, &[u8])> {
    (b.len() > 16).then(|| (be_i64(&b[..8]) as u64, be_i64(&b[8..16]), &b[16..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let mut raw = encode_header(false, 3, 2, 77, b"/registry/pods/a", 4);
        raw.extend_from_slice(b"seal");
        let r = decode(&raw).unwrap();
        assert_eq!((r.tombstone, r.create, r.version, r.lease), (false, 3, 2, 77));
        assert_eq!(r.key, b"/registry/pods/a");
        assert_eq!(r.sealed, b"seal");
        assert_eq!(header_and_key(&r, &raw).len(), raw.len() - 4);
    }

    #[test]
    fn damaged_records_are_rejected() {
        let raw = encode_header(true, 0, 0, 0, b"k", 0);
        assert!(decode(&raw[..10]).is_err());
        let mut bad = raw.clone();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
        let mut long = raw.clone();
        long[28] = 200;
        assert!(decode(&long).is_err());
    }
}
