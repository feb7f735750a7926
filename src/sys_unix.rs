//! syslog(3) and detaching (fork(2)): the only `unsafe` outside the pf backend.
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

/// The detached child's word to the parent that waits for it.
pub struct Ready(std::os::fd::OwnedFd);

impl Ready {
    /// Tell the waiting parent to exit 0, then put stdio on /dev/null.
    /// Until this, the child's stderr is still the caller's, so an error
    /// between the fork and here reaches the terminal, and the parent,
    /// seeing the pipe close without a word, exits 1.
    pub fn done(self) -> io::Result<()> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        std::fs::File::from(self.0).write_all(b"1")?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        for fd in 0..=2 {
            // SAFETY: dup2(2) on two descriptors we own (`null` lives
            // until the end of this function; 0 to 2 are the standard
            // streams); it touches no memory of ours.
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Set once pfknock starts a thread; fork(2) is refused from then on.
static THREADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// std::thread::spawn, remembered, so that [`detach`] can tell. Every
/// thread pfknock starts goes through here (tests/architecture.rs checks).
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    THREADED.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::spawn(f)
}

/// Is any other thread running? What pfknock started, and on Linux what
/// the kernel counts.
#[cfg(not(target_os = "macos"))]
fn threaded() -> bool {
    if THREADED.load(std::sync::atomic::Ordering::SeqCst) {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Ok(d) = std::fs::read_dir("/proc/self/task") {
        return d.count() != 1;
    }
    false
}

/// Detach from the terminal as daemon(3) does (fork, the child starts a
/// new session with / as its directory), except that the parent does not
/// exit at once: it waits until the child calls [`Ready::done`], once its
/// pidfile holds its own pid, and exits 0, or exits 1 if the child dies
/// first. So when `pfknock run` returns, rc.d finds the daemon's pid.
/// Returns only in the child. Refused once another thread runs: after
/// fork(2) only the calling thread lives on in the child, and a lock held
/// by any other (the allocator's, stdio's) would stay locked forever.
#[cfg(not(target_os = "macos"))]
pub fn detach() -> io::Result<Ready> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if threaded() {
        return Err(io::Error::other("another thread is running: cannot fork"));
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2(2) writes two descriptors into the two-element array
    // it is given, which lives on this stack frame.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing
    // else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: `threaded()` found no other thread (pfknock starts none
    // but through `spawn`), so the child starts with every lock free.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(rd);
            // SAFETY: setsid(2) takes no arguments; chdir(2) gets a static
            // NUL-terminated path.
            if unsafe { libc::setsid() } == -1 || unsafe { libc::chdir(c"/".as_ptr()) } == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(Ready(wr))
        }
        _ => {
            use std::io::Read;
            drop(wr);
            let mut word = [0u8; 1];
            let mut f = std::fs::File::from(rd);
            let ready = loop {
                match f.read(&mut word) {
                    Ok(n) => break n == 1,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break false,
                }
            };
            // SAFETY: _exit(2) ends the process without running Rust
            // destructors, which belong to the child now (the pidfile's
            // removal among them).
            unsafe { libc::_exit(if ready { 0 } else { 1 }) }
        }
    }
}

/// launchd runs daemons in the foreground: on macOS `run` needs `-f`.
#[cfg(target_os = "macos")]
pub fn detach() -> io::Result<Ready> {
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

/// The effective uid of the process at the other end of a connected unix
/// socket (Linux: SO_PEERCRED; the BSDs and macOS: getpeereid(3)).
pub fn peer_uid(s: &std::os::unix::net::UnixStream) -> io::Result<libc::uid_t> {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `fd` is the open socket `s` borrows for this call; `cred`
        // and `len` are valid for writes and `len` holds `cred`'s size, so
        // the kernel writes at most that many bytes into it.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: `fd` is the open socket `s` borrows for this call; `uid`
        // and `gid` are valid for writes.
        if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// poll(2) for input: which of `fds` can be read (or hung up, or failed),
/// after waiting at most `timeout`. An interrupting signal returns at once
/// with nothing ready (the signal's own wake-up descriptor says the rest).
pub fn poll_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: std::time::Duration,
) -> io::Result<Vec<bool>> {
    use std::os::fd::AsRawFd;
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `p` is an array of `p.len()` initialized pollfd structures,
    // alive and exclusively borrowed for the call; poll(2) writes only
    // their `revents`. The descriptors are borrowed from owners that
    // outlive the call, so none is closed meanwhile.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(p.iter()
        .map(|x| x.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}
