//! The daemon's process: start like a daemon in base (check, lock, load,
//! then detach), log without blocking, keep the pidfile, and run the state
//! machine (`super::Daemon`) in one poll(2) loop over signals, the
//! kernel's events and the control socket, with its next deadline as the
//! timeout.
#![forbid(unsafe_code)]

use std::path::Path;

use super::commands::{self, WAITING_MAX, Waiting};
use super::feeds::{Feeds, Sources, kernel_events};
use super::{DEFAULT_PIDFILE, Daemon, Level, Loader, Log, Pidfile};
use crate::config::{Config, Warning};
use crate::error::{Error, Result};
use crate::render;
use crate::tables::Tables;

/// syslog (`crate::syslog`: never blocks), and stderr too when running in the foreground on a terminal
/// (under daemon(8) -S or rc_bg, stderr would feed the same line to syslog
/// a second time).
pub struct SysLog {
    pub stderr: bool,
    /// In the foreground (`-f`): with no syslogd to take them, lines go
    /// to stderr rather than nowhere.
    pub foreground: bool,
}

impl Log for SysLog {
    fn waiting(&self) -> usize {
        crate::syslog::waiting()
    }

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
        if (self.stderr || (self.foreground && !crate::syslog::reachable()))
            && level != Level::Debug
        {
            crate::say!("pfknock: {msg}");
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
    crate::sys_unix::one_heap();
    let config = abs(o.config)?;
    let mut log = SysLog {
        stderr: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        foreground: o.foreground,
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
        return check_only(&cfg, &warnings, &config, o.config);
    }
    let backend = crate::backend::detect().map_err(fatal)?;
    backend.supports(&cfg, &config).map_err(fatal)?;
    let pidpath = abs(o.pidfile.unwrap_or(Path::new(DEFAULT_PIDFILE)))?;
    let pid = Pidfile::create(&pidpath).map_err(fatal)?;
    // Under the pidfile's lock: a socket left by a daemon that died is
    // replaced, a live daemon's is not.
    let ctl = crate::control::Listener::bind(&abs(o.socket)?).map_err(fatal)?;
    let spa = signed_knocks(&cfg, &pidpath).map_err(fatal)?;
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
    // What the last daemon kept, for the reconciliation at start.
    let state = super::state::path_of(&pidpath);
    let record = super::state::take(&state);
    let events = kernel.is_some();
    let mut d = Daemon::start_with(
        cfg,
        &config,
        t,
        backend,
        log,
        crate::clock::now(),
        (!events).then(|| record.clone()),
    )
    .map_err(fatal)?;
    if pf {
        let mut n = super::notes::Notes::new(super::notes::PATH);
        n.clear();
        d.notes = Some(n);
    }
    // With kernel events, the sets are read in the loop, beside it, and
    // what happened while no daemon ran is said once they are.
    let sources = kernel.map(|(sources, lookup)| {
        d.use_events_later(lookup, record);
        sources
    });
    crate::sys_unix::release_free_memory();
    d.state = Some(state);
    let serving = Serving {
        warnings: &warnings,
        signals,
        sources,
        spa,
        record: super::spa::record_path(&pidpath),
    };
    detach_and_serve(d, (pid, ctl), o.foreground, serving)
}

/// Signed knocks: their keys read and their ports bound before the first
/// load, as root; the listener starts after the detach. Root's replay
/// record is the one the last clean stop kept beside the pidfile; without
/// one, stamps that an earlier daemon may have taken (up to a window after
/// this start) are refused.
fn signed_knocks(cfg: &Config, pidfile: &Path) -> Result<Option<super::spa::Spa>> {
    let services = crate::spa::keys::services(cfg)?;
    let record = super::spa::take_record(&super::spa::record_path(pidfile));
    super::spa::Spa::resume(cfg, &services, record)
}

/// What the loop serves besides the daemon and its pidfile.
struct Serving<'a> {
    warnings: &'a [Warning],
    signals: signal_hook::iterator::Signals,
    sources: Option<Sources>,
    spa: Option<super::spa::Spa>,
    /// Where a clean stop keeps the signed knocks' replay record.
    record: std::path::PathBuf,
}

/// A path made absolute (daemon(3) changes to `/`).
fn abs(p: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).map_err(|source| Error::ConfigFile {
        file: p.to_owned(),
        source,
    })
}

