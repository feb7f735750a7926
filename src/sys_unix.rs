//! syslog(3), fork(2), getpeereid(3) and malloc_trim(3): the only `unsafe` outside the pf
//! backend, where rustix has no safe wrapper. The other process calls
//! (pipe2, setsid, chdir, dup2, geteuid, SO_PEERCRED, poll, gettid,
//! setpriority) go through rustix's safe ones.
//! libc's syslog(3) serves OpenBSD, where it goes through sendsyslog(2)
//! and never waits; elsewhere `crate::syslog` writes to syslogd's socket
//! itself, without blocking.

use std::ffi::CString;
use std::io;
use std::sync::OnceLock;

/// openlog(3) keeps the ident pointer: it must live as long as the process.
static IDENT: OnceLock<CString> = OnceLock::new();

/// openlog("pfknock", LOG_PID | LOG_NDELAY, facility), the facility as
/// syslog.h encodes it (`LOG_AUTH`: 4 << 3).
pub fn openlog(facility: libc::c_int) {
    let ident = IDENT.get_or_init(|| CString::new("pfknock").expect("no NUL"));
    // SAFETY: `ident` is a NUL-terminated string in a static that is never
    // dropped or moved, so the pointer openlog keeps stays valid for the
    // life of the process; the other arguments are plain integers.
    unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, facility) };
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
        std::fs::File::from(self.0).write_all(b"1")?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        rustix::stdio::dup2_stdin(&null)?;
        rustix::stdio::dup2_stdout(&null)?;
        rustix::stdio::dup2_stderr(&null)?;
        Ok(())
    }
}

/// Set once pfknock starts a thread; fork(2) is refused from then on.
static THREADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// std::thread::spawn, remembered, so that [`detach`] can tell. Every
/// thread pfknock starts goes through here (tests/architecture.rs checks).
///
/// The thread starts with every asynchronous signal blocked, so that the
/// kernel hands a signal sent to the process to the thread that serves
/// them. A signal may go to any thread that does not block it, and its
/// handler runs only once that thread leaves the kernel: the reader of the
/// sets, inside one netlink dump of a million elements, held SIGUSR2 up to
/// 60 ms before the loop heard of it (benches/signal-latency.sh). A fault
/// of the thread's own (SIGSEGV, SIGBUS, SIGFPE, SIGILL) still reaches it.
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    THREADED.store(true, std::sync::atomic::Ordering::SeqCst);
    let old = block_async_signals();
    let h = std::thread::spawn(f);
    set_signal_mask(&old);
    h
}

/// The calling thread yields its CPU to the daemon's loop first: nice 19
/// for this thread alone (Linux keeps a nice value per thread). The
/// reader of the sets calls it: at a million elements each of its dump
/// datagrams holds a CPU in the kernel for tens of milliseconds, the
/// kernel's collection of timed-out elements can hold the other for a
/// hundred, and the loop, woken by a signal, waited behind both
/// (benches/signal-latency.sh, SCHED=1). Elsewhere nothing: only the
/// nftables backend reads beside the loop, and on the BSDs a nice value
/// belongs to the whole process.
pub fn yield_to_loop() {
    #[cfg(target_os = "linux")]
    {
        // Best effort: a reading at the usual priority is still right.
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    }
}

/// Block every signal but the synchronous faults in this thread (a thread
/// it starts inherits the mask); the mask it had is returned.
fn block_async_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset/sigfillset
    // initialize before any other use; sigfillset, sigdelset and
    // pthread_sigmask only write the sets passed, which live on this
    // stack, and pthread_sigmask changes only the calling thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut old);
        libc::sigfillset(&mut all);
        for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut all, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

/// Give this thread the signal mask `m`.
fn set_signal_mask(m: &libc::sigset_t) {
    // SAFETY: `m` is an initialized set borrowed for the call;
    // pthread_sigmask reads it and changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, m, std::ptr::null_mut()) };
}

/// Is `sig` blocked in the calling thread?
#[cfg(test)]
fn blocked(sig: libc::c_int) -> bool {
    // SAFETY: `cur` is initialized by sigemptyset, then written by
    // pthread_sigmask (a null new set changes nothing) and read by
    // sigismember; all on this stack.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut cur);
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
        libc::sigismember(&cur, sig) == 1
    }
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
    if threaded() {
        return Err(io::Error::other("another thread is running: cannot fork"));
    }
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: `threaded()` found no other thread (pfknock starts none
    // but through `spawn`), so the child starts with every lock free.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(rd);
            rustix::process::setsid()?;
            rustix::process::chdir("/")?;
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
    rustix::process::geteuid().as_raw()
}

/// The effective uid of the process at the other end of a connected unix
/// socket (Linux: SO_PEERCRED; the BSDs and macOS: getpeereid(3)).
pub fn peer_uid(s: &std::os::unix::net::UnixStream) -> io::Result<libc::uid_t> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Ok(rustix::net::sockopt::socket_peercred(s)?.uid.as_raw())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use std::os::fd::AsRawFd;
        let fd = s.as_raw_fd();
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: `fd` is the open socket `s` borrows for this call; `uid`
        // and `gid` are valid for writes.
        if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// Give the heap's free pages back to the system. glibc keeps what is
