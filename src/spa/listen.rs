//! The listener: the process that reads signed-knock datagrams. Root
//! starts it (`pfknock spa-listen`, not for people) with the bound UDP
//! sockets and one end of a socketpair; before it reads anything it
//! leaves root for its own user in an empty chroot, and enters the
//! system's sandbox (`crate::sys_sandbox`). It verifies each datagram
//! (`Checker`) and passes on only what it admitted: service, address,
//! key, stamp and nonce, which root checks again. Refusals go to root as
//! sums, at most one line in `REPORT_EVERY`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::channel::{Msg, Setup, line};
use super::{Checker, Refused};

/// What root hands the listener on its command line.
#[derive(Debug)]
pub struct Args {
    /// The socketpair's descriptor.
    pub chan: i32,
    /// Each UDP socket's port and descriptor.
    pub udp: Vec<(u16, i32)>,
    pub user: String,
    pub root: PathBuf,
}

impl Args {
    /// From `spa-listen`'s flags; `--udp` is PORT:DESCRIPTOR.
    pub fn parse(
        chan: i32,
        udp: &[String],
        user: String,
        root: PathBuf,
    ) -> crate::error::Result<Args> {
        let udp = udp
            .iter()
            .map(|u| {
                let (p, fd) = u.split_once(':')?;
                Some((p.parse().ok()?, fd.parse().ok()?))
            })
            .collect::<Option<Vec<(u16, i32)>>>()
            .ok_or_else(|| {
                crate::error::Error::Usage("spa-listen: --udp PORT:DESCRIPTOR".into())
            })?;
        Ok(Args {
            chan,
            udp,
            user,
            root,
        })
    }
}

/// The least time between two lines of refusals.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Datagrams read from one socket in a turn, before the others get theirs.
const TURN: usize = 256;

fn fail(what: &str, e: impl std::fmt::Display) -> crate::error::Error {
    crate::error::Error::Other(format!("spa listener: {what}: {e}"))
}

/// The listener's life: leave root, confine, read the setup, then serve
/// until root closes its end.
pub fn main(a: &Args) -> crate::error::Result<()> {
    use crate::sys_sandbox as sb;
    let keep: Vec<i32> = std::iter::once(a.chan)
        .chain(a.udp.iter().map(|(_, fd)| *fd))
        .collect();
    sb::close_others(&keep);
    let chan = UnixStream::from(sb::inherited(a.chan).map_err(|e| fail("channel", e))?);
    let mut socks = Vec::new();
    for (port, fd) in &a.udp {
        let s = UdpSocket::from(sb::inherited(*fd).map_err(|e| fail("socket", e))?);
        s.set_nonblocking(true).map_err(|e| fail("socket", e))?;
        socks.push((*port, s));
    }
    let (uid, gid) = sb::user(&a.user).map_err(|e| fail(&format!("user {}", a.user), e))?;
    sb::leave_root(&a.root, uid, gid)
        .map_err(|e| fail(&format!("chroot {} as {}", a.root.display(), a.user), e))?;
    let sandbox = sb::confine().map_err(|e| fail("sandbox", e))?;
    let mut reader = std::io::BufReader::new(&chan);
    let mut l = String::new();
    reader
        .read_line(&mut l)
        .map_err(|e| fail("read the setup", e))?;
    let setup: Setup = serde_json::from_str(&l).map_err(|e| fail("setup", e))?;
    let mut checker = Checker::new(&setup.services, setup.not_before);
    checker.remember(&setup.record, crate::clock::now().max(0) as u64);
    let mut out = &chan;
    out.write_all(&line(&Msg::Ready {
        sandbox: sandbox.into(),
        uid,
    }))
    .map_err(|e| fail("channel", e))?;
    serve(&chan, &socks, &mut checker)
}

/// Refusals since the last report.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<Refused, u64>,
    last: Option<(Refused, IpAddr)>,
    sent: Option<Instant>,
}

impl Tally {
    /// The line due now, if any: the first refusal after a quiet
    /// `REPORT_EVERY` at once, the rest at most that often.
    fn due(&mut self, now: Instant) -> Option<Msg> {
        let (last, from) = self.last?;
        if self
            .sent
            .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return None;
        }
        self.sent = Some(now);
        self.last = None;
        Some(Msg::Refused {
            counts: std::mem::take(&mut self.counts).into_iter().collect(),
            last,
            from,
        })
    }
    fn wait(&self, now: Instant) -> Duration {
        match (self.last, self.sent) {
            (Some(_), Some(t)) => REPORT_EVERY.saturating_sub(now.duration_since(t)),
            (Some(_), None) => Duration::ZERO,
            _ => Duration::from_secs(3600),
        }
    }
}

fn serve(
    chan: &UnixStream,
    socks: &[(u16, UdpSocket)],
    checker: &mut Checker,
) -> crate::error::Result<()> {
    let mut tally = Tally::default();
    let mut buf = [0u8; 2048];
    let mut out = chan;
    loop {
        let mut fds = vec![chan.as_fd()];
        fds.extend(socks.iter().map(|(_, s)| s.as_fd()));
        let ready = crate::sys_unix::poll_readable(&fds, tally.wait(Instant::now()))
            .map_err(|e| fail("poll", e))?;
        if ready[0] {
            // Root closed its end (or wrote, which it never does): done.
            return Ok(());
        }
        for ((port, s), _) in socks.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            for _ in 0..TURN {
                let (n, from) = match s.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                let now = crate::clock::now().max(0) as u64;
                match checker.check(&buf[..n], from.ip(), *port, now) {
                    Ok(a) => out
                        .write_all(&line(&Msg::Admitted(a)))
                        .map_err(|e| fail("channel", e))?,
                    Err(r) => {
                        *tally.counts.entry(r).or_default() += 1;
                        tally.last = Some((r, super::canonical(from.ip())));
                    }
                }
            }
        }
        if let Some(m) = tally.due(Instant::now()) {
            out.write_all(&line(&m)).map_err(|e| fail("channel", e))?;
        }
    }
}