/// `run -n`: the config's warnings, then the load's own test: no firewall
/// to load it into, or what nftables would refuse, fails here.
fn check_only(cfg: &Config, warnings: &[Warning], abs: &Path, given: &Path) -> Result<()> {
    for w in warnings {
        crate::say!("pfknock: {}", crate::name::no_controls(&w.to_string()));
    }
    crate::spa::keys::services(cfg)?;
    let b = crate::backend::detect()?;
    b.supports(cfg, abs)?;
    if let crate::backend::Backend::Nft(nft) = &b
        && !cfg.services.is_empty()
    {
        nft.check(&render::nft::render(cfg, &abs.display().to_string()))?;
    }
    crate::output::out(&format!(
        "{}: ok\n",
        crate::name::no_controls(&given.display().to_string())
    ))
}

fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new(SIGNALS).map_err(|source| Error::Device {
        path: "signals".into(),
        op: "register",
        source,
    })
}

/// The signals the loop acts on: SIGINFO (^T) where it exists; SIGUSR2
/// everywhere, Linux has no SIGINFO.
#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
const SIGNALS: [libc::c_int; 6] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGINFO,
];
#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGINT,
];

/// Detach (unless in the foreground), then serve in one loop: one poll(2)
/// over a signal wake-up socket, the kernel's event sockets and the
/// control socket, with the next deadline as its timeout. No thread is
/// started before fork(2) (the reading of the sets beside the loop starts
/// its own after it).
fn detach_and_serve<T: Tables, L: Loader>(
    d: Daemon<T, L, SysLog>,
    (pid, ctl): (Pidfile, crate::control::Listener),
    foreground: bool,
    s: Serving<'_>,
) -> Result<()> {
    let dev = |op: &'static str| {
        move |source| Error::Device {
            path: "daemon".into(),
            op,
            source,
        }
    };
    if !foreground {
        // Fork first. The pidfile's lock is on the open file, which the
        // child keeps; it writes its own pid, and only then does the
        // waiting parent exit 0.
        let ready = crate::sys_unix::detach().map_err(dev("fork"))?;
        pid.write_pid().map_err(dev("write the pidfile"))?;
        ready.done().map_err(dev("report ready"))?;
    } else {
        pid.write_pid().map_err(dev("write the pidfile"))?;
    }
    // A byte on this socket wakes the poll for a signal; `signals` (caught
    // since before the first load) says which.
    let (wake, waker) = std::os::unix::net::UnixStream::pair().map_err(dev("socketpair"))?;
    wake.set_nonblocking(true).map_err(dev("socketpair"))?;
    waker.set_nonblocking(true).map_err(dev("socketpair"))?;
    for sig in SIGNALS {
        let w = waker.try_clone().map_err(dev("socketpair"))?;
        signal_hook::low_level::pipe::register(sig, std::os::fd::OwnedFd::from(w))
            .map_err(dev("signal wake-up"))?;
    }
    ctl.sock
        .set_nonblocking(true)
        .map_err(dev("control socket"))?;
    let feeds = Feeds::new(s.sources)?;
    let mut spa = s.spa;
    let r = serve(d, s.warnings, s.signals, (&wake, &ctl), feeds, &mut spa);
    if let Some(spa) = &mut spa {
        spa.stop();
        spa.save(&s.record);
    }
    drop(ctl);
    drop(pid);
    r
}

/// The signals that arrived, acted on; true when one said to stop. While
/// the sets are read beside the loop, a sweep, and a reload that could
/// make a set being read anew, wait in `deferred` until the reading is
/// done (`Daemon::reload_reading`); while a transaction by others is
/// said, a reload and a sweep wait until it is (`after_said`); status
/// and stop do not wait.
fn signalled<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    signals: &mut signal_hook::iterator::Signals,
    wake: &std::os::unix::net::UnixStream,
    deferred: &mut Vec<libc::c_int>,
) -> bool {
    let mut b = [0u8; 64];
    while std::io::Read::read(&mut &*wake, &mut b).is_ok_and(|n| n > 0) {}
    let sigs: Vec<libc::c_int> = signals.pending().collect();
    acted(d, sigs, deferred)
}

