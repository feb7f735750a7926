//! The running daemon's control socket: a command that changes the
//! firewall (`load`, `unload`, `allow`, `revoke`, `flush`, `expire`) asks
//! the daemon to do it, so that the daemon never undoes a deliberate
//! change and logs every event itself, in order.
//!
//! A unix stream socket, `/var/run/pfknock.sock` (Linux:
//! `/run/pfknock/pfknock.sock`) unless `-S` says otherwise, mode 0600, owned by the daemon's user (root). One request
//! per connection: the command sends its arguments and its config's
//! absolute path as one JSON object and closes its side; the daemon
//! answers with one JSON object (`Reply`) and closes. The daemon believes
//! only a peer whose effective uid is its own (or root), and a command
//! talks only to a socket owned by its own effective uid or root, and never
//! through a symbolic link. Where nothing listens (no daemon, or one that
//! died and left the file), the command does the work itself.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::verbs::Done;

/// Where the daemon listens when `-S` does not say: beside its pidfile,
/// in the runtime directory systemd makes for the unit on Linux
/// (`RuntimeDirectory=pfknock`; the unit's file system is read-only
/// elsewhere).
pub const DEFAULT_SOCKET: &str = if cfg!(target_os = "linux") {
    "/run/pfknock/pfknock.sock"
} else {
    "/var/run/pfknock.sock"
};
/// The largest request the daemon reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// The largest reply a command reads (a long `expire` list).
const MAX_REPLY: u64 = 64 * 1024 * 1024;
/// How long a command waits for the daemon (a reload of a large set).
const WAIT: Duration = Duration::from_secs(600);
/// How long before the command is told that it waits, where the daemon
/// has not said why (`HELD`).
const NOTE_AFTER: Duration = Duration::from_secs(3);

/// What a daemon writes first where it holds a command until its reading
/// of the sets is done (at its start, or after lost notifications:
/// minutes at a million authorizations), so that the command says so at
/// once, and only then: JSON's own white space, which a command that
/// does not know it reads past.
pub const HELD: u8 = b' ';

/// Why a command waits for the daemon's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The daemon said it holds the command until its reading is done.
    Held,
    /// No answer has begun within `NOTE_AFTER`.
    Slow,
}

/// What a command asks of the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The command's config file, absolute: the daemon acts only for its
    /// own.
    pub config: PathBuf,
    /// The command line after the program name, as the command got it.
    pub argv: Vec<String>,
}

/// The daemon's answer: what the command prints, and its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub pid: u32,
    pub done: Done,
    /// `None`: done. Otherwise the error, as the command would print it,
    /// and its exit status.
    pub error: Option<(String, i32)>,
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::Device {
        path: path.display().to_string(),
        op,
        source,
    }
}

/// Send `req` to the daemon listening on `socket`. `Ok(None)`: no daemon
/// listens there (the command then does the work itself). `waiting` runs
/// when the daemon says it holds the command (`Wait::Held`), and if no
/// answer has begun within `NOTE_AFTER` (`Wait::Slow`).
pub fn ask(socket: &Path, req: &Request, waiting: impl FnMut(Wait)) -> Result<Option<Reply>> {
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(socket, "control socket")(e)),
    };
    let me = crate::sys_unix::euid();
    if !meta.file_type().is_socket() {
        return Err(Error::Other(format!(
            "{}: not a socket: refusing to talk to it",
            socket.display()
        )));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::Other(format!(
            "{}: owned by uid {}, not by root: refusing to trust it",
            socket.display(),
            meta.uid()
        )));
    }
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED) | Some(libc::ENOENT)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io(socket, "connect")(e)),
    };
    let text = serde_json::to_vec(req).map_err(|e| Error::Other(format!("request: {e}")))?;
    s.set_write_timeout(Some(WAIT))
        .and_then(|()| s.write_all(&text))
        .and_then(|()| s.shutdown(std::net::Shutdown::Write))
        .map_err(io(socket, "send"))?;
    let mut answer = Vec::new();
    receive(&mut s, &mut answer, NOTE_AFTER, waiting).map_err(io(socket, "receive"))?;
    if answer.is_empty() {
        return Err(Error::Other(format!(
            "{}: the daemon closed the connection without an answer (it stopped or \
             failed): whether the command was done is not known",
            socket.display()
        )));
    }
    serde_json::from_slice(&answer).map(Some).map_err(|e| {
        Error::Other(format!(
            "{}: the daemon's answer cannot be read: {e}",
            socket.display()
        ))
    })
}

