//! What the signed-knock listener (`crate::spa::listen`) does to itself
//! before it reads a datagram: take the descriptors root handed it, leave
//! root (chroot(2) into an empty directory, then its own user's gid and
//! uid), and enter the system's sandbox: seccomp(2) on Linux, capsicum's
//! cap_enter(2) on FreeBSD, pledge(2) on OpenBSD. After that it can read
//! and send on the descriptors it holds, and little else.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Take descriptor `n`, which the parent left open across exec(2) for
/// this process: it must be open, and is owned from here on (a second
/// call for the same `n` is refused by the caller keeping a list).
pub fn inherited(n: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    if n < 3 {
        return Err(io::Error::other(format!(
            "descriptor {n} is not one handed over"
        )));
    }
    // SAFETY: F_GETFD only reads the descriptor table; it fails with EBADF
    // for a descriptor that is not open.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is open (checked just above), was left open by the
    // parent for this process alone, and nothing else in this process
    // owns it: `spa::listen` takes each number once, at its start, before
    // anything else could open a descriptor of that number.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Close every descriptor from 3 up but `keep`: whatever the daemon
/// inherited without close-on-exec (from its own parent) is not the
/// listener's to hold. At the listener's start, before anything of its
/// own is open.
pub fn close_others(keep: &[i32]) {
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 {
        1024
    } else {
        max.min(1 << 16) as i32
    };
    for fd in (3..max).filter(|fd| !keep.contains(fd)) {
        // SAFETY: called first thing in the listener, when no Rust object
        // owns a descriptor from 3 up (std opens none before main), and
        // those in `keep` are left alone; close(2) of a descriptor that
        // is not open fails with EBADF and changes nothing.
        unsafe { libc::close(fd) };
    }
}

/// A user's uid and gid, from the password database.
pub fn user(name: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of the struct (integers
    // and null pointers); getpwnam_r fills it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: `c` is NUL-terminated; `pw`, `buf` (with its true length)
    // and `found` are valid for writes for the call, and the strings
    // getpwnam_r points `pw` at live in `buf`, which outlives the reads
    // below (only the two integers are read).
    let r =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    if found.is_null() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such user"));
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

/// chroot(2) into `dir`, then become `uid`/`gid` with no other groups;
/// fails unless root is gone for good (setuid(0) must fail after).
pub fn leave_root(dir: &Path, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    rustix::process::chroot(dir)?;
    rustix::process::chdir("/")?;
    let groups = [gid];
    // SAFETY: `groups` holds one gid and lives across the call. setgroups
    // takes its count as size_t on Linux and int on the BSDs.
    if unsafe { libc::setgroups(1 as _, groups.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setgid and setuid take plain integers.
    if unsafe { libc::setgid(gid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; this call must fail.
    if uid != 0 && unsafe { libc::setuid(0) } != -1 {
        return Err(io::Error::other(
            "setuid(0) still works after dropping root",
        ));
    }
    Ok(())
}

/// Enter the sandbox; returns its name for the log.
#[cfg(target_os = "linux")]
pub fn confine() -> io::Result<&'static str> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    // What the listener's loop needs: poll, read and write on what it
    // holds, the clock, memory, and its own end.
    let calls = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_ppoll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        libc::SYS_clock_gettime,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_getrandom,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    let rules = calls.iter().map(|c| (*c, Vec::new())).collect();
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| io::Error::other("no seccomp filter for this architecture"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(io::Error::other)?;
    let prog: BpfProgram = filter.try_into().map_err(io::Error::other)?;
    seccompiler::apply_filter(&prog).map_err(io::Error::other)?;
    Ok("seccomp")
}

#[cfg(target_os = "freebsd")]
pub fn confine() -> io::Result<&'static str> {
    // SAFETY: cap_enter takes no argument; from here on the process can
    // only use the descriptors it holds.
    if unsafe { libc::cap_enter() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok("capsicum")
}

#[cfg(target_os = "openbsd")]
pub fn confine() -> io::Result<&'static str> {
    let promises = c"stdio";
    // SAFETY: `promises` is a static NUL-terminated string; a null
    // execpromises leaves exec's promises as they are (exec is not
    // promised, so the process cannot exec anyway).
    if unsafe { libc::pledge(promises.as_ptr(), std::ptr::null()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok("pledge")
}

/// No sandbox here (macOS, others): the listener runs unprivileged and
/// chrooted only.
#[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")))]
pub fn confine() -> io::Result<&'static str> {
    Ok("none")
}
