//! Logging that never blocks the daemon, and loses no line of a burst.
//!
//! libc's syslog(3) writes to syslogd's datagram socket and waits when its
//! queue is full, so a syslogd that stops reading (hung, or a test's
//! socket) would stop the daemon: no more expiry, no self-heal, no SIGTERM
//! (measured: blocked in unix_wait_for_peer after about 30 lines). Here the
//! socket is non-blocking, and a line that cannot be sent at once waits in
//! a queue of `QUEUE` lines, in order, sent as soon as syslogd takes lines
//! again: the daemon's loop calls `flush` and wakes every `RETRY` while
//! lines wait, and on Linux as soon as syslogd takes one
//! (`waiting_socket`; Linux lets only `net.unix.max_dgram_qlen`, 10 by
//! default, datagrams wait in the socket itself). The daemon holds a burst
//! back while many wait (`waiting`), unless syslogd takes none
//! (`STALLED`). Only past the queue are lines dropped and counted, and the
//! count is logged when there is room again.
//! Lines carry no time stamp; syslogd stamps them in local time.
//!
//! OpenBSD keeps libc's syslog(3): it goes through sendsyslog(2), which
//! needs no socket and does not wait (sendsyslog(2): the kernel queues and
//! drops while syslogd is away).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Facility;

/// The variable that points the log at another socket (tests).
pub const SOCKET_VAR: &str = "PFKNOCK_SYSLOG_SOCKET";

/// syslogd's sockets, in the order libc tries them on each system
/// (FreeBSD lib/libc/gen/syslog.c: logpriv for root, then log; glibc and
/// musl: /dev/log; macOS: /var/run/syslog).
fn sockets() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os(SOCKET_VAR) {
        return vec![p.into()];
    }
    let v: &[&str] = if cfg!(target_os = "freebsd") {
        &["/var/run/logpriv", "/var/run/log", "/dev/log"]
    } else if cfg!(target_os = "macos") {
        &["/var/run/syslog"]
    } else {
        &["/dev/log"]
    };
    v.iter().map(PathBuf::from).collect()
}

fn code(f: Facility) -> u8 {
    match f {
        Facility::Auth => 4,
        Facility::Authpriv => 10,
        Facility::Daemon => 3,
        Facility::User => 1,
        Facility::Local(n) => 16 + n,
    }
}

/// Lines that wait for syslogd, at most.
pub const QUEUE: usize = 10_000;
/// How often the daemon tries again while lines wait.
pub const RETRY: Duration = Duration::from_millis(5);

struct State {
    facility: Facility,
    sock: Option<UnixDatagram>,
    /// When connecting last failed: no syslogd was there.
    failed_at: Option<Instant>,
    /// Lines syslogd did not take yet, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// Lines dropped past the queue, not yet reported.
    dropped: u64,
    /// When syslogd last took a line.
    taken: Instant,
}

impl State {
    fn new(facility: Facility) -> State {
        State {
            facility,
            sock: None,
            failed_at: None,
            queue: VecDeque::new(),
            dropped: 0,
            taken: Instant::now(),
        }
    }

    /// `waiting_socket`, of this state.
    fn waiting_socket(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        if !cfg!(target_os = "linux") || (self.queue.is_empty() && self.dropped == 0) {
            return None;
        }
        self.sock.as_ref()?.as_fd().try_clone_to_owned().ok()
    }

    /// `waiting`, of this state.
    fn waiting(&self) -> usize {
        match self.taken.elapsed() < STALLED {
            true => self.queue.len(),
            false => 0,
        }
    }

    fn head(&self, p: libc::c_int) -> String {
        let fac = code(self.facility) as libc::c_int;
        format!("<{}>pfknock[{}]: ", fac * 8 + p, std::process::id())
    }