/// Act on `sigs` in order (see `signalled`).
fn acted<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    sigs: Vec<libc::c_int>,
    deferred: &mut Vec<libc::c_int>,
) -> bool {
    for sig in sigs {
        let now = crate::clock::now();
        match sig {
            libc::SIGHUP | libc::SIGUSR1 if d.reading().is_some() => {
                // A reload that keeps the sets being read goes at once.
                let waits =
                    !deferred.contains(&sig) && (sig == libc::SIGUSR1 || d.reload_reading(now));
                if waits {
                    let name = if sig == libc::SIGHUP {
                        "SIGHUP"
                    } else {
                        "SIGUSR1"
                    };
                    d.hold(name);
                    deferred.push(sig);
                }
            }
            // After what is left of a transaction by others, said as
            // syslog takes it, as a command waits (`after_said`): at
            // once, it said it all past syslog's queue.
            libc::SIGHUP | libc::SIGUSR1 if d.unsaid() => {
                if !deferred.contains(&sig) {
                    deferred.push(sig);
                }
            }
            libc::SIGHUP => {
                d.reload(now);
                d.settle_from(crate::clock::now_ms());
            }
            libc::SIGUSR1 => d.sweep(now),
            libc::SIGTERM | libc::SIGINT => {
                d.stop(if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                });
                return true;
            }
            _ => d.status(now),
        }
    }
    false
}

/// The signals deferred behind a transaction by others, acted on once it
/// is said (no reading runs: those deferred for one wait for its end).
fn after_said<T: Tables, L: Loader>(d: &mut Daemon<T, L, SysLog>, deferred: &mut Vec<libc::c_int>) {
    if d.reading().is_none() && !d.unsaid() && !deferred.is_empty() {
        let sigs = std::mem::take(deferred);
        acted(d, sigs, deferred);
    }
}

/// The reading beside the loop is readable: its answer handed on (told
/// which knocks wait in `pending`), and once it is all taken in, the
/// signals that waited for it acted on. True when one said to stop.
fn read_turn<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    pending: &Pending,
    deferred: &mut Vec<libc::c_int>,
) -> bool {
    d.read_done_heard(|| {
        let knock = |ev: &super::KernelEvent| match ev {
            super::KernelEvent::Knock { prefix, addr } => Some((prefix.clone(), *addr)),
            _ => None,
        };
        pending.iter().filter_map(knock).collect()
    });
    // Still being taken in: they wait on, said once already.
    if d.reading().is_some() {
        return false;
    }
    let sigs = std::mem::take(deferred);
    acted(d, sigs, deferred)
}

/// Kernel events read and not yet handed to the daemon.
pub(super) type Pending = std::collections::VecDeque<super::KernelEvent>;

/// How long one turn of the loop works through kernel events before it
/// looks at signals and commands again (so that SIGUSR2 waits at most
/// about this long behind a burst; a command is taken as soon, and
/// answered once the events before it are said, `commands.rs`).
const TURN: std::time::Duration = std::time::Duration::from_millis(20);

/// Kernel events read ahead at most while the loop works through them:
/// past this, the sockets keep what comes (64 MB each, more compactly
/// than this queue, whose events are about 150 bytes each, though a run
/// of one set's element changes is one event, `feeds::queue`: a million
/// knocks read ahead was 150 MB more of resident memory), and a burst
/// larger than their buffers is an overrun (the sets are read again).
const PENDING_MAX: usize = 1 << 16;

/// The same while a reading of the sets runs beside the loop: it takes
/// minutes at a million elements, and what comes meanwhile must not
/// overrun the sockets.
const PENDING_READING: usize = 1 << 20;

/// One turn's kernel events: what the sockets hold, read as it comes (up
/// to `PENDING_MAX` waiting, `PENDING_READING` while the sets are read;
/// reading late would make the kernel drop what its buffers cannot hold,
/// and reading all the sets again costs more than the events), handed to
/// the daemon for at most `TURN`. A queue that grew past `PENDING_MAX`
/// gives its memory back once it is empty.
fn kernel_turn<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    feeds: &mut Feeds,
    (pending, waiting): (&mut Pending, &mut Waiting),
    readable: bool,
) {
    let max = if d.reading().is_some() {
        PENDING_READING
    } else {
        PENDING_MAX
    };
    if readable && pending.len() < max {
        let evs = d.hear(feeds.drain(), crate::clock::now_ms());
        super::feeds::queue(pending, evs);
    }
    // While the sets are read beside the loop, events wait for its end.
    if d.reading().is_some() {
        return;
    }
    let end = std::time::Instant::now() + TURN;
    let before = pending.len();
    let all = d.work_through(pending, &crate::clock::now_ms, end, waiting.limit());
    waiting.worked(before - pending.len());
    if !all {
        return;
    }
    if pending.capacity() > PENDING_MAX {
        *pending = Pending::new();
        crate::sys_unix::release_free_memory();
    }
    // A restore or a resync may have brought deadlines closer.
    let now = crate::clock::now_ms();
    if d.next_due_ms().is_some_and(|t| t <= now) {
        d.tick_ms(now);
    }
}

