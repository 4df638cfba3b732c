//! Helpers shared by the tests of this crate and of the crates above it (feature `test-util`).

use std::path::Path;

use tempfile::TempDir;

/// A scratch directory for one test. Prefers `/dev/shm`, where fsync costs nothing, so that
/// tests doing thousands of commits stay fast; `DAAS_TEST_TMPDIR` overrides the location.
/// Panics if no writable directory can be had: a test cannot run without one.
pub fn scratch() -> TempDir {
    if let Some(dir) = std::env::var_os("DAAS_TEST_TMPDIR") {
        return tempfile::tempdir_in(dir).expect("DAAS_TEST_TMPDIR is writable");
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("the system temp dir is writable")
}
