//! The command line, verb by verb: read the config, act through the
//! backend or the table commands, report.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::backend::{self, Backend, Loader, open_tables};
use crate::cli::{Cli, Command};
use crate::clock::now;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::name::{self, Net};
use crate::output::out;
use crate::tables::TableRef;
use crate::{client, cmd, daemon, nft, pfctl, render, say, syslog};

/// `control::ask` on the command line's socket, saying on stderr when
/// the daemon makes it wait, and why where it says.
fn ask(cli: &Cli, req: &crate::control::Request) -> Result<Option<crate::control::Reply>> {
    use crate::control::Wait;
    crate::control::ask(&cli.socket, req, |w| match w {
        Wait::Held => say!(
            "pfknock: {}: waiting for the daemon: it is reading its sets, and \
             answers once that is done (minutes at a million authorizations)",
            cli.socket.display()
        ),
        Wait::Slow => say!("pfknock: {}: waiting for the daemon", cli.socket.display()),
    })
}

/// Where a daemon runs, have it do this command's work, and print what it
/// did. `Ok(false)`: no daemon listens; the command does the work itself.
fn through_daemon(cli: &Cli) -> Result<bool> {
    let Some(argv) = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect::<Option<Vec<String>>>()
    else {
        return Ok(false);
    };
    let config = std::path::absolute(&cli.config).map_err(|source| Error::ConfigFile {
        file: cli.config.clone(),
        source,
    })?;
    let req = crate::control::Request { config, argv };
    let Some(r) = ask(cli, &req)? else {
        return Ok(false);
    };
    crate::verbs::print(&r.done)?;
    match r.error {
        None => Ok(true),
        Some((msg, code)) => Err(Error::Relayed { msg, code }),
    }
}

/// Warn about knock ports that something on this host listens on (Linux:
/// /proc/net/tcp and tcp6 of the current network namespace).
fn warn_listened(cfg: &Config, path: &Path) {
    let texts: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    for w in config::listened_knock_ports(cfg, path, &texts) {
        say!("pfknock: {}", name::no_controls(&w.to_string()));
    }
}

/// nftables: name other tables' input chains that would drop what pfknock
/// opens, with the remedy.
fn neighbours(b: &Backend, cfg: &Config) -> Result<()> {
    if let Backend::Nft(nft) = b
        && !cfg.services.is_empty()
    {
        for w in nft.neighbours(cfg)? {
            say!("pfknock: warning: {w}");
        }
    }
    Ok(())
}

/// Read and check the config, printing its warnings to stderr.
pub fn load_config(path: &Path) -> Result<Config> {
    let (cfg, warnings) = Config::load(path)?;
    for w in warnings {
        say!("pfknock: {}", name::no_controls(&w.to_string()));
    }
    Ok(cfg)
}

/// One audit line in syslog, with the config's facility: what an
/// administrator did by hand shows up beside the daemon's lines.
fn audit(cfg: &Config, line: &str) {
    syslog::open(cfg.facility);
    syslog::log(libc::LOG_INFO, line);
}

/// `pfknock check`: everything `load` would find, changing nothing. The
/// config's own checks; this system's firewall (none is an error: nothing
/// here could load the config); the firewall's own parser (pfctl -n,
/// nft -c); on pf, whether pf is enabled and the main ruleset calls the
/// anchor (warnings: the anchor loads, but does nothing). What needs root
/// and cannot be run is said, not skipped in silence.
fn check(path: &Path) -> Result<()> {
    let cfg = load_config(path)?;
    // The signed-knock keys as the daemon reads them.
    crate::spa::keys::services(&cfg)?;
    warn_listened(&cfg, path);
    let source = path.display().to_string();
    let b = backend::detect().map_err(|e| {
        Error::Unavailable(format!(
            "{e}: nothing on this system could load the config \
             (pfknock render --pf or --nft prints it for another)"
        ))
    })?;
    b.supports(&cfg, path)?;
    let root = crate::sys_unix::euid() == 0;
    let mut not_checked = Vec::new();
    let by = match &b {
        Backend::Nft(_) if !root && !cfg.services.is_empty() => {
            not_checked.push("nft -c (it needs root: CAP_NET_ADMIN)");
            None
        }
        _ => b.check(&cfg, &source)?,
    };
    neighbours_if(&b, &cfg, root)?;
    if let Backend::Pf = b
        && !cfg.services.is_empty()
    {
        match pfctl::enabled() {
            Some(false) => {
                say!("pfknock: warning: pf is disabled: knocks open nothing until pfctl -e");
                if std::env::var_os("SSH_CONNECTION").is_some() {
                    say!(
                        "pfknock: warning: this is an ssh session: enabling pf with a block \
                         ruleset can cut it (pf has no state for it yet); keep a second \
                         session open, or enable pf from the console"
                    );
                }
            }
            Some(true) => {}
            None => not_checked.push("whether pf is enabled (pfctl -s info; it needs root)"),
        }
        warn_passes_before(&cfg);
        match pfctl::anchor_referenced(&cfg.anchor) {
            Ok(true) => {}
            Ok(false) => say!(
                "pfknock: warning: the main ruleset has no anchor \"{}\" rule: the anchor's \
                 rules would do nothing (add it to pf.conf)",
                cfg.anchor.as_str()
            ),
            Err(_) => not_checked
                .push("whether the main ruleset calls the anchor (pfctl -s rules; it needs root)"),
        }
    }
    for n in &not_checked {
        say!("pfknock: not checked: {n}");
    }
    let src = name::no_controls(&source);
    match by {
        None => out(&format!("{src}: ok\n")),
        Some(by) => out(&format!("{src}: ok ({by})\n")),
    }
}

