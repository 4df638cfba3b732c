//! Value sealing: AES-256-GCM under data keys (DEKs) that a [`KeyProvider`] wraps.
//!
//! Layout of a sealed value (see docs/design.md, "Sealed value"):
//! `0x01 | dek_id u32 BE | nonce [12] | ciphertext | tag [16]`. The associated data is built by
//! the caller (the engine) and names the key, the revision and the record's metadata, so a
//! ciphertext moved to another key or revision fails to open. Start with [`Sealer`].

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

/// First byte of a value sealed with AES-256-GCM.
pub const FORMAT_AES_GCM: u8 = 1;
/// First byte of a value stored in the clear (danger-named benchmark mode only).
pub const FORMAT_PLAIN: u8 = 0;
/// Bytes a sealed value adds to its plaintext: format, DEK id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 4 + NONCE_LEN + 16;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// NIST SP 800-38D allows 2^32 encryptions under one key with random 96-bit nonces; we rotate
/// at a quarter of that by default.
pub const DEFAULT_ROTATE_AFTER: u64 = 1 << 30;

/// A 256-bit data key in memory, wiped when dropped.
pub type DataKey = Zeroizing<[u8; 32]>;

/// Where key-encryption keys come from. The store asks it to wrap fresh DEKs and to unwrap
/// stored ones; it never sees the KEK itself. TEE providers (Nitro, SNP, TDX, SGX) implement
/// this in the tee crate; here live the key-file and ephemeral providers.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and status output, e.g. `key-file`.
    fn name(&self) -> String;
    /// Encrypts `dek` under the KEK. `context` is bound as associated data.
    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>>;
    /// Reverses [`KeyProvider::wrap`]; fails if the wrapped key or context was altered.
    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey>;
}

/// Fills a fresh 32-byte key from the operating system's CSPRNG.
pub fn random_key() -> Result<DataKey> {
    let mut k = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(&mut k[..]).map_err(|_| StoreError::Sealing("the system random source failed".into()))?;
    Ok(k)
}

fn aead_key(k: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, k).map(LessSafeKey::new).map_err(|_| StoreError::Sealing("invalid AES-256 key".into()))
}

/// AES-256-GCM with a random nonce: `nonce | ciphertext | tag`. Nonces come from the thread's
/// CSPRNG (ChaCha, seeded and periodically reseeded from the OS): as unpredictable as asking the
/// kernel each time, without a system call per value.
fn gcm_seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::Rng::fill(&mut rand::rng(), &mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
        .map_err(|_| StoreError::Sealing("encryption failed".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn gcm_open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let plain_len = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(plain_len);
    Some(buf)
}

/// A KEK kept in a file of its own (mode 0600), created on first start. This is the provider for
/// machines without a TEE; the file must live somewhere the host operator cannot read, or the
/// sealing protects only against a stolen data file.
pub struct KeyFileProvider {
    path: PathBuf,
    key: LessSafeKey,
}

impl fmt::Debug for KeyFileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFileProvider").field("path", &self.path).finish_non_exhaustive()
    }
}

impl KeyFileProvider {
    /// Loads the KEK at `path`, or creates it (32 random bytes, mode 0600) if it does not exist.
    /// Refuses a file that others can read, or that is not exactly 32 bytes.
    pub fn open_or_create(path: &Path) -> Result<Self> {
        let bytes: Zeroizing<Vec<u8>> = match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(StoreError::Sealing(format!(
                        "key file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
                        path.display()
                    )));
                }
                Zeroizing::new(std::fs::read(path)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_key()?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(&key[..])?;
                f.sync_all()?;
                tracing::info!(path = %path.display(), "created a new key-encryption key file");
                Zeroizing::new(key.to_vec())
            }
            Err(e) => return Err(e.into()),
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Sealing(format!("key file {} must hold exactly 32 bytes, found {}", path.display(), bytes.len())))?;
        let key = Zeroizing::new(key);
        Ok(KeyFileProvider { path: path.to_owned(), key: aead_key(&key)? })
    }
}

