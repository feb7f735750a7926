//! Fail closed on nftables, as pf's main ruleset does: whenever the knock
//! rules are not in force, the protected ports are closed to every host
//! that is not on the allow list; and the daemon puts back rules and sets
//! that someone removed. Root only, in network namespaces (`common`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use common::{BIN, Net, PROTECTED, daemon, daemon_logging_to_a_socket, ns, ok, wait_for};

const CONF: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [1234]
rate    = "2/5"
ttl     = "10m"
"#;

/// The config, with the client's IPv6 address on the allow list.
fn with_allow(n: &Net) -> String {
    format!("{CONF}allow   = [\"{}\"]\n", n.cli_ip(true))
}

fn rules(n: &Net) -> String {
    String::from_utf8_lossy(&ns(&n.srv, &["nft", "list", "table", "inet", "pfknock"]).stdout)
        .into_owned()
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn unload_leaves_the_ports_closed_unless_asked_to_open_them() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    fs::write(
        n.conf(),
        with_allow(&n).replace("PROTECTED", &PROTECTED.to_string()),
    )
    .unwrap();
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    // What went is said, and logged, as the daemon logs it.
    let path = n.dir.join("log.sock");
    let log = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    log.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let o = n.server_env(
        &["unload"],
        &[("PFKNOCK_SYSLOG_SOCKET", path.to_str().unwrap())],
    );
    ok(&o);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("closed"), "{said}");
    let went = "anchor pfknock unloaded by pfknock unload: 1 authorizations went with it";
    assert!(said.lines().any(|l| l == went), "{said}");
    let mut b = [0u8; 2048];
    let k = log.recv(&mut b).expect("an audit line");
    assert!(String::from_utf8_lossy(&b[..k]).ends_with(went));
    assert!(
        !n.open(false),
        "unloaded: closed, the authorization is gone"
    );
    assert!(n.open(true), "the allow list still gets in");
    assert!(!rules(&n).contains("synproxy"), "no knock port answers");
    // Asked after it, show says what is missing in nftables' words.
    let o = n.server(&["show"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "pfknock: nft: table inet pfknock: no set ssh_4 or ssh_6 (is it loaded? pfknock load)\n"
    );
    let o = n.server(&["unload", "--open"]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("unloaded by pfknock unload --open: 0 authorizations went with it"),
        "{o:?}"
    );
    assert!(
        n.open(false),
        "--open: the port is left to the rest of the ruleset"
    );
    assert!(rules(&n).is_empty(), "the table is gone");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_refused_load_leaves_the_ports_closed() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    // A stand-in nft that refuses any table with a knock port in it and
    // passes everything else to the real one.
    let tools = n.dir.join("tools");
    fs::create_dir_all(&tools).unwrap();
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap();
    let fake = tools.join("nft");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nin=$(mktemp)\ncat > \"$in\"\nif grep -q synproxy \"$in\"; then\n\
             \techo 'Error: Could not process rule: No such file or directory' >&2\n\trm -f \"$in\"; exit 1\nfi\n\
             {real} \"$@\" < \"$in\"; rc=$?\nrm -f \"$in\"\nexit $rc\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    // The listener first (`up` loads too: take that table and its guard
    // away again).
    n.up();
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    ok(&ns(
        &n.srv,
        &["nft", "delete", "table", "inet", "pfknock_guard"],
    ));
    assert!(n.open(false), "nothing closes the port yet");
    let c = n.conf();
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.srv,
            "env",
            &format!("PFKNOCK_TOOL_DIR={}", tools.display()),
        ])
        .args([BIN, "load", "-c", c.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("loaded the closed table instead"), "{err}");
    assert!(!n.open(false), "refused, and closed");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn the_daemon_fails_closed_when_it_stops_or_dies() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("unload = true\n{CONF}"));
    n.up();
    let (mut d, pid) = daemon(&n);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(d.wait().unwrap().success());
    assert!(!n.open(false), "stopped with unload = true: closed");
    assert!(!rules(&n).contains("synproxy"));

    // A daemon killed outright leaves its rules as they were: the knocked
    // host stays in, everybody else out.
    ok(&n.server(&["load"]));
    let (mut d, pid) = daemon(&n);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = d.wait();
    assert!(n.open(false), "the knocked host");
    assert!(!n.open(true), "its IPv6 address did not knock");
    assert!(rules(&n).contains("synproxy"), "the knock rules stay");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn the_daemon_restores_flushed_chains_deleted_rules_and_sets() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    let (mut d, pid) = daemon(&n);
    let whole = rules(&n);
    let restored = |n: &Net| rules(n).lines().count() == whole.lines().count() && !n.open(false);

    ok(&ns(
        &n.srv,
        &["nft", "flush", "chain", "inet", "pfknock", "input"],
    ));
    // On nftables the daemon hears of the flush from the kernel and loads
    // the chain again within milliseconds: no poll to wait for.
    wait_for("the flushed chain back", || restored(&n));

    // The drop of the protected ports is in the chain packets to them
    // jump to.
    let listing = String::from_utf8_lossy(
        &ns(
            &n.srv,
            &["nft", "-a", "list", "chain", "inet", "pfknock", "protect"],
        )
        .stdout,
    )
    .into_owned();
    let drop = listing
        .lines()
        .find(|l| l.contains(&format!("dport {PROTECTED} drop")))
        .and_then(|l| l.rsplit("handle ").next())
        .unwrap()
        .trim()
        .to_owned();
    ok(&ns(
        &n.srv,
        &[
            "nft", "delete", "rule", "inet", "pfknock", "protect", "handle", &drop,
        ],
    ));
    wait_for("the deleted rule back", || restored(&n));

    // In one transaction: the daemon puts a flushed chain back at once,
    // and a set its rules use cannot be deleted (the meter's rules are in
    // the chain of knocks).
    ok(&ns(
        &n.srv,
        &[
            "nft",
            "flush chain inet pfknock knocks; delete set inet pfknock ssh_m1_4",
        ],
    ));
    wait_for("the deleted set back", || {
        restored(&n) && rules(&n).contains("set ssh_m1_4")
    });

    // And it all still works.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(d.wait().unwrap().success());
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_stuck_syslog_does_not_stop_the_daemon() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    // A syslog socket that nobody reads.
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    let kill = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    // Far more lines than the socket's queue holds (net.unix.max_dgram_qlen,
    // 10 by default): each `allow` through the control socket is answered
    // only once the daemon has done it and queued its line, so there are
    // exactly 40 (SIGHUPs sent close together may rightly be one reload).
    for i in 0..40 {
        let host = format!("198.19.7.{}", i + 1);
        ok(&n.via_daemon(&["allow", &host]));
    }
    // Self-heal still works.
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    wait_for("the table back", || rules(&n).contains("synproxy"));
    // Once syslog reads again, every line comes, in order: the daemon
    // kept what the socket would not take (crate::syslog's queue).
    log.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    for _ in 0..10_000 {
        match log.recv(&mut buf) {
            Ok(k) => lines.push(String::from_utf8_lossy(&buf[..k]).into_owned()),
            Err(_) => break,
        }
    }
    let allowed: Vec<&String> = lines.iter().filter(|l| l.contains(": allowed ")).collect();
    assert_eq!(allowed.len(), 40, "{lines:#?}");
    for (i, l) in allowed.iter().enumerate() {
        assert!(
            l.contains(&format!("198.19.7.{} ", i + 1)),
            "in order: {lines:#?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("restored")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("dropped")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("<3") && l.contains(">pfknock[")),
        "auth facility, no time stamp: {lines:#?}"
    );
    // And SIGTERM is heard.
    kill("-TERM");
    for _ in 0..30 {
        if d.try_wait().unwrap().is_some() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    let _ = d.kill();
    panic!("the daemon did not exit on SIGTERM");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn the_pidfile_is_never_written_through_a_link_and_never_shared() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o600)).unwrap();
    let c = n.conf();
    let run = |pidfile: &std::path::Path| {
        Command::new("ip")
            .args(["netns", "exec", &n.srv, BIN, "run", "-f", "-p"])
            .args([pidfile.to_str().unwrap(), "-c", c.to_str().unwrap()])
            .args(["-S", n.ctl().to_str().unwrap()])
            .output()
            .unwrap()
    };
    // A symbolic link: refused, and what it points at is untouched.
    let precious = n.dir.join("precious");
    fs::write(&precious, "root:x:0:0::/root:/bin/sh\n").unwrap();
    let link = n.dir.join("link.pid");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let o = run(&link);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a symbolic link"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        fs::read_to_string(&precious).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "the link stays"
    );

    // A second daemon on the same pidfile: refused, before it loads.
    let (mut d, pid) = daemon(&n);
    let pidfile = n.dir.join("pfknock.pid");
    let o = run(&pidfile);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains(&format!("pfknock is already running (pid {pid})")),
        "{err}"
    );
    // Someone replaces the pidfile: on exit the daemon leaves theirs alone.
    fs::rename(&pidfile, n.dir.join("moved.pid")).unwrap();
    fs::write(&pidfile, "4242\n").unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(d.wait().unwrap().success());
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        "4242\n",
        "not ours: kept"
    );
    // Another user's pidfile (made first where others may write) is
    // refused, not locked and used.
    std::os::unix::fs::chown(&pidfile, Some(65534), Some(65534)).unwrap();
    let o = run(&pidfile);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("owned by uid 65534, not by this user"),
        "{err}"
    );
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn run_without_f_reports_errors_before_it_detaches() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o600)).unwrap();
    let c = n.conf();
    let pidfile = n.dir.join("pfknock.pid");
    let (mut d, _) = daemon(&n);
    // A second instance without -f: the lock error reaches its stderr and
    // exit status instead of vanishing with a detached child.
    let o = Command::new("ip")
        .args(["netns", "exec", &n.srv, BIN, "run", "-p"])
        .args([pidfile.to_str().unwrap(), "-c", c.to_str().unwrap()])
        .args(["-S", n.ctl().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("already running"));
    let _ = d.kill();
    let _ = d.wait();

    // With a relative -c and -p, a detached daemon still finds both.
    let _ = fs::remove_file(&pidfile);
    let o = Command::new("ip")
        .current_dir(&n.dir)
        .args([
            "netns",
            "exec",
            &n.srv,
            BIN,
            "run",
            "-p",
            "pfknock.pid",
            "-c",
            "pfknock.toml",
            "-S",
            "ctl.sock",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The parent exits only once the child has written its own pid, so
    // rc.d's check right after start finds the daemon, not a dead parent.
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    assert!(
        Command::new("kill")
            .args(["-0", &pid])
            .status()
            .unwrap()
            .success(),
        "the pidfile names a live process when run returns: {pid}"
    );
    // SIGHUP re-reads the relative config: still running, still closed.
    fs::write(
        n.conf(),
        CONF.replace("PROTECTED", &PROTECTED.to_string())
            .replace("10m", "20m"),
    )
    .unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the new ttl", || rules(&n).contains("timeout 20m"));
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the pidfile removed", || !pidfile.exists());
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_reload_of_a_config_others_can_write_is_refused_and_logged() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    log.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // Someone makes the config world-writable and changes it.
    fs::write(
        n.conf(),
        CONF.replace("PROTECTED", &PROTECTED.to_string())
            .replace("10m", "20m"),
    )
    .unwrap();
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o666)).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    for _ in 0..20 {
        let Ok(k) = log.recv(&mut buf) else { break };
        seen.push_str(&String::from_utf8_lossy(&buf[..k]));
        seen.push('\n');
        if seen.contains("writable by someone other than root") {
            break;
        }
    }
    assert!(
        seen.contains("writable by someone other than root"),
        "{seen}"
    );
    assert!(
        rules(&n).contains("timeout 10m"),
        "the running config stays"
    );
    assert!(d.try_wait().unwrap().is_none(), "and so does the daemon");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(d.wait().unwrap().success());
}

