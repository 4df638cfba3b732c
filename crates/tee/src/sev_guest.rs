//! The one place that talks to a TEE through `ioctl`: `SNP_GET_DERIVED_KEY` on
//! `/dev/sev-guest`, which asks the AMD secure processor for a key derived from the chip's
//! secret and this guest's launch measurement. The structures follow `linux/sev-guest.h`.
//! This is the only module in the workspace that may use `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::TeeError;

/// `struct snp_derived_key_req`.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct DerivedKeyReq {
    pub root_key_select: u32,
    pub rsvd: u32,
    pub guest_field_select: u64,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub tcb_version: u64,
}

/// `struct snp_guest_request_ioctl`: message version, request and response addresses, and the
/// firmware's error code on the way back.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct GuestRequest {
    pub msg_version: u8,
    pub req_data: u64,
    pub resp_data: u64,
    pub exitinfo2: u64,
}

/// `_IOWR('S', 1, struct snp_guest_request_ioctl)`.
pub(crate) const SNP_GET_DERIVED_KEY: u64 = (3 << 30) | ((std::mem::size_of::<GuestRequest>() as u64) << 16) | ((b'S' as u64) << 8) | 1;

/// Guest fields mixed into the key: the guest policy (bit 0) and the launch measurement
/// (bit 3), so only this exact code under this policy gets this key.
pub(crate) const FIELDS_POLICY_AND_MEASUREMENT: u64 = (1 << 0) | (1 << 3);

/// Reads the 32-byte key out of a `MSG_KEY_RSP` (status u32, 28 reserved bytes, key).
pub(crate) fn parse_key_response(resp: &[u8; 64]) -> Result<Zeroizing<[u8; 32]>, TeeError> {
    let status = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]);
    if status != 0 {
        return Err(TeeError::Protocol(format!("the AMD secure processor refused the derived-key request (status {status:#x})")));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&resp[32..64]);
    Ok(key)
}

/// Asks `/dev/sev-guest` for the derived key bound to policy and measurement.
pub(crate) fn derived_key(device: &Path) -> Result<Zeroizing<[u8; 32]>, TeeError> {
    let f =
        std::fs::OpenOptions::new().read(true).write(true).open(device).map_err(|e| TeeError::device(device.display().to_string(), e))?;
    let req = DerivedKeyReq { guest_field_select: FIELDS_POLICY_AND_MEASUREMENT, ..Default::default() };
    let mut resp = Zeroizing::new([0u8; 64]);
    let mut ioc =
        GuestRequest { msg_version: 1, req_data: &req as *const DerivedKeyReq as u64, resp_data: resp.as_mut_ptr() as u64, exitinfo2: 0 };
    // SAFETY: `ioc` points at a live request and a 64-byte response buffer, both outliving the
    // call, with the layouts `linux/sev-guest.h` defines; the kernel writes only inside them.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), SNP_GET_DERIVED_KEY as libc::c_ulong, &mut ioc as *mut GuestRequest) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(TeeError::device(format!("SNP_GET_DERIVED_KEY on {} (firmware error {:#x})", device.display(), ioc.exitinfo2), err));
    }
    parse_key_response(&resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_header() {
        assert_eq!(std::mem::size_of::<DerivedKeyReq>(), 32);
        assert_eq!(std::mem::size_of::<GuestRequest>(), 32);
        assert_eq!(SNP_GET_DERIVED_KEY, 0xc020_5301);
    }

    #[test]
    fn key_responses() {
        let mut r = [0u8; 64];
        r[32..].copy_from_slice(&[7u8; 32]);
        assert_eq!(*parse_key_response(&r).unwrap(), [7u8; 32]);
        r[0] = 0x16;
        assert!(parse_key_response(&r).unwrap_err().to_string().contains("0x16"));
    }
}