const WRAP_AAD: &[u8] = b"daas.dek-wrap.v1";

fn wrap_aad(context: &[u8]) -> Vec<u8> {
    [WRAP_AAD, context].concat()
}

impl KeyProvider for KeyFileProvider {
    fn name(&self) -> String {
        "key-file".into()
    }

    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        gcm_seal(&self.key, &wrap_aad(context), &dek[..])
    }

    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        let plain = Zeroizing::new(gcm_open(&self.key, &wrap_aad(context), wrapped).ok_or_else(|| {
            StoreError::Sealing(format!(
                "a data key does not unwrap with the key in {} (wrong key file, or the data dir was altered)",
                self.path.display()
            ))
        })?);
        let k: [u8; 32] = plain.as_slice().try_into().map_err(|_| StoreError::Sealing("wrapped data key has the wrong length".into()))?;
        Ok(Zeroizing::new(k))
    }
}

/// A KEK that lives only in memory, for tests and throw-away stores. Data sealed under it cannot
/// be read by another process.
pub struct EphemeralKeyProvider {
    key: LessSafeKey,
}

impl fmt::Debug for EphemeralKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralKeyProvider")
    }
}

impl EphemeralKeyProvider {
    pub fn new() -> Result<Self> {
        Ok(EphemeralKeyProvider { key: aead_key(&*random_key()?)? })
    }
}

impl KeyProvider for EphemeralKeyProvider {
    fn name(&self) -> String {
        "ephemeral".into()
    }

    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        gcm_seal(&self.key, &wrap_aad(context), &dek[..])
    }

    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        let plain = Zeroizing::new(
            gcm_open(&self.key, &wrap_aad(context), wrapped).ok_or_else(|| StoreError::Sealing("data key does not unwrap".into()))?,
        );
        let k: [u8; 32] = plain.as_slice().try_into().map_err(|_| StoreError::Sealing("wrapped data key has the wrong length".into()))?;
        Ok(Zeroizing::new(k))
    }
}

/// A KEK handed over in memory by whoever owns it: the TEE's sealing key, above all. `name`
/// says where it came from in logs and status output (e.g. `tee-sealing:simulation`).
pub struct ProvidedKeyProvider {
    name: String,
    key: LessSafeKey,
}

impl fmt::Debug for ProvidedKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvidedKeyProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ProvidedKeyProvider {
    pub fn new(name: impl Into<String>, key: &DataKey) -> Result<Self> {
        Ok(ProvidedKeyProvider { name: name.into(), key: aead_key(key)? })
    }
}

impl KeyProvider for ProvidedKeyProvider {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        gcm_seal(&self.key, &wrap_aad(context), &dek[..])
    }

    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        let plain = Zeroizing::new(gcm_open(&self.key, &wrap_aad(context), wrapped).ok_or_else(|| {
            StoreError::Sealing(format!(
                "a data key does not unwrap with the {} key (another install's key, or the data dir was altered)",
                self.name
            ))
        })?);
        let k: [u8; 32] = plain.as_slice().try_into().map_err(|_| StoreError::Sealing("wrapped data key has the wrong length".into()))?;
        Ok(Zeroizing::new(k))
    }
}

/// First bytes of a sealed blob.
const BLOB_MAGIC: &[u8; 8] = b"DAASBLB1";

