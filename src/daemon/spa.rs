//! Root's side of signed knocks: bind the UDP ports, start the listener
//! (`crate::spa::listen`, a process of its own, unprivileged and
//! sandboxed) and start it again when it dies, read what it says, and
//! check again what it admitted before the daemon acts on it
//! (`Daemon::signed`). No packet is parsed here.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::spa::channel::{self, Msg, Setup};
use crate::spa::{Admitted, Checker, Service};

use super::Level;

/// The empty directory the listener is chrooted to (created, mode 0555,
/// where it is missing): the BSDs' /var/empty; on Linux, which has none
/// (Debian's sshd uses /run/sshd), one in pfknock's runtime directory,
/// which its systemd unit makes writable where /var is not.
#[cfg(not(target_os = "linux"))]
pub const EMPTY_DIR: &str = "/var/empty";
#[cfg(target_os = "linux")]
pub const EMPTY_DIR: &str = "/run/pfknock/empty";

/// What the listener's side brought: something to act on, or to log.
#[derive(Debug)]
pub enum Heard {
    Admitted(Admitted),
    Line(Level, String),
}

struct Running {
    child: Child,
    chan: UnixStream,
    started: Instant,
}

/// The listener and what root keeps of it.
pub struct Spa {
    socks: Vec<(u16, UdpSocket)>,
    services: Vec<Service>,
    /// Root's own checks and replay record, kept over reloads and the
    /// listener's restarts.
    checker: Checker,
    not_before: u64,
    user: String,
    running: Option<Running>,
    buf: Vec<u8>,
    /// When to start the listener again, and how long the next wait is.
    again: Option<Instant>,
    backoff: Duration,
    /// A line for the log at the first turn (how the replay record began).
    said: Option<String>,
}

/// Where a clean stop keeps root's replay record: beside the pidfile.
pub fn record_path(pidfile: &std::path::Path) -> std::path::PathBuf {
    let mut p = pidfile.as_os_str().to_owned();
    p.push(".spa");
    std::path::PathBuf::from(p)
}

/// What the last daemon kept (and the file gone, so that a crash of this
/// one leaves none): the start it kept and its live nonces; `None` when
/// it kept nothing or a line is not one.
pub fn take_record(path: &std::path::Path) -> Option<Record> {
    let text = super::notes::read_trusted_own(path, 8 << 20);
    let _ = std::fs::remove_file(path);
    let mut lines = text?
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    let nb = lines.next()?.strip_prefix("not_before ")?.parse().ok()?;
    let hex = |s: &str, out: &mut [u8]| -> Option<()> {
        (s.len() == 2 * out.len()).then_some(())?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(())
    };
    let mut v = Vec::new();
    for l in lines {
        let mut f = l.split('\t');
        let (mut k, mut n) = ([0u8; 8], [0u8; 16]);
        hex(f.next()?, &mut k)?;
        hex(f.next()?, &mut n)?;
        v.push((k, n, f.next()?.parse().ok()?));
    }
    Some((nb, v))
}

/// A replay record as a clean stop keeps it: the start, and the live
/// nonces (key id, nonce, until).
pub type Record = (u64, Vec<crate::spa::Seen>);