/// When the loop wakes: as the daemon says (`Daemon::wake_ms`: an entry
/// due, a rotation step, the next poll), or when the signed-knock
/// listener is to start again, whichever is first.
fn next_wake<T: Tables, L: Loader>(
    d: &Daemon<T, L, SysLog>,
    spa: &Option<super::spa::Spa>,
    now_ms: i64,
) -> i64 {
    (spa_due(spa, now_ms).into_iter())
        .fold(d.wake_ms(now_ms), i64::min)
        .max(now_ms)
}

/// When the signed-knock listener is to start again, in ms.
fn spa_due(spa: &Option<super::spa::Spa>, now_ms: i64) -> Option<i64> {
    let t = spa.as_ref()?.due()?;
    let left = t.saturating_duration_since(std::time::Instant::now());
    Some(now_ms + left.as_millis() as i64)
}

/// The signed-knock listener's turn: what it said, and its restart when
/// due.
fn signed<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    spa: &mut Option<super::spa::Spa>,
    readable: bool,
    q: (&mut Feeds, &mut Pending, &mut Waiting),
) {
    let Some(s) = spa else {
        return;
    };
    let mut out = Vec::new();
    if readable {
        s.read(crate::clock::now(), &mut out);
    }
    s.tick(&mut out);
    heard(d, out, q);
}

/// What the listener said: its lines logged, and the knocks it admitted
/// done in their turn (`commands::signed`).
fn heard<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    out: Vec<super::spa::Heard>,
    (feeds, pending, waiting): (&mut Feeds, &mut Pending, &mut Waiting),
) {
    for h in out {
        match h {
            super::spa::Heard::Admitted(a) => {
                commands::signed(d, (&mut *feeds, &mut *pending, &mut *waiting), a)
            }
            super::spa::Heard::Line(level, msg) => d.log.log(level, &msg),
        }
    }
}

/// What ended a wait.
struct Ready {
    /// The reading of the sets beside the loop is done.
    read: bool,
    spa: bool,
    kernel: bool,
    signal: bool,
    control: bool,
}

/// Wait up to `wait` for what the loop serves. While the sets are read
/// beside the loop, commands and signed knocks wait in their sockets;
/// a reading between two parts of its lines waits for syslog to take
/// those before (`Daemon::reading_to_wait_on`).
fn wait_for<T: Tables, L: Loader>(
    d: &Daemon<T, L, SysLog>,
    spa: &Option<super::spa::Spa>,
    (wake, ctl, control): (
        &std::os::unix::net::UnixStream,
        &crate::control::Listener,
        bool,
    ),
    feeds: &Feeds,
    wait: std::time::Duration,
    first: &mut bool,
) -> Result<Ready> {
    use std::os::fd::AsFd;
    let mut fds = vec![wake.as_fd()];
    let reading = d.reading_to_wait_on();
    let reading = reading.map(|fd| fds.push(fd)).is_some();
    let nc = usize::from(control);
    if control {
        fds.push(ctl.sock.as_fd());
    }
    let sfd = spa.as_ref().and_then(|s| s.fd());
    let ns = usize::from(sfd.is_some());
    fds.extend(sfd);
    let kfds = feeds.fds();
    let nk = kfds.len();
    fds.extend(kfds);
    // Lines that wait for syslogd go out as soon as it takes one.
    let log = crate::syslog::waiting_socket();
    let log = log.as_ref().map(|fd| fd.as_fd());
    let (r, _) = crate::sys_unix::poll_ready(&fds, log, wait).map_err(|source| Error::Device {
        path: "daemon".into(),
        op: "poll",
        source,
    })?;
    let at = 1 + usize::from(reading);
    Ok(Ready {
        // A signal caught before the wake-up socket was registered (during
        // the first load, say) is looked at on the first turn.
        signal: r[0] || std::mem::take(first),
        read: reading && r[1],
        control: nc > 0 && r[at],
        spa: ns > 0 && r[at + nc],
        kernel: nk > 0 && r[at + nc + ns..].iter().any(|x| *x),
    })
}