/// freed in the middle of its heap, so after the start has read every set
/// (dumps taken until two agree, then dropped) the resident size would
/// stay at that peak for the daemon's life.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointer; it walks glibc's own heap
    // under glibc's locks and only releases pages no allocation holds.
    unsafe { libc::malloc_trim(0) };
}

/// Elsewhere the allocator returns what it can by itself.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

/// Have every thread allocate from the one heap, and every block of
/// 256 KiB or more mapped apart.
///
/// glibc gives a thread that allocates beside the main one an arena of
/// its own, and `malloc_trim` releases the free pages inside such an
/// arena but never its top, which the dynamic trim threshold (up to 64
/// MB) keeps. After the reader thread's dumps of a million elements that
/// was a fifth of the daemon for good (benches/churn.sh, side by side at
/// 980k held: 76 MB resident without, 56 MB with; at 200k, 25 and 17 MB).
///
/// glibc also raises the size from which it maps a block apart to that
/// of each mapped block freed (up to 32 MiB). A reading's vectors (12 or
/// 24 MB at a million) then come from the heap, and the B-tree nodes allocated
/// among them once they are freed keep their pages resident, sparsely
/// used. A fixed threshold keeps the heap for small blocks: a reading's
/// vectors are mapped, and unmapped when freed.
///
/// Called before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn one_heap() {
    // SAFETY: mallopt takes no pointer; it sets parameters of glibc's
    // allocator under its own lock. With no arena but the main one yet,
    // nothing is moved; the threshold applies to later allocations.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Elsewhere threads share what the allocator gives back.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn one_heap() {}

/// poll(2) for input: which of `fds` can be read (or hung up, or failed),
/// after waiting at most `timeout`. An interrupting signal returns at once
/// with nothing ready (the signal's own wake-up descriptor says the rest).
pub fn poll_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: std::time::Duration,
) -> io::Result<Vec<bool>> {
    Ok(poll_ready(fds, None, timeout)?.0)
}

/// `poll_readable`, and whether `out` (if given) can be written to (or
/// failed): one wait for both.
pub fn poll_ready(
    fds: &[std::os::fd::BorrowedFd<'_>],
    out: Option<std::os::fd::BorrowedFd<'_>>,
    timeout: std::time::Duration,
) -> io::Result<(Vec<bool>, bool)> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .chain(out.map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::OUT)))
        .collect();
    // poll(2)'s timeout is an int of milliseconds: a longer wait is cut
    // to that (24 days), and the loop waits again.
    let t = Timespec::try_from(timeout.min(std::time::Duration::from_millis(i32::MAX as u64)))
        .map_err(io::Error::other)?;
    match rustix::event::poll(&mut p, Some(&t)) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((vec![false; fds.len()], false)),
        Err(e) => return Err(e.into()),
    }
    let ready = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
    let writable = PollFlags::OUT | PollFlags::HUP | PollFlags::ERR;
    let r = p[..fds.len()].iter();
    let w = p
        .get(fds.len())
        .is_some_and(|x| x.revents().intersects(writable));
    Ok((r.map(|x| x.revents().intersects(ready)).collect(), w))
}

#[cfg(test)]
mod tests {
    use super::blocked;

    /// A datagram socket whose peer's queue is full is not writable,
    /// and becomes so once the peer reads (Linux: what the daemon waits
    /// on while log lines wait for syslogd).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_socket_is_writable_again_once_its_peer_reads() {
        use std::os::fd::AsFd;
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("pfknock-poll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rx = std::os::unix::net::UnixDatagram::bind(dir.join("s")).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.connect(dir.join("s")).unwrap();
        tx.set_nonblocking(true).unwrap();
        let sent = (0..100_000)
            .take_while(|_| tx.send(b"a line").is_ok())
            .count();
        assert!(sent < 100_000, "the peer's queue filled");
        let ms = Duration::from_millis(20);
        let (_, w) = super::poll_ready(&[], Some(tx.as_fd()), ms).unwrap();
        assert!(!w, "full: not writable");
        let mut buf = [0u8; 64];
        rx.recv(&mut buf).unwrap();
        let (_, w) = super::poll_ready(&[], Some(tx.as_fd()), ms).unwrap();
        assert!(w, "writable once a line is taken");
        assert!(tx.send(b"a line").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_started_thread_leaves_signals_to_the_one_that_serves_them() {
        let served = [libc::SIGUSR2, libc::SIGHUP, libc::SIGTERM, libc::SIGUSR1];
        assert!(served.iter().all(|s| !blocked(*s)), "the test's own thread");
        let (inside, fault) = super::spawn(move || (served.map(blocked), blocked(libc::SIGSEGV)))
            .join()
            .unwrap();
        assert_eq!(inside, [true; 4], "blocked in the started thread");
        assert!(!fault, "a fault of its own still reaches it");
        assert!(
            served.iter().all(|s| !blocked(*s)),
            "the caller's mask is as it was"
        );
    }

    /// The reader's thread runs at nice 19; the thread that started it
    /// (the loop) keeps its own.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_reader_yields_to_the_loop_and_the_loop_keeps_its_priority() {
        use rustix::process::getpriority_process;
        use rustix::thread::gettid;
        let own = getpriority_process(Some(gettid())).unwrap();
        let reader = super::spawn(|| {
            super::yield_to_loop();
            getpriority_process(Some(gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(reader, 19);
        assert_eq!(getpriority_process(Some(gettid())).unwrap(), own);
    }
}
