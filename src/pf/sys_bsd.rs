//! /dev/pf and ioctl(2) on FreeBSD, OpenBSD and macOS: the only `unsafe`
//! code of the pf backend. Everything else about a request (layout,
//! sizes, feedback) is decided in safe code before it gets here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use super::abi::Layout;
use super::marshal::{Device, get_i32};
use crate::error::{Error, Result};

pub const PATH: &str = "/dev/pf";

pub struct DevPf {
    file: File,
    layout: &'static Layout,
}

impl DevPf {
    pub fn open(write: bool, layout: &'static Layout) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(PATH)
            .map_err(|source| match source.raw_os_error() {
                // No device node, or no driver behind it.
                Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => Error::Other(format!(
                    "{PATH}: pf is not loaded (kldload pf on FreeBSD, pfctl -e)"
                )),
                _ => Error::Device {
                    path: PATH.into(),
                    op: "open",
                    source,
                },
            })?;
        Ok(DevPf { file, layout })
    }
}

impl Device for DevPf {
    fn ioctl(&mut self, request: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32> {
        let l = self.layout;
        if request == l.limit_request() {
            // DIOCGETLIMIT: a whole pfioc_limit, and no buffer.
            if ioc.len() != std::mem::size_of::<super::abi::pfioc_limit>() || !buf.is_empty() {
                return Err(libc::EINVAL);
            }
        } else if request == l.src_nodes_request() {
            // DIOCGETSRCNODES, asking only for the length: a whole
            // pfioc_src_nodes with psn_len 0 and no buffer, whatever the
            // caller put there.
            if ioc.len() != std::mem::size_of::<super::abi::pfioc_src_nodes>() || !buf.is_empty() {
                return Err(libc::EINVAL);
            }
            ioc.fill(0);
        } else {
            // Uphold what the kernel will assume, whatever the caller did:
            // the request is a DIOCR* table command carrying this OS's
            // pfioc_table, the header is a whole pfioc_table and the
            // buffer holds size * esize bytes.
            if l.table_command(request).is_none() || ioc.len() != l.ioc_size {
                return Err(libc::EINVAL);
            }
            let (size, esize) = (get_i32(ioc, l.io_size), get_i32(ioc, l.io_esize));
            let need = usize::try_from(size)
                .ok()
                .zip(usize::try_from(esize).ok())
                .and_then(|(s, e)| s.checked_mul(e));
            if need.is_none_or(|n| n > buf.len()) {
                return Err(libc::EINVAL);
            }
            let ptr = if buf.is_empty() {
                0u64
            } else {
                buf.as_mut_ptr() as u64
            };
            ioc[l.io_buffer..l.io_buffer + 8].copy_from_slice(&ptr.to_ne_bytes());
        }
        // SAFETY: one of three shapes, each checked above. `request` is
        // DIOCGETLIMIT and `ioc` an exclusively borrowed 8-byte struct
        // pfioc_limit, which is all the kernel reads and writes; or it is
        // DIOCGETSRCNODES and `ioc` an exclusively borrowed 16-byte struct
        // pfioc_src_nodes, zeroed here: with psn_len 0 the kernel only
        // counts the nodes and writes the length into psn_len, never
        // through psn_buf (pf_ioctl.c on all three); or
        // `request` is a DIOCR* request whose argument is a struct
        // pfioc_table of this OS's size (`Layout::table_command`), `ioc` is
        // exactly that many bytes (the layout is pinned by const
        // assertions), and its pfrio_buffer field points at `buf`,
        // exclusively borrowed for the duration of the call and at least
        // pfrio_size * pfrio_esize bytes long, which is all the kernel
        // copies in or out. The kernel keeps no pointer after the call.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as libc::c_ulong,
                ioc.as_mut_ptr(),
            )
        };
        if rc == -1 {
            Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(())
        }
    }
}

/// `net.pf.request_maxcount`: the most elements FreeBSD takes in one table
/// request. The kernel variable is a `u_long` (freebsd-src sys/netpfil/pf/
/// pf.c: `SYSCTL_ULONG(_net_pf, OID_AUTO, request_maxcount, CTLFLAG_RDTUN,
/// &pf_ioctl_maxcount, ...)`; net/pfvar.h: `extern u_long
/// pf_ioctl_maxcount`), read here into one; a kernel that exports 4 bytes
/// is read too. `None` when it cannot be read; the caller then keeps the
/// default.
#[cfg(target_os = "freebsd")]
pub fn request_maxcount() -> Option<usize> {
    let name = c"net.pf.request_maxcount";
    let mut v: libc::c_ulong = 0;
    let mut len = std::mem::size_of::<libc::c_ulong>();
    // SAFETY: `name` is a NUL-terminated string; `v` and `len` are live
    // locals, `len` holding the size of `v`, which is all sysctl writes
    // (it fails with ENOMEM rather than write more). No new value is set
    // (null pointer, length 0).
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            (&raw mut v).cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    match len {
        l if l == std::mem::size_of::<libc::c_ulong>() => usize::try_from(v).ok(),
        // A 4-byte value sits in the first bytes of `v`, in native order.
        4 => {
            let b = v.to_ne_bytes();
            Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        _ => None,
    }
}