    /// Send what waits, in order, until syslogd takes no more; then the
    /// count of dropped lines, once there is room.
    fn flush(&mut self) {
        while let Some(line) = self.queue.front() {
            let line = line.clone();
            if !send(self, &line) {
                return;
            }
            self.queue.pop_front();
        }
        if self.dropped > 0 {
            let note = format!(
                "{}{} log line(s) dropped: syslog was not taking them",
                self.head(libc::LOG_WARNING),
                self.dropped
            );
            if send(self, note.as_bytes()) {
                self.dropped = 0;
            }
        }
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Start logging to `facility` (again, when the config names another).
pub fn open(facility: Facility) {
    if cfg!(target_os = "openbsd") {
        crate::sys_unix::openlog(libc::c_int::from(code(facility)) << 3);
    }
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        Some(s) => s.facility = facility,
        None => *g = Some(State::new(facility)),
    }
}

fn connect() -> Option<UnixDatagram> {
    sockets().into_iter().find_map(|p| {
        let s = UnixDatagram::unbound().ok()?;
        s.connect(&p).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    })
}

/// How long after a failed connect the next line tries again. Without a
/// syslogd, trying for every line cost a socket, a connect and a close
/// each: `pfknock flush` of 100,000, whose audit lines went nowhere, spent
/// more in them than in the flush.
const RECONNECT: Duration = Duration::from_millis(10);

/// Connect unless the last try failed less than `RECONNECT` ago.
fn reconnect(st: &mut State) {
    if st.failed_at.is_some_and(|t| t.elapsed() < RECONNECT) {
        return;
    }
    st.sock = connect();
    st.failed_at = st.sock.is_none().then(Instant::now);
}

/// Try once (reconnecting once if syslogd went away); never wait.
fn send(st: &mut State, line: &[u8]) -> bool {
    for _ in 0..2 {
        if st.sock.is_none() {
            reconnect(st);
        }
        let Some(s) = &st.sock else { return false };
        match s.send(line) {
            Ok(_) => {
                st.taken = Instant::now();
                return true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => st.sock = None, // syslogd restarted: reconnect once
        }
    }
    false
}

/// Log `msg` at `priority` (`libc::LOG_*`): sent now, or queued behind
/// the lines that wait, or (past `QUEUE`) dropped and counted.
pub fn log(priority: libc::c_int, msg: &str) {
    if cfg!(target_os = "openbsd") {
        crate::sys_unix::syslog(priority, msg);
        return;
    }
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let st = g.get_or_insert_with(|| State::new(Facility::Auth));
    // Keep a line within what every syslogd takes in one datagram.
    let mut line = st.head(priority);
    let mut end = msg.len().min(2000);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    line.push_str(&msg[..end]);
    st.flush();
    if st.queue.is_empty() && st.dropped == 0 && send(st, line.as_bytes()) {
        return;
    }
    // With no syslogd at all there is nothing to wait for.
    if st.queue.len() < QUEUE && st.sock.is_some() {
        st.queue.push_back(line.into_bytes());
    } else {
        st.dropped += 1;
    }
}

/// Is a syslogd there to take lines (connecting if need be)? OpenBSD's
/// sendsyslog(2) always is.
pub fn reachable() -> bool {
    if cfg!(target_os = "openbsd") {
        return true;
    }
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let st = g.get_or_insert_with(|| State::new(Facility::Auth));
    if st.sock.is_none() {
        reconnect(st);
    }
    st.sock.is_some()
}

/// Send the lines that wait, as far as syslogd takes them now.
pub fn flush() {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(st) = g.as_mut() {
        st.flush();
    }
}

/// A syslogd that took no line for this long while lines wait is not
/// taking them: nothing is held back for it (`waiting`).
pub const STALLED: Duration = Duration::from_secs(1);

/// How many lines wait in the queue for a syslogd that takes them: the
/// daemon holds a burst back while many do (`daemon::lines::Log`). None
/// once syslogd took no line for `STALLED`: a hung syslogd must not stop
/// the daemon, and lines past the queue are dropped and counted instead.
/// OpenBSD's sendsyslog(2) keeps none.
pub fn waiting() -> usize {
    if cfg!(target_os = "openbsd") {
        return 0;
    }
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map_or(0, State::waiting)
}

/// Where lines wait for a syslogd that is there: its socket, to wait
/// until it can be written to again (a copy of the descriptor). Linux
/// says so of a datagram socket whose peer's queue is full, and wakes the
/// sender when syslogd takes a line: the daemon sends the next at once
/// instead of at its next `RETRY` (the socket queues 10 lines: 2,000 a
/// second every 5 ms). Elsewhere `None`: the `RETRY` alone.
pub fn waiting_socket() -> Option<std::os::fd::OwnedFd> {
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()?.waiting_socket()
}

/// Do lines wait for a syslogd that is there (so that trying again in
/// `RETRY` makes sense)?
pub fn pending() -> bool {
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()
        .is_some_and(|st| st.sock.is_some() && (!st.queue.is_empty() || st.dropped > 0))
}

/// Before a command exits: keep sending what waits until it is all sent
/// or `limit` has passed (a syslogd that is not reading does not hold the
/// command up for longer).
pub fn drain(limit: Duration) {
    let end = Instant::now() + limit;
    while pending() && Instant::now() < end {
        flush();
        if pending() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The facility codes are syslog.h's, as openlog(3) takes them.
    #[test]
    fn facility_codes_are_the_systems() {
        for (f, want) in [
            (Facility::Auth, libc::LOG_AUTH),
            (Facility::Authpriv, libc::LOG_AUTHPRIV),
            (Facility::Daemon, libc::LOG_DAEMON),
            (Facility::User, libc::LOG_USER),
            (Facility::Local(0), libc::LOG_LOCAL0),
            (Facility::Local(7), libc::LOG_LOCAL7),
        ] {
            assert_eq!(libc::c_int::from(code(f)) << 3, want, "{f:?}");
        }
    }

    /// With no syslogd, a line does not try to connect again within
    /// `RECONNECT` of a failed try; after it, it does.
    #[test]
    fn without_a_syslogd_lines_do_not_each_try_to_connect() {
        let mut st = State::new(Facility::Auth);
        let failed = Instant::now();
        st.failed_at = Some(failed);
        assert!(!send(&mut st, b"<38>pfknock: a line"));
        assert!(st.sock.is_none());
        assert_eq!(st.failed_at, Some(failed), "not tried again");
        std::thread::sleep(RECONNECT);
        reconnect(&mut st);
        assert!(
            st.sock.is_some() || st.failed_at.is_some_and(|t| t > failed),
            "tried again after RECONNECT"
        );
    }

    /// Lines wait for a syslogd that took one within `STALLED`; for one
    /// that took none since, none are waited for.
    #[test]
    fn lines_wait_for_a_syslogd_that_takes_them_not_for_a_stalled_one() {
        let mut st = State::new(Facility::Auth);
        assert_eq!(st.waiting(), 0);
        st.queue
            .extend((0..3).map(|i| format!("line {i}").into_bytes()));
        assert_eq!(st.waiting(), 3);
        st.taken = Instant::now() - STALLED;
        assert_eq!(st.waiting(), 0, "stalled");
        st.taken = Instant::now() - STALLED / 2;
        assert_eq!(st.waiting(), 3);
    }

    /// The socket to wait on is there only while lines wait (on Linux).
    #[test]
    fn the_socket_is_waited_on_only_while_lines_wait() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        let mut st = State::new(Facility::Auth);
        assert!(st.waiting_socket().is_none(), "no socket");
        st.sock = Some(a);
        assert!(st.waiting_socket().is_none(), "nothing waits");
        st.queue.push_back(b"<38>pfknock: a line".to_vec());
        assert_eq!(st.waiting_socket().is_some(), cfg!(target_os = "linux"));
    }

    /// A burst far past the socket's own queue, to a reader that is slow
    /// at first: every line arrives, in order.
    #[test]
    fn a_burst_loses_no_line_and_keeps_its_order() {
        let dir = std::env::temp_dir().join(format!("pfknock-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        {
            let mut g = STATE.lock().unwrap();
            let mut st = State::new(Facility::Auth);
            let s = UnixDatagram::unbound().unwrap();
            s.connect(&path).unwrap();
            s.set_nonblocking(true).unwrap();
            st.sock = Some(s);
            *g = Some(st);
        }
        for i in 0..1000 {
            log(libc::LOG_INFO, &format!("line {i}"));
        }
        assert!(pending(), "the socket's queue is far shorter than 1000");
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        for _ in 0..2000 {
            if got.len() == 1000 {
                break;
            }
            flush();
            while let Ok(n) = rx.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                rx.set_nonblocking(true).unwrap();
            }
            rx.set_nonblocking(false).unwrap();
        }
        assert_eq!(got.len(), 1000);
        for (i, l) in got.iter().enumerate() {
            assert!(l.ends_with(&format!(": line {i}")), "{i}: {l}");
        }
        assert!(!pending());
        *STATE.lock().unwrap() = None;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