/// Two sessions to the protected port, IPv4 and IPv6, opened before
/// pfknock ever loaded (so before anything in the namespace used
/// conntrack): each echoes once at the start and once a phase, when the
/// test says go.
struct Session {
    ctl: std::path::PathBuf,
    client: std::process::Child,
}

impl Session {
    fn open(n: &Net, phases: usize) -> Session {
        let ctl = n.dir.join("session");
        fs::create_dir_all(&ctl).unwrap();
        let py = format!(
            "import socket, sys, os, time\n\
             d = sys.argv[1]\n\
             ss = [socket.create_connection((h, {PROTECTED}), timeout=3) for h in sys.argv[2:]]\n\
             def echo(tag):\n\
             \x20   for s in ss:\n\
             \x20       s.settimeout(3)\n\
             \x20       s.sendall(tag)\n\
             \x20       if s.recv(64) != tag:\n\
             \x20           return False\n\
             \x20   return True\n\
             open(os.path.join(d, 'res0'), 'w').write('ok' if echo(b'0') else 'fail')\n\
             for i in range(1, {phases} + 1):\n\
             \x20   for _ in range(600):\n\
             \x20       if os.path.exists(os.path.join(d, 'go%d' % i)):\n\
             \x20           break\n\
             \x20       time.sleep(0.05)\n\
             \x20   try:\n\
             \x20       r = 'ok' if echo(b'%d' % i) else 'fail'\n\
             \x20   except OSError as e:\n\
             \x20       r = 'fail: %s' % e\n\
             \x20   open(os.path.join(d, 'res%d' % i), 'w').write(r)\n"
        );
        let client = Command::new("ip")
            .args(["netns", "exec", &n.cli, "python3", "-c", &py])
            .args([ctl.to_str().unwrap(), &n.srv_ip(false), &n.srv_ip(true)])
            .spawn()
            .unwrap();
        let s = Session { ctl, client };
        assert_eq!(s.res(0), "ok", "the session before pfknock");
        s
    }

