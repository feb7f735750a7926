//! Logging that never blocks the daemon.
//!
//! libc's syslog(3) writes to syslogd's datagram socket and waits when its
//! queue is full, so a syslogd that stops reading (hung, or a test's
//! socket) would stop the daemon: no more expiry, no self-heal, no SIGTERM
//! (measured: blocked in unix_wait_for_peer after about 30 lines). Here the
//! socket is non-blocking: a line that cannot be sent at once is dropped
//! and counted, and the count is logged as soon as a line goes through
//! again. Lines carry no time stamp; syslogd stamps them in local time.
//!
//! OpenBSD keeps libc's syslog(3): it goes through sendsyslog(2), which
//! needs no socket and does not wait (sendsyslog(2): the kernel queues and
//! drops while syslogd is away).
#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

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

struct State {
    facility: Facility,
    sock: Option<UnixDatagram>,
    dropped: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Start logging to `facility` (again, when the config names another).
pub fn open(facility: Facility) {
    if cfg!(target_os = "openbsd") {
        crate::sys_unix::openlog(facility);
    }
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        Some(s) => s.facility = facility,
        None => {
            *g = Some(State {
                facility,
                sock: None,
                dropped: 0,
            })
        }
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

/// Try once (reconnecting once if syslogd went away); never wait.
fn send(st: &mut State, line: &[u8]) -> bool {
    for _ in 0..2 {
        if st.sock.is_none() {
            st.sock = connect();
        }
        let Some(s) = &st.sock else { return false };
        match s.send(line) {
            Ok(_) => return true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => st.sock = None, // syslogd restarted: reconnect once
        }
    }
    false
}

/// Log `msg` at `priority` (`libc::LOG_*`), or drop and count it.
pub fn log(priority: libc::c_int, msg: &str) {
    if cfg!(target_os = "openbsd") {
        crate::sys_unix::syslog(priority, msg);
        return;
    }
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let st = g.get_or_insert(State {
        facility: Facility::Auth,
        sock: None,
        dropped: 0,
    });
    let fac = code(st.facility) as libc::c_int;
    let head = |p: libc::c_int| format!("<{}>pfknock[{}]: ", fac * 8 + p, std::process::id());
    if st.dropped > 0 {
        let note = format!(
            "{}{} log line(s) dropped: syslog was not taking them",
            head(libc::LOG_WARNING),
            st.dropped
        );
        if !send(st, note.as_bytes()) {
            st.dropped += 1;
            return;
        }
        st.dropped = 0;
    }
    // Keep a line within what every syslogd takes in one datagram.
    let mut line = head(priority);
    let mut end = msg.len().min(2000);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    line.push_str(&msg[..end]);
    if !send(st, line.as_bytes()) {
        st.dropped += 1;
    }
}