/// pf: name the main ruleset's `pass ... quick` rules before the anchor
/// line that let a protected port through (they win before the anchor's
/// block is seen).
fn warn_passes_before(cfg: &Config) {
    let ports: Vec<(u16, u16)> = cfg
        .services
        .iter()
        .flat_map(|s| s.protect.iter().map(|r| (r.lo.get(), r.hi.get())))
        .collect();
    if let Ok(rules) = pfctl::passes_before_anchor(&cfg.anchor, &ports) {
        for r in rules {
            say!(
                "pfknock: warning: the main ruleset passes a protected port before the \
                 anchor \"{}\" line, so that knocking is not needed: {}",
                cfg.anchor.as_str(),
                name::no_controls(&r)
            );
        }
    }
}

/// `neighbours`, where it can be read (nft's listing needs root).
/// After a load: what around the anchor keeps it from working.
fn loaded_warnings(b: &mut Backend, cfg: &Config) -> Result<()> {
    neighbours(b, cfg)?;
    if !b.referenced(&cfg.anchor)? {
        say!(
            "pfknock: warning: the main ruleset has no anchor \"{}\" rule: the anchor's rules do nothing",
            cfg.anchor.as_str()
        );
    }
    if let Backend::Pf = b {
        warn_passes_before(cfg);
    }
    Ok(())
}

fn neighbours_if(b: &Backend, cfg: &Config, root: bool) -> Result<()> {
    if root { neighbours(b, cfg) } else { Ok(()) }
}

/// Run one command line.
pub fn run(cli: Cli) -> Result<()> {
    let path = cli.config.as_path();
    let changes = match &cli.command {
        Command::Load | Command::Unload { .. } | Command::Allow { .. } | Command::Flush { .. } => {
            true
        }
        Command::Revoke { kill_states, .. } => !kill_states,
        Command::Expire { dry_run, .. } => !dry_run,
        _ => false,
    };
    if changes && through_daemon(&cli)? {
        // What a load finds wrong around the anchor is said here as
        // without a daemon (the daemon logs the config's warnings too).
        if let Command::Load = cli.command {
            let cfg = load_config(path)?;
            warn_listened(&cfg, path);
            loaded_warnings(&mut backend::detect()?, &cfg)?;
        }
        return Ok(());
    }
    if let Command::Revoke {
        address,
        service,
        kill_states: true,
    } = &cli.command
    {
        return revoke_and_kill(&cli, address, service.as_deref());
    }
    match cli.command {
        Command::Check => check(path),
        Command::Render { nft, pf } => render(path, nft, pf),
        Command::Load => load(path),
        Command::Unload { open } => unload(path, open),
        Command::Show { service, all, json } => show(path, service, all, json),
        Command::Expire {
            service,
            table,
            anchor,
            older_than,
            dry_run,
        } => expire(
            path,
            service,
            table,
            anchor,
            crate::verbs::ExpireHow {
                older_than,
                dry_run,
            },
        ),
        Command::Allow {
            address,
            service,
            force,
        } => allow(path, &address, service, force),
        Command::Revoke {
            address, service, ..
        } => revoke(path, &address, service),
        Command::Knock(k) => client::knock(path, k),
        Command::Keygen { file, spa: false } => client::keygen(&file),
        Command::Keygen { file, spa: true } => client::keygen_spa(&file),
        Command::SpaListen(a) => spa_listen(a),
        Command::Ports { service, at } => client::ports(path, &service, at),
        Command::Run {
            foreground,
            pidfile,
            check_only,
        } => daemon::run(daemon::RunOpts {
            config: path,
            foreground,
            pidfile: pidfile.as_deref(),
            check_only,
            socket: &cli.socket,
        }),
        Command::Flush { service } => flush(path, service),
    }
}