    fn res(&self, i: usize) -> String {
        let f = self.ctl.join(format!("res{i}"));
        wait_for("the session's echo", || f.exists());
        sleep(Duration::from_millis(50));
        fs::read_to_string(&f).unwrap()
    }

    /// Phase `i`, after `what`: both sessions still echo.
    fn phase(&self, i: usize, what: &str) {
        fs::write(self.ctl.join(format!("go{i}")), "").unwrap();
        assert_eq!(self.res(i), "ok", "the open session was cut by {what}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}

/// An administrator's session to a protected port, open before pfknock
/// ever loaded, survives the first load, a second load, the daemon's
/// start and stop, and unload; a new connection that did not knock is
/// refused throughout.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_open_session_is_never_cut() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.listen_echo();
    let s = Session::open(&n, 5);
    ok(&n.server(&["load"]));
    s.phase(1, "the first load");
    assert!(
        !n.open(false) && !n.open(true),
        "open to a host that did not knock"
    );
    fs::write(
        n.conf(),
        CONF.replace("10m", "15m")
            .replace("PROTECTED", &PROTECTED.to_string()),
    )
    .unwrap();
    ok(&n.server(&["load"]));
    s.phase(2, "a second load");
    let (mut d, _) = daemon(&n);
    s.phase(3, "the daemon's start");
    assert!(!n.open(false));
    let _ = d.kill();
    let _ = d.wait();
    s.phase(4, "the daemon's end");
    ok(&n.server(&["unload"]));
    s.phase(5, "unload");
    assert!(!n.open(false) && !n.open(true), "unload opened it");
}

/// `unload` before pfknock ever loaded puts the closed table over a
/// session that conntrack never saw: its next packet is new to conntrack,
/// and only the closed table's rule for the connections open at load
/// lets it through. A new connection is refused.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_unload_before_any_load_keeps_an_open_session() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.listen_echo();
    let s = Session::open(&n, 1);
    let o = n.server(&["unload"]);
    ok(&o);
    // Nothing was loaded, so nothing went: only the closed table is said.
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "table inet pfknock: closed: the protected ports take the allow list only \
         (unload --open deletes it)\n"
    );
    assert!(rules(&n).contains("kept.4"), "{}", rules(&n));
    s.phase(1, "an unload before any load");
    assert!(!n.open(false) && !n.open(true), "unload opened it");
}