fn bind(port: u16) -> std::io::Result<Vec<UdpSocket>> {
    use rustix::net::{AddressFamily, SocketType, bind, ipproto, socket, sockopt};
    let mut v = vec![UdpSocket::bind(("0.0.0.0", port))?];
    match socket(AddressFamily::INET6, SocketType::DGRAM, Some(ipproto::UDP)) {
        Ok(fd) => {
            sockopt::set_ipv6_v6only(&fd, true)?;
            let a = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
            bind(&fd, &a)?;
            v.push(UdpSocket::from(fd));
        }
        // No IPv6 on this host: IPv4 alone.
        Err(rustix::io::Errno::AFNOSUPPORT) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(v)
}

impl Spa {
    /// Bind every signed-knock port (as root, before anything else), if
    /// any service takes signed knocks. Stamps before `not_before` are
    /// refused: the replay record starts empty.
    pub fn bind(
        cfg: &crate::config::Config,
        services: &[Service],
        not_before: u64,
    ) -> crate::error::Result<Option<Spa>> {
        if services.is_empty() {
            return Ok(None);
        }
        crate::sys_sandbox::user(&cfg.spa_user).map_err(|e| {
            crate::error::Error::Usage(format!(
                "spa_user {}: {e}: the signed-knock listener runs as this user; create it \
                 (no shell, home {EMPTY_DIR}), or name another",
                cfg.spa_user
            ))
        })?;
        let mut socks = Vec::new();
        for s in services {
            if socks.iter().any(|(p, _)| *p == s.port) {
                continue;
            }
            for u in bind(s.port).map_err(|source| crate::error::Error::Device {
                path: format!("UDP port {} (spa.port of service {})", s.port, s.name),
                op: "bind",
                source,
            })? {
                socks.push((s.port, u));
            }
        }
        Ok(Some(Spa {
            socks,
            services: services.to_vec(),
            checker: Checker::new(services, not_before),
            ..Spa::empty(cfg, not_before)
        }))
    }

    /// Bind as `bind`, taking back the replay record a clean stop kept;
    /// without one, stamps up to one window after now are refused.
    pub fn resume(
        cfg: &crate::config::Config,
        services: &[Service],
        record: Option<Record>,
    ) -> crate::error::Result<Option<Spa>> {
        let now = crate::clock::now().max(0) as u64;
        let window = services.iter().map(|s| s.window).max().unwrap_or(0);
        let not_before = record.as_ref().map_or(now + window + 1, |r| r.0);
        let mut spa = Spa::bind(cfg, services, not_before)?;
        if let Some(s) = &mut spa {
            s.said = Some(match record {
                Some((_, live)) => {
                    s.checker.remember(&live, now);
                    format!(
                        "signed knocks: the replay record of the last run taken back ({} \
                         nonces still in their window)",
                        s.checker.remembered()
                    )
                }
                None => format!(
                    "signed knocks: no replay record of the last run (first start, a crash \
                     or a reboot): stamps before {not_before} (the next {}s) are refused",
                    not_before.saturating_sub(now)
                ),
            });
        }
        Ok(spa)
    }

    /// Keep root's replay record for the next start (a clean stop).
    pub fn save(&self, path: &std::path::Path) {
        let (nb, live) = self.checker.record(crate::clock::now().max(0) as u64);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut text = format!("not_before {nb}\n");
        for (k, n, until) in live {
            text.push_str(&format!("{}\t{}\t{until}\n", hex(&k), hex(&n)));
        }
        super::state::write_text(path, &text);
    }

    /// The listener's end of the channel, to poll.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref().map(|r| r.chan.as_fd())
    }

    /// When the listener is to be started again.
    pub fn due(&self) -> Option<Instant> {
        self.again
    }

    /// Start the listener if it is due.
    pub fn tick(&mut self, out: &mut Vec<Heard>) {
        if let Some(l) = self.said.take() {
            out.push(Heard::Line(Level::Notice, l));
        }
        if self.again.is_some_and(|t| t <= Instant::now()) {
            self.again = None;
            if let Err(e) = self.spawn() {
                out.push(Heard::Line(
                    Level::Err,
                    format!(
                        "signed knocks: cannot start the listener: {e}; trying again in {:?}",
                        self.backoff
                    ),
                ));
                self.retry();
            }
        }
    }

    fn retry(&mut self) {
        self.again = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let dir = std::path::Path::new(EMPTY_DIR);
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            if let Some(up) = dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(up)?;
            }
            std::fs::DirBuilder::new().mode(0o555).create(dir)?;
        }
        let (ours, theirs) = UnixStream::pair()?;
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("spa-listen")
            .arg("--chan")
            .arg(fd_no(theirs.as_fd()).to_string())
            .arg("--user")
            .arg(&self.user)
            .arg("--root")
            .arg(EMPTY_DIR);
        for (port, s) in &self.socks {
            cmd.arg("--udp").arg(format!("{port}:{}", fd_no(s.as_fd())));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The descriptors the listener gets stay open across its exec(2);
        // no other thread runs that could exec meanwhile.
        let handed: Vec<BorrowedFd<'_>> = std::iter::once(theirs.as_fd())
            .chain(self.socks.iter().map(|(_, s)| s.as_fd()))
            .collect();
        for fd in &handed {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        let child = cmd.spawn();
        for fd in &handed {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        let child = child?;
        drop(theirs);
        let mut w = &ours;
        std::io::Write::write_all(
            &mut w,
            &channel::line(&Setup {
                services: self.services.clone(),
                not_before: self.not_before,
                record: self.checker.record(crate::clock::now().max(0) as u64).1,
            }),
        )?;
        ours.set_nonblocking(true)?;
        self.buf.clear();
        self.running = Some(Running {
            child,
            chan: ours,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Read what the listener said; on its end, say why and start it
    /// again after a pause (longer each time it dies young).
    pub fn read(&mut self, now: i64, out: &mut Vec<Heard>) {
        let Some(r) = &mut self.running else {
            return;
        };
        let mut chunk = [0u8; 8192];
        let mut ended = None;
        for _ in 0..64 {
            match (&r.chan).read(&mut chunk) {
                Ok(0) => {
                    ended = Some(String::new());
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    ended = Some(format!("channel: {e}"));
                    break;
                }
            }
        }
        match channel::take_lines(&mut self.buf) {
            Ok(msgs) => msgs.into_iter().for_each(|m| self.heard(m, now, out)),
            Err(e) => ended = Some(e),
        }
        if let Some(why) = ended {
            self.end(&why, out);
        }
    }

    fn heard(&mut self, m: Msg, now: i64, out: &mut Vec<Heard>) {
        match m {
            Msg::Ready { sandbox, uid } => {
                let pid = self.running.as_ref().map_or(0, |r| r.child.id());
                let ports: Vec<String> = self.services.iter().map(|s| format!("{}/udp for {}", s.port, s.name)).collect();
                out.push(Heard::Line(
                    Level::Notice,
                    format!(
                        "signed knocks: listener pid {pid} ready on {} as {} (uid {uid}), chrooted to {EMPTY_DIR}, sandbox {sandbox}",
                        ports.join(", "),
                        self.user
                    ),
                ));
            }
            Msg::Admitted(a) => match self.checker.recheck(&a, now.max(0) as u64) {
                Ok(()) => out.push(Heard::Admitted(a)),
                Err(why) => out.push(Heard::Line(
                    Level::Warning,
                    format!(
                        "signed knock for {} from {} refused by root: {} (the listener admitted it)",
                        a.service,
                        a.sender,
                        why.words()
                    ),
                )),
            },
            Msg::Refused { counts, last, from } => out.push(Heard::Line(
                Level::Notice,
                format!(
                    "signed knocks: {}; the last from {from}: {}",
                    channel::refused_words(&counts),
                    last.words()
                ),
            )),
        }
    }

    /// The listener is gone (or not to be trusted): reap it, say how it
    /// ended, and start it again later.
    fn end(&mut self, why: &str, out: &mut Vec<Heard>) {
        let Some(mut r) = self.running.take() else {
            return;
        };
        let _ = r.child.kill();
        let status = r.child.wait();
        let mut err = String::new();
        if let Some(mut e) = r.child.stderr.take() {
            let _ = (&mut e).take(2048).read_to_string(&mut err);
        }
        if r.started.elapsed() > Duration::from_secs(60) {
            self.backoff = Duration::from_secs(1);
        }
        let status = match status {
            Ok(s) => describe(s),
            Err(e) => format!("cannot be waited for: {e}"),
        };
        let mut msg = format!(
            "signed knocks: the listener (pid {}) {status}",
            r.child.id()
        );
        for part in [why, err.trim()] {
            if !part.is_empty() {
                msg.push_str(&format!(": {}", crate::name::no_controls(part)));
            }
        }
        msg.push_str(&format!("; starting it again in {:?}", self.backoff));
        out.push(Heard::Line(Level::Err, msg));
        self.retry();
    }

    /// After a reload: when the services or their keys changed, bind what
    /// is new and start the listener again with them. Root's replay
    /// record stays.
    pub fn reload(
        this: &mut Option<Spa>,
        cfg: &crate::config::Config,
        services: &[Service],
        out: &mut Vec<Heard>,
    ) {
        if let Some(s) = this
            && s.services_same(services)
            && s.user == cfg.spa_user
        {
            return;
        }
        // A listener new to this daemon: its first window refuses every
        // stamp, as at a start.
        let window = services.iter().map(|s| s.window).max().unwrap_or(0);
        let fresh = crate::clock::now().max(0) as u64 + window + 1;
        let not_before = this.as_ref().map_or(fresh, |s| s.not_before);
        let mut keep = this.take();
        if let Some(s) = &mut keep {
            s.stop();
        }
        match Spa::bind_keeping(cfg, services, not_before, keep) {
            Ok(s) => *this = s,
            Err(e) => out.push(Heard::Line(
                Level::Err,
                format!("reload: signed knocks: {e}: none are taken"),
            )),
        }
    }

    fn services_same(&self, s: &[Service]) -> bool {
        serde_json::to_string(&self.services).ok() == serde_json::to_string(s).ok()
    }

    /// `bind`, taking over the sockets of ports still used and root's
    /// replay record.
    fn bind_keeping(
        cfg: &crate::config::Config,
        services: &[Service],
        not_before: u64,
        old: Option<Spa>,
    ) -> crate::error::Result<Option<Spa>> {
        let Some(mut old) = old else {
            return Spa::bind(cfg, services, not_before);
        };
        old.socks
            .retain(|(p, _)| services.iter().any(|s| s.port == *p));
        let mut n = match Spa::bind(
            cfg,
            &services
                .iter()
                .filter(|s| !old.socks.iter().any(|(p, _)| *p == s.port))
                .cloned()
                .collect::<Vec<_>>(),
            not_before,
        )? {
            Some(n) => n,
            None if services.is_empty() => return Ok(None),
            None => Spa::empty(cfg, not_before),
        };
        n.socks.append(&mut old.socks);
        n.services = services.to_vec();
        n.checker = old.checker.renewed(services);
        Ok(Some(n))
    }

    fn empty(cfg: &crate::config::Config, not_before: u64) -> Spa {
        Spa {
            socks: Vec::new(),
            services: Vec::new(),
            checker: Checker::new(&[], not_before),
            not_before,
            user: cfg.spa_user.clone(),
            running: None,
            buf: Vec::new(),
            again: Some(Instant::now()),
            backoff: Duration::from_secs(1),
            said: None,
        }
    }

    /// End the listener (the daemon stops, or reloads it).
    pub fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            // Closing our end ends it; kill in case it is stuck.
            drop(r.chan);
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

fn fd_no(fd: BorrowedFd<'_>) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// "exited 1", "was killed by signal 31 (SIGSYS: the sandbox refused a
/// system call)".
fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited {c}"),
        (None, Some(sig)) if sig == libc::SIGSYS => {
            format!("was killed by signal {sig} (SIGSYS: the sandbox refused a system call)")
        }
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".into(),
    }
}