/// Read the daemon's whole answer into `answer` (at most `MAX_REPLY`).
/// When none of it came within `note`, `waiting` runs (`Wait::Slow`) and
/// the wait goes on, `WAIT` more; when the daemon says it holds the
/// command (`HELD` first), `waiting` runs at once (`Wait::Held`).
fn receive(
    s: &mut UnixStream,
    answer: &mut Vec<u8>,
    note: Duration,
    mut waiting: impl FnMut(Wait),
) -> std::io::Result<()> {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    let mut first = [0u8; 1];
    s.set_read_timeout(Some(note))?;
    let n = match read_first(s, &mut first) {
        Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => {
            waiting(Wait::Slow);
            s.set_read_timeout(Some(WAIT))?;
            read_first(s, &mut first)?
        }
        r => r?,
    };
    s.set_read_timeout(Some(WAIT))?;
    match (n, first[0]) {
        (0, _) => return Ok(()),
        (_, HELD) => waiting(Wait::Held),
        (_, b) => answer.push(b),
    }
    let room = MAX_REPLY.saturating_sub(answer.len() as u64);
    (&mut *s).take(room).read_to_end(answer).map(drop)
}

/// The answer's first byte, read again where a signal interrupted the
/// read (as `read_to_end`, which read it before, does).
fn read_first(s: &mut UnixStream, first: &mut [u8; 1]) -> std::io::Result<usize> {
    loop {
        match s.read(first) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Tell the command on `s` that the daemon holds it until its reading
/// of the sets is done (`HELD`).
pub fn write_held(s: &mut UnixStream) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(&[HELD]);
}

/// The daemon's end: a listening socket, removed when dropped (if the
/// path still names it).
pub struct Listener {
    pub sock: UnixListener,
    path: PathBuf,
    ino: u64,
}

impl Listener {
    /// Listen on `path`. A socket left by a daemon that died is replaced;
    /// one a live daemon answers on, or anything that is not a socket, is
    /// refused.
    pub fn bind(path: &Path) -> Result<Listener> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(Error::Other(format!(
                    "{}: exists and is not a socket: refusing to replace it",
                    path.display()
                )));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(Error::Other(format!(
                    "{}: another pfknock daemon answers on it: stop it first",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io(path, "remove stale socket"))?;
        }
        // Its directory, when it is missing (a runtime directory nobody
        // made): one level, root's, readable by all.
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(io(dir, "mkdir"))?;
        }
        let sock = UnixListener::bind(path).map_err(io(path, "bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(path, "chmod"))?;
        let ino = std::fs::symlink_metadata(path)
            .map_err(io(path, "stat"))?
            .ino();
        Ok(Listener {
            sock,
            path: path.to_owned(),
            ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Read one request from a connection, if its peer may ask.
pub fn read_request(s: &mut UnixStream) -> std::result::Result<Request, String> {
    let uid = crate::sys_unix::peer_uid(s).map_err(|e| format!("peer credentials: {e}"))?;
    let me = crate::sys_unix::euid();
    if uid != me && uid != 0 {
        return Err(format!("uid {uid} may not control the daemon"));
    }
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    s.take(MAX_REQUEST)
        .read_to_end(&mut text)
        .map_err(|e| format!("reading the request: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("a request that cannot be read: {e}"))
}

/// Answer a connection (errors on the way are the command's to see).
pub fn write_reply(s: &mut UnixStream, r: &Reply) {
    if let Ok(text) = serde_json::to_vec(r) {
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pfknock-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// An answer that comes late: the command says once that it waits,
    /// then takes the whole answer; one that comes at once, or begins at
    /// once and then stalls, is taken whole without a word.
    #[test]
    fn a_late_answer_is_waited_for_and_said_to_be() {
        let cases = [
            (300, 300, 100, true),
            (0, 0, 2000, false),
            (0, 300, 100, false),
        ];
        for (before, between, note, said) in cases {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            // At once: before the wait begins, however slow threads start.
            if before == 0 {
                b.write_all(b"{\"done\":").unwrap();
            }
            let daemon = crate::sys_unix::spawn(move || {
                if before > 0 {
                    std::thread::sleep(Duration::from_millis(before));
                    b.write_all(b"{\"done\":").unwrap();
                }
                std::thread::sleep(Duration::from_millis(between));
                b.write_all(b"[]}").unwrap();
            });
            let mut answer = Vec::new();
            let mut noted = Vec::new();
            receive(&mut a, &mut answer, Duration::from_millis(note), |w| {
                noted.push(w)
            })
            .unwrap();
            daemon.join().unwrap();
            assert_eq!(answer, b"{\"done\":[]}");
            let want = if said { vec![Wait::Slow] } else { vec![] };
            assert_eq!(noted, want, "{before} ms, then {between} ms");
        }
    }

    /// A daemon that holds the command says so first: the command says
    /// so at once (not after `NOTE_AFTER`), and the answer that follows
    /// is read whole; one that says so only after the note said the
    /// answer is late gives both. The answer then reads as any.
    #[test]
    fn a_held_command_is_said_to_wait_at_once() {
        for (late, want) in [(0, vec![Wait::Held]), (300, vec![Wait::Slow, Wait::Held])] {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let daemon = crate::sys_unix::spawn(move || {
                std::thread::sleep(Duration::from_millis(late));
                write_held(&mut b);
                std::thread::sleep(Duration::from_millis(200));
                write_reply(&mut b, &Reply::default());
            });
            let mut answer = Vec::new();
            let mut noted = Vec::new();
            let t = std::time::Instant::now();
            receive(&mut a, &mut answer, Duration::from_millis(100), |w| {
                noted.push((w, t.elapsed()))
            })
            .unwrap();
            daemon.join().unwrap();
            let got: Vec<Wait> = noted.iter().map(|(w, _)| *w).collect();
            assert_eq!(got, want, "held after {late} ms");
            let held = noted.last().unwrap().1;
            assert!(
                held < Duration::from_millis(late + 200),
                "at once: {held:?}"
            );
            let r: Reply = serde_json::from_slice(&answer).unwrap();
            assert_eq!(r, Reply::default());
        }
    }

    #[test]
    fn no_daemon_means_do_it_yourself() {
        let d = dir("none");
        let req = Request {
            config: "/etc/pfknock.toml".into(),
            argv: vec!["unload".into()],
        };
        assert_eq!(ask(&d.join("ctl.sock"), &req, |_| {}).unwrap(), None);
        // A socket nobody listens on any more (a daemon that died).
        let l = UnixListener::bind(d.join("stale.sock")).unwrap();
        drop(l);
        assert_eq!(ask(&d.join("stale.sock"), &req, |_| {}).unwrap(), None);
        // Not a socket: refused, not followed.
        std::fs::write(d.join("file"), "").unwrap();
        let e = ask(&d.join("file"), &req, |_| {}).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        std::os::unix::fs::symlink(d.join("stale.sock"), d.join("link")).unwrap();
        let e = ask(&d.join("link"), &req, |_| {}).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_request_goes_there_and_its_reply_comes_back() {
        let d = dir("rt");
        let p = d.join("ctl.sock");
        let l = Listener::bind(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second daemon on the same socket is refused.
        let e = Listener::bind(&p).err().unwrap().to_string();
        assert!(e.contains("another pfknock daemon"), "{e}");
        let server = crate::sys_unix::spawn(move || {
            // The refused second daemon's probe comes first: an empty
            // request, answered with an error as the daemon does.
            let (mut s, req) = loop {
                let (mut s, _) = l.sock.accept().unwrap();
                match read_request(&mut s) {
                    Ok(r) => break (s, r),
                    Err(e) => assert!(e.contains("cannot be read"), "{e}"),
                }
            };
            let mut done = Done::default();
            done.stderr.push(format!("did {}", req.argv.join(" ")));
            write_reply(
                &mut s,
                &Reply {
                    pid: 7,
                    done,
                    error: Some(("nope".into(), 1)),
                },
            );
            l
        });
        let req = Request {
            config: "/etc/pfknock.toml".into(),
            argv: vec!["revoke".into(), "198.18.0.7".into()],
        };
        let r = ask(&p, &req, |_| {}).unwrap().unwrap();
        assert_eq!(r.pid, 7);
        assert_eq!(r.done.stderr, ["did revoke 198.18.0.7"]);
        assert_eq!(r.error, Some(("nope".into(), 1)));
        let l = server.join().unwrap();
        drop(l);
        assert!(!p.exists(), "the socket goes with the daemon");
        // A stale socket is replaced by the next daemon.
        drop(UnixListener::bind(&p).unwrap());
        let l = Listener::bind(&p).unwrap();
        drop(l);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A daemon that ends the connection without an answer (it stopped,
    /// or died) leaves the command an error that says so, not a parse
    /// error of nothing.
    #[test]
    fn a_connection_ended_without_an_answer_says_so() {
        let d = dir("eof");
        let p = d.join("ctl.sock");
        let l = Listener::bind(&p).unwrap();
        let server = crate::sys_unix::spawn(move || {
            let (mut s, _) = l.sock.accept().unwrap();
            read_request(&mut s).unwrap();
            drop(s);
            l
        });
        let req = Request {
            config: "/etc/pfknock.toml".into(),
            argv: vec!["unload".into()],
        };
        let e = ask(&p, &req, |_| {}).unwrap_err().to_string();
        let want = "the daemon closed the connection without an answer (it stopped or failed): \
                    whether the command was done is not known";
        assert!(e.ends_with(want), "{e}");
        drop(server.join().unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