/// Connect attempts to the protected port from `src`, one every
/// millisecond for `secs` seconds, each given 50 ms: how many got through
/// (a SYN-ACK came back). Prints the count.
const PROBE: &str = "import socket, select, sys, time\n\
src, dst, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])\n\
live, ok, end = {}, 0, time.time() + secs\n\
while time.time() < end:\n\
\x20   s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
\x20   s.setblocking(False)\n\
\x20   s.bind((src, 0))\n\
\x20   s.connect_ex((dst, port))\n\
\x20   live[s] = time.time()\n\
\x20   _, w, _ = select.select([], list(live), [], 0.0005)\n\
\x20   for x in w:\n\
\x20       if x.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:\n\
\x20           ok += 1\n\
\x20       del live[x]\n\
\x20       x.close()\n\
\x20   for x, t in list(live.items()):\n\
\x20       if time.time() - t > 0.05:\n\
\x20           del live[x]\n\
\x20           x.close()\n\
print(ok)\n";

/// A second address of the client's, one that never knocked, tries the
/// protected port every half millisecond for 7 s (`PROBE`); it prints how
/// many connections it got.
fn stranger_probes(n: &Net) -> std::process::Child {
    let other = format!("198.18.{}.77", n.n);
    let dev = n.cli_dev();
    ok(&ns(
        &n.cli,
        &["ip", "addr", "add", &format!("{other}/24"), "dev", &dev],
    ));
    let prober = Command::new("ip")
        .args(["netns", "exec", &n.cli, "python3", "-c", PROBE, &other])
        .args([&n.srv_ip(false), &PROTECTED.to_string(), "7"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(300));
    prober
}

/// The admin's ruleset starts with `flush ruleset` and includes the file
/// pfknock writes (`nft_include`): reloading it, as `systemctl reload
/// nftables` does, keeps the protected port closed throughout to a host
/// that did not knock, and the daemon puts the knocked host back.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_ruleset_reload_that_includes_pfknock_never_opens_the_port() {
    need_root_and_tools!();
    let inc = std::env::temp_dir().join(format!("pfknock-inc-{}", std::process::id()));
    let _ = fs::remove_dir_all(&inc);
    let file = inc.join("pfknock.nft");
    let conf = format!("nft_include = \"{}\"\n{CONF}", file.display());
    let mut n = Net::new(&conf);
    n.up();
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("table inet pfknock {") && text.contains(" drop"),
        "{text}"
    );
    let admin = n.dir.join("nftables.conf");
    fs::write(
        &admin,
        format!(
            "flush ruleset\ntable inet admin {{\n\tchain input {{ type filter hook input priority 0; policy accept; }}\n}}\ninclude \"{}/*.nft\"\n",
            inc.display()
        ),
    )
    .unwrap();
    let (mut d, _) = daemon(&n);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    wait_for("the knock", || n.open(false));
    // A second address of the client's that never knocked probes, while
    // the whole ruleset is reloaded 50 times.
    let prober = stranger_probes(&n);
    for _ in 0..50 {
        ok(&ns(&n.srv, &["nft", "-f", admin.to_str().unwrap()]));
        sleep(Duration::from_millis(100));
    }
    let out = prober.wait_with_output().unwrap();
    let got: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(got, 0, "{got} connections from a host that never knocked");
    assert!(rules(&n).contains("synproxy"));
    wait_for("the knocked host back", || n.open(false));
    // unload leaves the include closed; unload --open takes it away.
    let _ = d.kill();
    let _ = d.wait();
    ok(&n.server(&["unload"]));
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("synproxy") && text.contains(" drop"),
        "{text}"
    );
    ok(&n.server(&["unload", "--open"]));
    assert!(!file.exists());
    let _ = fs::remove_dir_all(&inc);
}

