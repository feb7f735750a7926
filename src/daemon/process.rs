//! The daemon's process: start like a daemon in base (check, lock, load,
//! then detach), log without blocking, keep the pidfile, turn signals into
//! events and run the state machine (`super::Daemon`) on its deadlines.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{Daemon, Event, Level, Loader, Log};
use crate::config::{Config, Warning};
use crate::error::{Error, Result};
use crate::render;
use crate::tables::Tables;

/// syslog (`crate::syslog`: never blocks), and stderr too when running in the foreground on a terminal
/// (under daemon(8) -S or rc_bg, stderr would feed the same line to syslog
/// a second time).
pub struct SysLog {
    pub stderr: bool,
}

impl Log for SysLog {
    fn log(&mut self, level: Level, msg: &str) {
        let prio = match level {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        let msg = crate::name::no_controls(msg);
        crate::syslog::log(prio, &msg);
        if self.stderr && level != Level::Debug {
            crate::say!("pfknock: {msg}");
        }
    }
}

/// Where the daemon keeps its pid when `-p` does not say: one daemon per
/// system, whoever starts it.
pub const DEFAULT_PIDFILE: &str = "/var/run/pfknock.pid";

/// A pidfile as pidfile(3) keeps one: opened without following a symbolic
/// link, a regular file, locked for the life of the daemon, and removed at
/// the end only if the path still names the file that was locked.
pub struct Pidfile {
    path: PathBuf,
    file: std::fs::File,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source: std::io::Error| Error::Device {
            path: path.display().to_string(),
            op: "pidfile",
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    Error::Other(format!(
                        "{}: a symbolic link: refusing to write a pidfile through it",
                        path.display()
                    ))
                } else {
                    io(e)
                }
            })?;
        if !f.metadata().map_err(io)?.file_type().is_file() {
            return Err(Error::Other(format!(
                "{}: not a regular file: refusing to use it as a pidfile",
                path.display()
            )));
        }
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                return Err(Error::Other(format!(
                    "{}: locked: pfknock is already running (pid {})",
                    path.display(),
                    crate::name::shown(pid.trim())
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let p = Pidfile {
            path: path.to_owned(),
            file: f,
        };
        p.write_pid().map_err(io)?;
        Ok(p)
    }

    /// Write this process's pid (again, after detaching).
    pub fn write_pid(&self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let mut f = &self.file;
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return;
        };
        if now.file_type().is_file() && now.dev() == ours.dev() && now.ino() == ours.ino() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Options of `pfknock run`.
pub struct RunOpts<'a> {
    pub config: &'a Path,
    pub foreground: bool,
    pub pidfile: Option<&'a Path>,
    pub check_only: bool,
    /// The control socket (`crate::control`).
    pub socket: &'a Path,
}

/// The daemon process, started as a daemon in base is: read and check the
/// config, take the pidfile, open the kernel interface and load the rules,
/// and only then detach, so that every failure up to there reaches stderr
/// and the exit status; after it, syslog. Paths are made absolute first:
/// daemon(3) changes to `/`.
pub fn run(o: RunOpts<'_>) -> Result<()> {
    use std::io::IsTerminal;
    let abs = |p: &Path| {
        std::path::absolute(p).map_err(|source| Error::ConfigFile {
            file: p.to_owned(),
            source,
        })
    };
    let config = abs(o.config)?;
    let mut log = SysLog {
        stderr: std::io::stderr().is_terminal(),
    };
    // Log with the default facility until the config names another, so a
    // fatal config error reaches syslog too (main prints it on stderr).
    crate::syslog::open(crate::config::Facility::Auth);
    let fatal = |e: Error| {
        crate::syslog::log(libc::LOG_ERR, &e.to_string());
        e
    };
    // The daemon loads rules as root: a config that anyone else could
    // have written is refused, whoever starts it.
    let text = crate::config::read_trusted(&config, true).map_err(fatal)?;
    let (mut cfg, warnings) = Config::parse(&text, &config).map_err(fatal)?;
    crate::rotate::apply(&mut cfg, crate::clock::now()).map_err(fatal)?;
    crate::syslog::open(cfg.facility);
    if o.check_only {
        for w in &warnings {
            crate::say!("pfknock: {}", crate::name::no_controls(&w.to_string()));
        }
        // The load's own test: no firewall to load it into, or what
        // nftables would refuse, fails here.
        let b = crate::backend::detect()?;
        b.supports(&cfg, &config)?;
        if let crate::backend::Backend::Nft(nft) = &b
            && !cfg.services.is_empty()
        {
            nft.check(&render::nft::render(&cfg, &config.display().to_string()))?;
        }
        return crate::output::out(&format!(
            "{}: ok\n",
            crate::name::no_controls(&o.config.display().to_string())
        ));
    }
    let backend = crate::backend::detect().map_err(fatal)?;
    backend.supports(&cfg, &config).map_err(fatal)?;
    let pidpath = abs(o.pidfile.unwrap_or(Path::new(DEFAULT_PIDFILE)))?;
    let pid = Pidfile::create(&pidpath).map_err(fatal)?;
    // Under the pidfile's lock: a socket left by a daemon that died is
    // replaced, a live daemon's is not.
    let ctl = crate::control::Listener::bind(&abs(o.socket)?).map_err(fatal)?;
    if !o.foreground {
        log.stderr = false;
    }
    // Signals are caught from here on (the thread that reads them starts
    // after detaching): a SIGHUP during the first load is not fatal.
    let signals = catch_signals()?;
    // nftables tells what happens: bind to it before the first load, so
    // that nothing from then on is missed.
    let kernel = kernel_events(&backend, &cfg).map_err(fatal)?;
    let t = backend.tables(true).map_err(fatal)?;
    let pf = matches!(backend, crate::backend::Backend::Pf);
    let mut d = Daemon::start(cfg, &config, t, backend, log, crate::clock::now()).map_err(fatal)?;
    if pf {
        let mut n = super::notes::Notes::new(super::notes::PATH);
        n.clear();
        d.notes = Some(n);
    }
    let sources = kernel.map(|(sources, lookup)| {
        d.use_events(lookup, crate::clock::now());
        sources
    });
    detach_and_serve(d, (pid, ctl), signals, o.foreground, &warnings, sources)
}

/// The sockets that bring kernel events, and the element lookup.
#[cfg(target_os = "linux")]
type Sources = (crate::netlink::Nflog, crate::netlink::Monitor);
#[cfg(not(target_os = "linux"))]
type Sources = std::convert::Infallible;

#[cfg(target_os = "linux")]
fn kernel_events(
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
    let monitor = crate::netlink::Monitor::open(TABLE).map_err(|e| dev("monitor", e))?;
    let lookup = crate::netlink::Lookup::open(TABLE).map_err(|e| dev("lookup", e))?;
    Ok(Some(((nflog, monitor), Box::new(lookup))))
}

#[cfg(not(target_os = "linux"))]
fn kernel_events(
    _: &crate::backend::Backend,
    _: &Config,
) -> Result<Option<(Sources, Box<dyn super::ElementLookup + Send>)>> {
    Ok(None)
}

/// A thread per event source, forwarding to the loop; a source that fails
/// says so once and ends (the daemon then polls).
#[cfg(target_os = "linux")]
fn start_sources(sources: Sources, tx: &std::sync::mpsc::Sender<Event>) {
    let (nflog, monitor) = sources;
    forward("nflog", 1 << 16, move |b| nflog.next(b), tx.clone());
    forward(
        "nf_tables monitor",
        1 << 20,
        move |b| monitor.next(b),
        tx.clone(),
    );
}

/// A thread that reads one source into the loop until the loop is gone or
/// the source fails (said once, as `Lost`).
#[cfg(target_os = "linux")]
fn forward(
    what: &'static str,
    size: usize,
    mut next: impl FnMut(&mut [u8]) -> std::io::Result<Vec<super::KernelEvent>> + Send + 'static,
    tx: std::sync::mpsc::Sender<Event>,
) {
    crate::sys_unix::spawn(move || {
        let mut buf = vec![0u8; size];
        loop {
            match next(&mut buf) {
                Ok(evs) => {
                    for ev in evs {
                        if tx.send(Event::Kernel(ev)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Event::Kernel(super::KernelEvent::Lost(format!(
                        "{what}: {}",
                        crate::error::io_words(&e)
                    ))));
                    return;
                }
            }
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn start_sources(sources: Sources, _: &std::sync::mpsc::Sender<Event>) {
    match sources {}
}

fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    // SIGINFO (^T) where it exists; SIGUSR2 everywhere, Linux has no
    // SIGINFO.
    #[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
    let sigs = [SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, libc::SIGINFO];
    #[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
    let sigs = [SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT];
    signal_hook::iterator::Signals::new(sigs).map_err(|source| Error::Device {
        path: "signals".into(),
        op: "register",
        source,
    })
}

/// Detach (unless in the foreground), then take signals and serve.
fn detach_and_serve<T: Tables, L: Loader>(
    d: Daemon<T, L, SysLog>,
    (pid, ctl): (Pidfile, crate::control::Listener),
    mut signals: signal_hook::iterator::Signals,
    foreground: bool,
    warnings: &[Warning],
    sources: Option<Sources>,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    use std::sync::mpsc;
    if !foreground {
        // Before any thread: fork. The pidfile's lock is on the open
        // file, which the child keeps; it writes its own pid, and only
        // then does the waiting parent exit 0.
        let ready = crate::sys_unix::detach().map_err(|source| Error::Device {
            path: "detach".into(),
            op: "fork",
            source,
        })?;
        pid.write_pid().map_err(|source| Error::Device {
            path: "pidfile".into(),
            op: "write",
            source,
        })?;
        ready.done().map_err(|source| Error::Device {
            path: "detach".into(),
            op: "report ready",
            source,
        })?;
    }
    let (tx, rx) = mpsc::channel();
    if let Some(s) = sources {
        start_sources(s, &tx);
    }
    serve_control(&ctl, tx.clone())?;
    crate::sys_unix::spawn(move || {
        for sig in signals.forever() {
            let ev = match sig {
                SIGHUP => Event::Reload,
                SIGUSR1 => Event::Sweep,
                SIGTERM | SIGINT => Event::Stop(sig),
                _ => Event::Info,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    let r = serve(d, warnings, &rx);
    drop(ctl);
    drop(pid);
    r
}

/// A thread that takes the commands' requests, one at a time, into the
/// loop, and carries each answer back.
fn serve_control(ctl: &crate::control::Listener, tx: std::sync::mpsc::Sender<Event>) -> Result<()> {
    let sock = ctl.sock.try_clone().map_err(|source| Error::Device {
        path: ctl.path().display().to_string(),
        op: "listen",
        source,
    })?;
    crate::sys_unix::spawn(move || {
        for conn in sock.incoming() {
            let Ok(mut s) = conn else { continue };
            let reply = match crate::control::read_request(&mut s) {
                Ok(req) => {
                    let (rtx, rrx) = std::sync::mpsc::channel();
                    if tx.send(Event::Control(Box::new(req), rtx)).is_err() {
                        return;
                    }
                    match rrx.recv() {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                Err(why) => crate::control::Reply {
                    pid: std::process::id(),
                    error: Some((format!("control socket: {why}"), crate::error::EXIT_USAGE)),
                    ..Default::default()
                },
            };
            crate::control::write_reply(&mut s, &reply);
        }
    });
    Ok(())
}

/// The loop: wait for the next deadline, poll or signal; act; repeat.
fn serve<T: Tables, L: Loader>(
    mut d: Daemon<T, L, SysLog>,
    warnings: &[Warning],
    rx: &std::sync::mpsc::Receiver<Event>,
) -> Result<()> {
    use signal_hook::consts::SIGINT;
    use std::sync::mpsc;
    use std::time::Duration;
    d.log_warnings(warnings);
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as i64);
        let now = now_ms / 1000;
        let poll = d.cfg.poll.0 as i64;
        // Wake at the start of the second an entry is due, or at the next
        // poll, whichever is first.
        // Polling (pf): at the next poll at the latest. With kernel events
        // (nftables) only deadlines wake the loop, or an hour goes by.
        let idle = if d.polls() { poll } else { 3600 };
        let wake = d
            .next_due()
            .into_iter()
            .chain(d.next_step())
            .fold(now + idle, i64::min)
            .max(now);
        let mut wait = Duration::from_millis((wake * 1000 - now_ms).max(0) as u64);
        // Log lines that syslogd did not take yet go out first, and are
        // tried again soon.
        crate::syslog::flush();
        if crate::syslog::pending() {
            wait = wait.min(crate::syslog::RETRY);
        }
        match rx.recv_timeout(wait) {
            Ok(Event::Reload) => d.reload(crate::clock::now()),
            Ok(Event::Sweep) => d.sweep(crate::clock::now()),
            Ok(Event::Info) => d.status(crate::clock::now()),
            Ok(Event::Control(req, reply)) => {
                // Kernel events already here happened before the
                // command: they go first, so the log keeps their order.
                let mut later = Vec::new();
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        Event::Kernel(k) => d.kernel(k, crate::clock::now()),
                        other => later.push(other),
                    }
                }
                let _ = reply.send(d.control(&req, crate::clock::now()));
                // What else came meanwhile waits its turn (a SIGTERM
                // among it: stop now).
                for ev in later {
                    match ev {
                        Event::Stop(sig) => {
                            d.stop(if sig == SIGINT { "SIGINT" } else { "SIGTERM" });
                            return Ok(());
                        }
                        Event::Reload => d.reload(crate::clock::now()),
                        Event::Sweep => d.sweep(crate::clock::now()),
                        Event::Info => d.status(crate::clock::now()),
                        Event::Control(_, r) => drop(r),
                        Event::Kernel(k) => d.kernel(k, crate::clock::now()),
                    }
                }
            }
            Ok(Event::Kernel(ev)) => {
                let now = crate::clock::now();
                d.kernel(ev, now);
                // A restore or a resync may have brought deadlines closer.
                if d.next_due().is_some_and(|t| t <= now) {
                    d.tick(now);
                }
            }
            Ok(Event::Stop(sig)) => {
                d.stop(if sig == SIGINT { "SIGINT" } else { "SIGTERM" });
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = crate::clock::now();
                // A wake for the log's sake alone polls nothing.
                if now >= wake {
                    d.rotate(now);
                    d.tick(now);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                d.stop("loss of the signal thread");
                return Ok(());
            }
        }
    }
}