/// When the loop wakes next (ms), and how long it waits for something
/// else to wake it.
fn loop_wait<T: Tables, L: Loader>(
    d: &Daemon<T, L, SysLog>,
    spa: &Option<super::spa::Spa>,
    pending: &Pending,
) -> (i64, std::time::Duration) {
    let now_ms = crate::clock::now_ms();
    let wake_at = next_wake(d, spa, now_ms);
    let mut wait = std::time::Duration::from_millis((wake_at - now_ms) as u64);
    if d.reading().is_some() {
        // Only the reading's end, a signal, the kernel's events, an
        // authorization due or lines to say wake the loop until then.
        wait = d.reading_wait(now_ms);
    } else if (!pending.is_empty() || d.unsaid()) && d.log_has_room() {
        wait = std::time::Duration::ZERO;
    }
    if crate::syslog::pending() {
        wait = wait.min(crate::syslog::RETRY);
    }
    (wake_at, wait)
}

/// The loop: wait for the next deadline, a kernel event, a signal or a
/// command; act; repeat.
fn serve<T: Tables, L: Loader>(
    mut d: Daemon<T, L, SysLog>,
    warnings: &[Warning],
    mut signals: signal_hook::iterator::Signals,
    (wake, ctl): (&std::os::unix::net::UnixStream, &crate::control::Listener),
    mut feeds: Feeds,
    spa: &mut Option<super::spa::Spa>,
) -> Result<()> {
    d.log_warnings(warnings);
    let mut first = true;
    let mut pending = Pending::new();
    let mut deferred = Vec::new();
    let mut waiting = Waiting::default();
    d.read_aside();
    d.begin(crate::clock::now_ms());
    loop {
        // Lines syslogd did not take yet go out first (and again soon):
        // before the wait is set, which depends on how many are left.
        crate::syslog::flush();
        let (wake_at, wait) = loop_wait(&d, spa, &pending);
        // The control socket, as long as there is room for what waits.
        let control = waiting.len() < WAITING_MAX;
        let ready = wait_for(&d, spa, (wake, ctl, control), &feeds, wait, &mut first)?;
        // What the kernel said came first.
        kernel_turn(
            &mut d,
            &mut feeds,
            (&mut pending, &mut waiting),
            ready.kernel,
        );
        if ready.signal && signalled(&mut d, &mut signals, wake, &mut deferred)
            || ready.read && read_turn(&mut d, &pending, &mut deferred)
        {
            commands::stopped(&mut waiting);
            return Ok(());
        }
        if d.reading().is_some() {
            // A signed knock opens or closes at once, as `allow` and
            // `revoke` do (`Machine::changed_while_read`).
            let q = (&mut feeds, &mut pending, &mut waiting);
            signed(&mut d, spa, ready.spa, q);
            if ready.control {
                commands::take(&mut d, ctl, &mut feeds, &mut pending, &mut waiting);
            }
            d.reading_turn(crate::clock::now_ms());
            continue;
        }
        // Commands held for a reading or for events not read yet wait for
        // the events queued, as any waits for those before it.
        commands::caught_up(&d, &feeds, &pending, &mut waiting);
        commands::answer_due(&mut d, &mut waiting);
        if pending.is_empty() && !d.unsaid() {
            d.caught_up(crate::clock::now());
        }
        signed(
            &mut d,
            spa,
            ready.spa,
            (&mut feeds, &mut pending, &mut waiting),
        );
        if ready.control {
            commands::take(&mut d, ctl, &mut feeds, &mut pending, &mut waiting);
        }
        if ready.signal || ready.control || ready.read {
            let mut out = Vec::new();
            super::spa::Spa::reload(spa, &d.cfg, &d.spa, &mut out);
            heard(&mut d, out, (&mut feeds, &mut pending, &mut waiting));
        }
        commands::answer_due(&mut d, &mut waiting);
        after_said(&mut d, &mut deferred);
        let now_ms = crate::clock::now_ms();
        // A wake for the log's sake alone polls nothing; deadlines wait
        // until the kernel's events before them are worked through.
        if now_ms >= wake_at && pending.is_empty() && !d.unsaid() {
            d.rotate(now_ms.div_euclid(1000));
            d.tick_ms(now_ms);
        }
    }
}