/// `spa-listen`: the signed-knock listener, as `pfknock run` starts it.
fn spa_listen(a: crate::cli::SpaListenArgs) -> Result<()> {
    let args = crate::spa::listen::Args::parse(a.chan, &a.udp, a.user, a.root)?;
    crate::spa::listen::main(&args)
}

/// `render`: this system's own firewall unless told otherwise.
fn render(path: &Path, nft: bool, pf: bool) -> Result<()> {
    let cfg = load_config(path)?;
    let source = path.display().to_string();
    // This system's own firewall unless told otherwise.
    if nft || (!pf && cfg!(target_os = "linux")) {
        out(&render::nft::render(&cfg, &source))?;
    } else {
        out(&render::pf::render(&cfg, &source))?;
    }
    Ok(())
}

/// `load` where no daemon runs. What the load takes away is said, as the
/// daemon's reload says it: on nftables the authorized sets it deletes,
/// counted just before; on pf the tables of the anchor the config no
/// longer names, emptied after (`verbs::empty_leftovers`).
fn load(path: &Path) -> Result<()> {
    let cfg = load_config(path)?;
    warn_listened(&cfg, path);
    let source = path.display().to_string();
    let mut b = backend::detect()?;
    b.supports(&cfg, path)?;
    let by = "pfknock load";
    b.load(&cfg, &source)?;
    let mut d = crate::verbs::Done::default();
    for l in b.went(by) {
        d.audit.push(l.clone());
        d.stderr.push(l);
    }
    // (A stand-in pfctl on a system without pf has no tables to empty.)
    let r = match &b {
        Backend::Pf if crate::pf::AVAILABLE => open_tables(true)
            .and_then(|mut t| crate::verbs::empty_leftovers(&cfg, &mut *t, by, &mut d)),
        _ => Ok(()),
    };
    finish(&cfg, &d, r)?;
    loaded_warnings(&mut b, &cfg)
}

/// `unload` where no daemon runs: it says, and logs, how many
/// authorizations went with the anchor, counted just before, as the
/// daemon does.
fn unload(path: &Path, open: bool) -> Result<()> {
    let cfg = load_config(path)?;
    let mut b = backend::detect()?;
    let went = (b.tables(false).ok()).and_then(|mut t| crate::verbs::authorizations(&cfg, &mut *t));
    b.unload(&cfg, open)?;
    if let Some(w) = crate::verbs::unload_words(matches!(b, Backend::Nft(_)), open) {
        say!("{w}");
    }
    if let Some(n) = went {
        let line = crate::verbs::unloaded_line(&cfg, open, Some(n));
        audit(&cfg, &line);
        say!("{line}");
    }
    Ok(())
}

fn show(path: &Path, service: Option<String>, all: bool, json: bool) -> Result<()> {
    let cfg = load_config(path)?;
    cmd::services(&cfg, service.as_deref())?;
    let mut t = open_tables(false)?;
    let listed = cmd::show_tables(&cfg, &mut t, service.as_deref(), all)?;
    let now = now();
    // A set at its size takes no new knock: said, as the daemon
    // logs it (nftables; pf tables have no size of their own). The sets
    // just listed are counted from their listing, not read again.
    let counts: Vec<(String, u64)> = listed.iter().flat_map(|l| l.set_counts()).collect();
    t.counted(&counts);
    if t.table_stats(&cfg.anchor).is_ok() {
        for (set, size) in t.full_sets() {
            say!(
                "pfknock: set {set} is full ({size} elements): knocks it would take \
                 are not counted until entries expire"
            );
        }
        for p in t.pools().unwrap_or_default() {
            if p.is_full() {
                say!(
                    "pfknock: pf's {} limit is reached ({} of {}): {}",
                    p.pool.limit_name(),
                    p.used,
                    p.limit,
                    p.pool.effect()
                );
            }
        }
    }
    // Written as made, row by row: the entries are held once.
    let rows = || listed.iter().flat_map(|l| l.rows(now));
    let n = crate::output::to_stdout(|w| {
        if json {
            cmd::write_json(w, rows()).map(|()| None)
        } else {
            cmd::write_table(w, rows).map(Some)
        }
    })?;
    if n == Some(0) {
        say!(
            "pfknock: nobody is authorized{}",
            service.map_or(String::new(), |s| format!(" for service {s}"))
        );
    }
    Ok(())
}

fn expire(
    path: &Path,
    service: Option<String>,
    table: Option<String>,
    anchor: Option<String>,
    how: crate::verbs::ExpireHow,
) -> Result<()> {
    let crate::verbs::ExpireHow {
        older_than,
        dry_run,
    } = how;
    let cfg = load_config(path)?;
    let sel = crate::verbs::expire_selection(
        &cfg,
        service.as_deref(),
        table.as_deref(),
        anchor.as_deref(),
    )?;
    let targets = cmd::expire_targets(&cfg, &sel)?;
    let mut t = open_tables(!dry_run)?;
    if !dry_run && !t.caps().refreshes_entries {
        for n in &targets {
            daemon::notes::note(Path::new(daemon::notes::PATH), &n.table, None);
        }
    }
    let mut d = crate::verbs::Done::default();
    let by = "pfknock expire";
    let r = crate::verbs::expire(
        &cfg,
        &mut t,
        &sel,
        crate::verbs::ExpireHow {
            older_than,
            dry_run,
        },
        now(),
        by,
        &mut d,
    );
    finish(&cfg, &d, r)
}

