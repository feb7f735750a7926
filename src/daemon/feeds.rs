//! The kernel's event sockets of the daemon's loop (nftables): opened
//! before the first load, read when poll(2) says so, as it comes.
#![forbid(unsafe_code)]

use crate::config::Config;
#[cfg(target_os = "linux")]
use crate::error::Error;
use crate::error::Result;

/// The sockets that bring kernel events, and the element lookup.
#[cfg(target_os = "linux")]
pub(super) type Sources = (crate::netlink::Nflog, crate::netlink::Monitor);
#[cfg(not(target_os = "linux"))]
pub(super) type Sources = std::convert::Infallible;

#[cfg(target_os = "linux")]
pub(super) fn kernel_events(
    backend: &crate::backend::Backend,
    cfg: &Config,
) -> Result<Option<(Sources, Box<dyn super::ElementLookup + Send>)>> {
    use crate::render::nft::TABLE;
    if !matches!(backend, crate::backend::Backend::Nft(_)) || cfg.services.is_empty() {
        return Ok(None);
    }
    let dev = |what: &str, source| Error::Device {
        path: format!("nfnetlink {what}"),
        op: "open",
        source,
    };
    let nflog = crate::netlink::Nflog::bind(cfg.nflog_group).map_err(|e| dev("log", e))?;
    let monitor = crate::netlink::Monitor::open(&[TABLE, crate::render::nft::GUARD])
        .map_err(|e| dev("monitor", e))?;
    let lookup = crate::netlink::Lookup::open(TABLE).map_err(|e| dev("lookup", e))?;
    Ok(Some(((nflog, monitor), Box::new(lookup))))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn kernel_events(
    _: &crate::backend::Backend,
    _: &Config,
) -> Result<Option<(Sources, Box<dyn super::ElementLookup + Send>)>> {
    Ok(None)
}

/// The kernel's event sockets, read when poll(2) says so.
#[cfg(target_os = "linux")]
pub(super) struct Feeds {
    nflog: Option<crate::netlink::Nflog>,
    monitor: Option<crate::netlink::Monitor>,
    buf: Vec<u8>,
    /// The last `drain` left events in a socket (it read as much as a
    /// turn may): a command waits for them (`commands.rs`).
    behind: bool,
}

#[cfg(target_os = "linux")]
impl Feeds {
    pub(super) fn new(sources: Option<Sources>) -> Result<Feeds> {
        let dev = |source| Error::Device {
            path: "nfnetlink".into(),
            op: "non-blocking",
            source,
        };
        let (nflog, monitor) = match sources {
            Some((n, m)) => {
                n.set_nonblocking().map_err(dev)?;
                m.set_nonblocking().map_err(dev)?;
                (Some(n), Some(m))
            }
            None => (None, None),
        };
        Ok(Feeds {
            nflog,
            monitor,
            buf: vec![0u8; 1 << 20],
            behind: false,
        })
    }

    pub(super) fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        let mut v = Vec::new();
        if let Some(n) = &self.nflog {
            v.push(n.fd());
        }
        if let Some(m) = &self.monitor {
            v.push(m.fd());
        }
        v
    }

    /// Everything the sockets hold now, knocks first. A socket that fails
    /// for good is said once (`Lost`: the daemon polls from then on) and
    /// read no more.
    pub(super) fn drain(&mut self) -> Vec<super::KernelEvent> {
        let mut out = Vec::new();
        let Feeds {
            nflog,
            monitor,
            buf,
            behind,
        } = self;
        let knocks = drain_one(nflog, "nflog", |n, b| n.next(b), buf, &mut out);
        let from = out.len();
        let changes = drain_one(
            monitor,
            "nf_tables monitor",
            |m, b| m.next(b),
            buf,
            &mut out,
        );
        // An overrun's reading (below) stands for what is left unread.
        *behind = !(knocks && changes);
        // After the kernel dropped notifications, those still queued are
        // older than the reading of the sets that the overrun brings:
        // dropped too (that reading says what they would have), so that
        // none of them is taken for news. A new socket drops them unread;
        // where none can be had, they are read and dropped.
        let overrun = out[from..]
            .iter()
            .position(|e| *e == super::KernelEvent::Overrun);
        if let (Some(i), Some(m)) = (overrun, monitor.as_mut()) {
            out.truncate(from + i + 1);
            *behind = false;
            if m.renew().is_ok() {
                return out;
            }
            for _ in 0..(1 << 16) {
                match m.next(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() != std::io::ErrorKind::Interrupted => break,
                    _ => {}
                }
            }
        }
        out
    }

    /// Did the last `drain` leave events in a socket?
    pub(super) fn behind(&self) -> bool {
        self.behind
    }
}