/// Seals `plain` for a file of its own (such as the cluster CA's key): a fresh data key wrapped
/// by `provider` under `context`, then AES-256-GCM with `context` as associated data. Layout:
/// `DAASBLB1 | wrapped_len u32 BE | wrapped key | nonce | ciphertext | tag`.
pub fn seal_blob(provider: &dyn KeyProvider, context: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let dek = random_key()?;
    let wrapped = provider.wrap(&dek, context)?;
    let body = gcm_seal(&aead_key(&dek)?, context, plain)?;
    let mut out = Vec::with_capacity(12 + wrapped.len() + body.len());
    out.extend_from_slice(BLOB_MAGIC);
    out.extend_from_slice(&(wrapped.len() as u32).to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reverses [`seal_blob`]; fails if the blob, its context or the provider's key differ.
pub fn open_blob(provider: &dyn KeyProvider, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = || StoreError::Sealing("the sealed file is damaged or was sealed for something else".into());
    let rest = sealed.strip_prefix(BLOB_MAGIC).ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (wrapped, body) = rest.split_at(len);
    let dek = provider.unwrap(wrapped, context)?;
    Ok(Zeroizing::new(gcm_open(&aead_key(&dek)?, context, body).ok_or_else(bad)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod blob_tests {
    use super::*;

    #[test]
    fn blobs_open_only_with_their_key_and_context() {
        let p = ProvidedKeyProvider::new("test", &random_key().unwrap()).unwrap();
        let sealed = seal_blob(&p, b"ctx", b"secret").unwrap();
        assert_eq!(&open_blob(&p, b"ctx", &sealed).unwrap()[..], b"secret");
        assert!(open_blob(&p, b"other", &sealed).is_err());
        let q = ProvidedKeyProvider::new("test", &random_key().unwrap()).unwrap();
        assert!(open_blob(&q, b"ctx", &sealed).unwrap_err().to_string().contains("does not unwrap"));
        let mut t = sealed.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(open_blob(&p, b"ctx", &t).is_err());
        assert!(open_blob(&p, b"ctx", &sealed[..10]).is_err());
    }
}

/// The context bound into a wrapped DEK: its id, so wrapped keys cannot be swapped.
pub fn dek_context(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

struct Dek {
    key: LessSafeKey,
    writes: AtomicU64,
}

/// Seals and opens values with the store's DEKs. Cheap to share; the active DEK changes on
/// rotation while older ones stay available for reads.
pub struct Sealer {
    enabled: bool,
    deks: RwLock<HashMap<u32, Arc<Dek>>>,
    active: RwLock<u32>,
    rotate_after: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("enabled", &self.enabled).field("active", &*self.active.read()).finish()
    }
}

impl Sealer {
    /// A sealer with no keys yet; add them with [`Sealer::install`].
    pub fn new(enabled: bool, rotate_after: u64) -> Self {
        Sealer { enabled, deks: RwLock::new(HashMap::new()), active: RwLock::new(0), rotate_after }
    }

    /// Makes DEK `id` available for opening, with `writes` values already sealed under it.
    pub fn install(&self, id: u32, key: &DataKey, writes: u64) -> Result<()> {
        let dek = Arc::new(Dek { key: aead_key(key)?, writes: AtomicU64::new(writes) });
        self.deks.write().insert(id, dek);
        Ok(())
    }

    /// Counts `n` more values as sealed under DEK `id` (a safety margin after a restart).
    pub fn add_writes(&self, id: u32, n: u64) {
        if let Some(d) = self.deks.read().get(&id) {
            d.writes.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Makes DEK `id` the one new values are sealed under.
    pub fn activate(&self, id: u32) {
        *self.active.write() = id;
    }

    pub fn active_id(&self) -> u32 {
        *self.active.read()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Values sealed under the active DEK so far.
    pub fn active_writes(&self) -> u64 {
        let id = self.active_id();
        self.deks.read().get(&id).map_or(0, |d| d.writes.load(Ordering::Relaxed))
    }

    /// True when the active DEK has sealed enough values that it must be replaced.
    pub fn needs_rotation(&self) -> bool {
        self.enabled && self.active_writes() >= self.rotate_after
    }

    /// Seals `plain` under the active DEK, binding `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        if !self.enabled {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(FORMAT_PLAIN);
            out.extend_from_slice(plain);
            return Ok(out);
        }
        let id = self.active_id();
        let dek = self.deks.read().get(&id).cloned().ok_or_else(|| StoreError::Sealing(format!("active data key {id} is not loaded")))?;
        dek.writes.fetch_add(1, Ordering::Relaxed);
        let mut header = [0u8; 5];
        header[0] = FORMAT_AES_GCM;
        header[1..5].copy_from_slice(&id.to_be_bytes());
        let full_aad = [&header[..], aad].concat();
        let body = gcm_seal(&dek.key, &full_aad, plain)?;
        let mut out = Vec::with_capacity(5 + body.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a sealed value; `None` means it does not authenticate under `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> std::result::Result<Vec<u8>, String> {
        match sealed.first() {
            Some(&FORMAT_AES_GCM) if self.enabled => {
                if sealed.len() < HEADER_LEN + 16 {
                    return Err("sealed value is truncated".into());
                }
                let id = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
                let dek = self.deks.read().get(&id).cloned().ok_or_else(|| format!("sealed under unknown data key {id}"))?;
                let full_aad = [&sealed[..5], aad].concat();
                gcm_open(&dek.key, &full_aad, &sealed[5..]).ok_or_else(|| "sealed value does not authenticate".to_string())
            }
            Some(&FORMAT_PLAIN) if !self.enabled => Ok(sealed[1..].to_vec()),
            Some(&FORMAT_PLAIN) => Err("value is stored unsealed in a sealed store".into()),
            Some(&FORMAT_AES_GCM) => Err("value is sealed but this store runs unsealed".into()),
            Some(other) => Err(format!("unknown value format {other}")),
            None => Err("value is empty".into()),
        }
    }

    /// The DEK id a sealed value names, if it is sealed.
    pub fn dek_of(sealed: &[u8]) -> Option<u32> {
        (sealed.len() >= 5 && sealed[0] == FORMAT_AES_GCM).then(|| u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let s = Sealer::new(true, DEFAULT_ROTATE_AFTER);
        s.install(1, &random_key().unwrap(), 0).unwrap();
        s.activate(1);
        s
    }

    #[test]
    fn round_trip_and_aad_binding() {
        let s = sealer();
        let sealed = s.seal(b"key-a@5", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(s.open(b"key-a@5", &sealed).unwrap(), b"hello");
        assert!(s.open(b"key-b@5", &sealed).is_err(), "moved to another key");
        assert!(s.open(b"key-a@6", &sealed).is_err(), "moved to another revision");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let s = sealer();
        let sealed = s.seal(b"k", b"some value").unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x40;
            assert!(s.open(b"k", &t).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn nonces_differ() {
        let s = sealer();
        let a = s.seal(b"k", b"v").unwrap();
        let b = s.seal(b"k", b"v").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rotation_threshold_counts_writes() {
        let s = Sealer::new(true, 3);
        s.install(1, &random_key().unwrap(), 0).unwrap();
        s.activate(1);
        for _ in 0..3 {
            assert!(!s.needs_rotation());
            s.seal(b"", b"x").unwrap();
        }
        assert!(s.needs_rotation());
    }

    #[test]
    fn key_file_is_created_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let p = KeyFileProvider::open_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let dek = random_key().unwrap();
        let wrapped = p.wrap(&dek, b"1").unwrap();
        let again = KeyFileProvider::open_or_create(&path).unwrap();
        assert_eq!(*again.unwrap(&wrapped, b"1").unwrap(), *dek);
        assert!(again.unwrap(&wrapped, b"2").is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyFileProvider::open_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_different_key_file_cannot_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyFileProvider::open_or_create(&dir.path().join("a")).unwrap();
        let b = KeyFileProvider::open_or_create(&dir.path().join("b")).unwrap();
        let wrapped = a.wrap(&random_key().unwrap(), b"1").unwrap();
        assert!(b.unwrap(&wrapped, b"1").is_err());
    }
}