fn allow(path: &Path, a: &str, service: Option<String>, force: bool) -> Result<()> {
    let cfg = load_config(path)?;
    let addr = crate::verbs::address(a)?;
    let mut t = open_tables(true)?;
    let mut d = crate::verbs::Done::default();
    let by = "pfknock allow";
    let r = crate::verbs::allow(&cfg, &mut t, addr, service.as_deref(), force, by, &mut d);
    finish(&cfg, &d, r)
}

fn revoke(path: &Path, a: &str, service: Option<String>) -> Result<()> {
    let cfg = load_config(path)?;
    let addr = crate::verbs::address(a)?;
    let svcs = cmd::services(&cfg, service.as_deref())?;
    let mut t = open_tables(true)?;
    note_removals(&cfg, &svcs, &t, Some(&[addr]));
    let mut d = crate::verbs::Done::default();
    let by = "pfknock revoke";
    let r = crate::verbs::revoke(&cfg, &mut t, addr, service.as_deref(), now(), by, &mut d);
    finish(&cfg, &d, r)
}

fn flush(path: &Path, service: Option<String>) -> Result<()> {
    let cfg = load_config(path)?;
    let svcs = cmd::services(&cfg, service.as_deref())?;
    let mut t = open_tables(true)?;
    note_removals(&cfg, &svcs, &t, None);
    let mut d = crate::verbs::Done::default();
    let r = crate::verbs::flush(
        &cfg,
        &mut t,
        service.as_deref(),
        now(),
        "pfknock flush",
        &mut d,
    );
    finish(&cfg, &d, r)
}

/// Print what a verb did and log its audit lines, even when it failed
/// half way.
fn finish(cfg: &Config, d: &crate::verbs::Done, r: Result<()>) -> Result<()> {
    for l in &d.audit {
        audit(cfg, l);
    }
    crate::verbs::print(d)?;
    r
}

/// `revoke --kill-states`: the tables (through the daemon where one runs),
/// then the host's connections, cut by this command.
fn revoke_and_kill(cli: &Cli, a: &str, service: Option<&str>) -> Result<()> {
    let cfg = load_config(&cli.config)?;
    let addr = crate::verbs::address(a)?;
    let svcs = cmd::services(&cfg, service)?;
    let nft = matches!(backend::detect()?, Backend::Nft(_));
    if nft {
        nft::conntrack()?; // refuse before changing anything
    }
    // The revoke without -k, as this command's own request.
    let mut argv = vec!["revoke".to_owned(), a.to_owned()];
    argv.extend(service.map(str::to_owned));
    let config = std::path::absolute(&cli.config).map_err(|source| Error::ConfigFile {
        file: cli.config.clone(),
        source,
    })?;
    let req = crate::control::Request { config, argv };
    match ask(cli, &req)? {
        Some(r) => {
            crate::verbs::print(&r.done)?;
            if let Some((msg, code)) = r.error {
                return Err(Error::Relayed { msg, code });
            }
        }
        None => {
            let mut t = open_tables(true)?;
            note_removals(&cfg, &svcs, &t, Some(&[addr]));
            let mut d = crate::verbs::Done::default();
            let r =
                crate::verbs::revoke(&cfg, &mut t, addr, service, now(), "pfknock revoke", &mut d);
            finish(&cfg, &d, r)?;
        }
    }
    if nft {
        let n = nft::kill_states(&addr, &svcs)?;
        say!("{addr}: connections to the protected ports cut ({n} port(s) had some).");
    } else {
        out(&pfctl::kill_states(&addr.to_string())?)?;
    }
    Ok(())
}

/// Tell a running pf daemon that this command removes `nets` (every entry
/// when `None`) from the services' dynamic tables and logs it itself
/// (`daemon::notes`). nftables names the committing process instead.
fn note_removals(
    cfg: &Config,
    svcs: &[&crate::config::Service],
    t: &impl crate::tables::Tables,
    nets: Option<&[Net]>,
) {
    if t.caps().refreshes_entries {
        return;
    }
    for s in svcs {
        for (name, role) in s.tables() {
            if role != crate::config::Role::Allow {
                let table = TableRef::new(&cfg.anchor, &name);
                daemon::notes::note(Path::new(daemon::notes::PATH), &table, nets);
            }
        }
    }
}