/// How long one turn reads one event socket at most. With their receive
/// buffers of 64 MB (`netlink::events_sock`) what is not read in this
/// turn waits for the next, 20 ms on; a turn that read everything a burst
/// brought made a signal wait behind it (measured at 100,000 elements a
/// second: up to 156 ms).
#[cfg(target_os = "linux")]
const DRAIN: std::time::Duration = std::time::Duration::from_millis(8);

/// Read one event socket until it has nothing more, for at most 1024
/// datagrams or `DRAIN`; on a lasting error, say `Lost` and drop it.
/// Whether it has nothing more (or is gone).
#[cfg(target_os = "linux")]
fn drain_one<S>(
    src: &mut Option<S>,
    what: &str,
    next: impl Fn(&S, &mut [u8]) -> std::io::Result<Vec<super::KernelEvent>>,
    buf: &mut [u8],
    out: &mut Vec<super::KernelEvent>,
) -> bool {
    let start = std::time::Instant::now();
    for _ in 0..1024 {
        if start.elapsed() >= DRAIN {
            return false;
        }
        let Some(s) = src.as_ref() else { return true };
        match next(s, buf) {
            Ok(evs) => out.extend(evs),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.push(super::KernelEvent::Lost(format!(
                    "{what}: {}",
                    crate::error::io_words(&e)
                )));
                *src = None;
            }
        }
    }
    false
}

#[cfg(not(target_os = "linux"))]
pub(super) struct Feeds;

#[cfg(not(target_os = "linux"))]
impl Feeds {
    pub(super) fn new(sources: Option<Sources>) -> Result<Feeds> {
        if let Some(s) = sources {
            match s {}
        }
        Ok(Feeds)
    }
    pub(super) fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        Vec::new()
    }
    pub(super) fn drain(&mut self) -> Vec<super::KernelEvent> {
        Vec::new()
    }
    pub(super) fn behind(&self) -> bool {
        false
    }
}

/// Put `evs` at the end of `pending`, a run of element changes of one set
/// (the kernel sends one notification an element) as one event: the
/// machine keeps a transaction's changes for its commit anyway, in order,
/// and a queue of a million one-element events took 180 MB.
pub(super) fn queue(
    pending: &mut std::collections::VecDeque<super::KernelEvent>,
    evs: Vec<super::KernelEvent>,
) {
    use super::KernelEvent::Elements;
    for ev in evs {
        match (pending.back_mut(), ev) {
            (
                Some(Elements {
                    set: s,
                    added: a,
                    addrs: back,
                }),
                Elements { set, added, addrs },
            ) if *s == set && *a == added => back.append(addrs),
            (_, ev) => pending.push_back(ev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::KernelEvent;
    use crate::kevents::Deadline;
    use std::net::IpAddr;

    fn el(set: &str, added: bool, a: &[u8]) -> KernelEvent {
        let addrs = a
            .iter()
            .map(|x| Deadline::new(IpAddr::from([198, 18, 0, *x]), Some(1000)))
            .collect();
        KernelEvent::Elements {
            set: set.into(),
            added,
            addrs,
        }
    }

    /// Runs of one set's additions (or deletions) become one event, in
    /// order; anything else between keeps them apart, and the back of the
    /// queue takes the first of the next read.
    #[test]
    fn runs_of_one_sets_changes_are_one_event() {
        let commit = KernelEvent::Commit {
            pid: 7,
            process: "nft".into(),
        };
        let knock = KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: IpAddr::from([198, 18, 0, 9]),
        };
        let mut q = Default::default();
        super::queue(
            &mut q,
            vec![el("ssh_4", true, &[1]), el("ssh_4", true, &[2])],
        );
        super::queue(
            &mut q,
            vec![
                el("ssh_4", true, &[3]),
                el("ssh_4", false, &[4]),
                el("ssh_4", false, &[5]),
                el("web_4", false, &[6]),
                commit.clone(),
                el("web_4", false, &[7]),
                knock.clone(),
                el("web_4", false, &[8]),
            ],
        );
        let want = vec![
            el("ssh_4", true, &[1, 2, 3]),
            el("ssh_4", false, &[4, 5]),
            el("web_4", false, &[6]),
            commit,
            el("web_4", false, &[7]),
            knock,
            el("web_4", false, &[8]),
        ];
        assert_eq!(Vec::from(q), want);
    }
}