/// In the foreground with no terminal and no syslogd, the daemon's lines
/// go to stderr instead of nowhere.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_foreground_daemon_with_nowhere_to_log_says_it_on_stderr() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o600)).unwrap();
    let pidfile = n.dir.join("pfknock.pid");
    let c = n.conf();
    let d = Command::new("ip")
        .args(["netns", "exec", &n.srv, "env"])
        .arg(format!(
            "PFKNOCK_SYSLOG_SOCKET={}",
            n.dir.join("no-syslog").display()
        ))
        .args([BIN, "run", "-f", "-p", pidfile.to_str().unwrap()])
        .args(["-c", c.to_str().unwrap(), "-S", n.ctl().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the pidfile", || {
        fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())
    });
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    sleep(Duration::from_millis(300));
    ok(&Command::new("kill").args(["-TERM", &pid]).output().unwrap());
    let out = d.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pfknock: started: 1 service(s)"), "{err}");
    assert!(err.contains("pfknock: exiting on SIGTERM"), "{err}");
}

/// Someone deletes pfknock's table 50 times (`nft delete table inet
/// pfknock`, no include to bring it back) while a second address of the
/// client that never knocked tries to connect every half millisecond: the
/// guard table keeps the protected port closed to it throughout (0
/// connections; before the guard, 25 to 44 SYN-ACKs per deletion were
/// measured), the daemon restores the table after each deletion, saying
/// so each time, and the host that knocked gets back in.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn deleting_the_table_never_opens_the_port() {
    need_root_and_tools!();
    let mut n = Net::new(CONF);
    n.up();
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    wait_for("the knock", || n.open(false));
    let prober = stranger_probes(&n);
    let ip = n.cli_ip(false);
    for _ in 0..50 {
        // Restored, the knocked host put back too: deleting the table
        // between the daemon's load and its put-back would rightly give
        // "restored 0 authorizations of 1".
        wait_for("the table restored", || {
            rules(&n).contains("synproxy") && n.elements("ssh_4").contains(&ip)
        });
        ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
        sleep(Duration::from_millis(100));
    }
    let out = prober.wait_with_output().unwrap();
    let got: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(got, 0, "{got} connections from a host that never knocked");
    assert!(rules(&n).contains("synproxy"), "restored");
    wait_for("the knocked host back", || n.open(false));
    let said = common::read_log(&log, 3, |s| s.matches("table restored").count() >= 50);
    assert_eq!(said.matches("table restored").count(), 50, "{said}");
    assert_eq!(
        said.matches("restored 1 authorizations").count(),
        50,
        "{said}"
    );
    ok(&Command::new("kill").arg(&pid).output().unwrap());
    let _ = d.wait();
}
