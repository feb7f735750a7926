//! syslog(3) and daemon(3): the only `unsafe` outside the pf backend.
//! libc's syslog(3) serves OpenBSD, where it goes through sendsyslog(2)
//! and never waits; elsewhere `crate::syslog` writes to syslogd's socket
//! itself, without blocking.

use std::ffi::CString;
use std::io;
use std::sync::OnceLock;

use crate::config::Facility;

/// openlog(3) keeps the ident pointer: it must live as long as the process.
static IDENT: OnceLock<CString> = OnceLock::new();

fn facility(f: Facility) -> libc::c_int {
    match f {
        Facility::Auth => libc::LOG_AUTH,
        Facility::Authpriv => libc::LOG_AUTHPRIV,
        Facility::Daemon => libc::LOG_DAEMON,
        Facility::User => libc::LOG_USER,
        Facility::Local(n) => libc::LOG_LOCAL0 + (n as libc::c_int) * 8,
    }
}

/// openlog("pfknock", LOG_PID | LOG_NDELAY, facility).
pub fn openlog(f: Facility) {
    let ident = IDENT.get_or_init(|| CString::new("pfknock").expect("no NUL"));
    // SAFETY: `ident` is a NUL-terminated string in a static that is never
    // dropped or moved, so the pointer openlog keeps stays valid for the
    // life of the process; the other arguments are plain integers.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            facility(f),
        )
    };
}

/// syslog(3) one message at a priority (`libc::LOG_*`).
pub fn syslog(priority: libc::c_int, msg: &str) {
    let m = CString::new(msg.replace('\0', "?")).expect("NULs replaced");
    // SAFETY: the format is a static NUL-terminated "%s", so the message
    // is never read as a format; it is one NUL-terminated C string that
    // lives until the call returns.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), m.as_ptr()) };
}

/// Detach from the terminal: daemon(3) forks, the parent exits, the child
/// starts a new session with / as its directory and stdio on /dev/null.
/// Must be called before any thread is started.
#[cfg(not(target_os = "macos"))]
pub fn daemonize() -> io::Result<()> {
    // SAFETY: daemon(3) forks; the caller guarantees no other thread
    // exists yet, so the child inherits no lock held by a thread that is
    // gone. It takes two plain integers.
    if unsafe { libc::daemon(0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// launchd runs daemons in the foreground, and Rust's libc has no daemon(3)
/// binding for macOS: there `run` needs `-f`.
#[cfg(target_os = "macos")]
pub fn daemonize() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not on macOS: run in the foreground (-f), as launchd expects",
    ))
}

/// The effective user id: is pfknock running as root?
pub fn euid() -> libc::uid_t {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no
    // memory of ours.
    unsafe { libc::geteuid() }
}
