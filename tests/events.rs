//! The Linux daemon learns from the kernel (nfnetlink_log for knocks,
//! nf_tables notifications for changes, one lookup per due element), in
//! network namespaces: every event logged once and rightly, nothing run on
//! a timer, and nothing lost across reloads or a deleted table.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Net, daemon_env, ns, ok, read_log, read_log_to, wait_for};

const CONF: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [1234]
rate    = "2/5"
ttl     = "TTL"
"#;

/// A daemon logging to a socket of the test's, whose nft runs are counted
/// by a wrapper that stands in for nft in PFKNOCK_TOOL_DIR.
fn counted_daemon(
    n: &Net,
) -> (
    std::process::Child,
    String,
    UnixDatagram,
    std::path::PathBuf,
) {
    let tools = n.dir.join("tools");
    fs::create_dir_all(&tools).unwrap();
    let count = n.dir.join("nft-runs");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v nft"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    fs::write(
        tools.join("nft"),
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            count.display(),
            real.trim()
        ),
    )
    .unwrap();
    fs::set_permissions(
        tools.join("nft"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // conntrack too, where the wrapper directory replaces the system's.
    if let Ok(o) = Command::new("sh")
        .args(["-c", "command -v conntrack"])
        .output()
    {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if !p.is_empty() {
            let _ = std::os::unix::fs::symlink(p, tools.join("conntrack"));
        }
    }
    let path = n.dir.join("log.sock");
    let log = UnixDatagram::bind(&path).unwrap();
    let (d, pid) = daemon_env(
        n,
        &[
            ("PFKNOCK_SYSLOG_SOCKET", path.to_str().unwrap()),
            ("PFKNOCK_TOOL_DIR", tools.to_str().unwrap()),
        ],
    );
    (d, pid, log, count)
}

/// The time left of `addr`'s element in `nft list set` text, in ms
/// (`expires 1m55s880ms`).
fn expires_ms(set: &str, addr: &str) -> Option<u64> {
    let at = set.find(addr)?;
    let rest = &set[at..];
    let e = rest.find("expires ")? + "expires ".len();
    let word: String = rest[e..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (mut ms, mut num) = (0u64, String::new());
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            1
        } else {
            match c {
                'd' => 86_400_000,
                'h' => 3_600_000,
                'm' => 60_000,
                's' => 1000,
                _ => return None,
            }
        };
        ms += num.parse::<u64>().ok()? * unit;
        num.clear();
    }
    Some(ms)
}

#[test]
fn expires_ms_reads_nft_times() {
    let t = "elements = { 198.18.1.2 timeout 2m expires 1m55s880ms }";
    assert_eq!(expires_ms(t, "198.18.1.2"), Some(115_880));
    assert_eq!(
        expires_ms("198.18.1.2 expires 9s", "198.18.1.2"),
        Some(9000)
    );
    assert_eq!(expires_ms("198.18.1.2", "198.18.1.2"), None);
}

/// The test config with this ttl, as `Net::new` writes it.
fn conf(ttl: &str) -> String {
    CONF.replace("TTL", ttl)
        .replace("PROTECTED", &common::PROTECTED.to_string())
}

/// `pfknock ARGS -c CONF -S CTL` in the server namespace: a command that a
/// running daemon does.
fn via_daemon(n: &Net, args: &[&str]) -> std::process::Output {
    n.via_daemon(args)
}

fn runs(count: &std::path::Path) -> usize {
    fs::read_to_string(count).map_or(0, |t| t.lines().count())
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn every_event_is_logged_once_as_it_happens_and_nothing_runs_on_a_timer() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "4s"));
    n.up();
    let (mut d, _pid, log, count) = counted_daemon(&n);
    // "started", then (no earlier run kept a record) the line that says so.
    let said = read_log(&log, 5, |s| s.contains("no record of the last run"));
    assert!(said.contains("started"), "{said}");

    // Idle: no nft run, nothing logged.
    let before = runs(&count);
    let said = read_log(&log, 3, |_| false);
    assert_eq!(
        runs(&count),
        before,
        "the idle daemon ran nft: {:?}",
        fs::read_to_string(&count)
    );
    assert!(said.is_empty(), "{said}");

    // A knock: authorized at once; a second knock: renewed.
    let t = Instant::now();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let said = read_log(&log, 3, |s| s.contains("authorized"));
    assert!(t.elapsed() < Duration::from_secs(3));
    let ip = n.cli_ip(false);
    assert!(
        said.contains(&format!("authorized {ip} service=ssh table=ssh")),
        "{said}"
    );
    assert!(said.contains("ttl=4s"), "{said}");
    // Two seconds on, a knock again: renewed, one line for the knock's
    // several packets past the limit.
    std::thread::sleep(Duration::from_secs(2));
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let mut said = read_log(&log, 3, |s| s.contains("renewed"));
    said.push_str(&read_log(&log, 1, |_| false));
    assert_eq!(
        said.matches(&format!("renewed {ip} service=ssh")).count(),
        1,
        "{said}"
    );
    assert!(!said.contains("authorized"), "logged once: {said}");
    assert_eq!(runs(&count), before, "knocks cost no nft run");

    // Expiry: one line when the kernel has timed it out, with age and ttl.
    let said = read_log(&log, 8, |s| s.contains("expired"));
    assert!(
        said.contains(&format!("expired {ip} service=ssh table=ssh")),
        "{said}"
    );
    assert!(
        said.contains("age=4s ttl=4s") || said.contains("age=5s ttl=4s"),
        "{said}"
    );
    assert!(!n.open(false));

    // Someone else's changes, with who made them.
    let other = format!("198.18.{}.99", n.n);
    ok(&ns(
        &n.srv,
        &[
            "nft",
            "add",
            "element",
            "inet",
            "pfknock",
            "ssh_4",
            &format!("{{ {other} }}"),
        ],
    ));
    let said = read_log(&log, 3, |s| s.contains(&other));
    assert!(
        said.contains(&format!("authorized {other} service=ssh table=ssh"))
            && said.contains("by nft["),
        "{said}"
    );
    ok(&ns(
        &n.srv,
        &[
            "nft",
            "delete",
            "element",
            "inet",
            "pfknock",
            "ssh_4",
            &format!("{{ {other} }}"),
        ],
    ));
    let said = read_log(&log, 3, |s| s.contains("removed"));
    assert!(
        said.contains(&format!("removed {other} service=ssh table=ssh"))
            && said.contains("by nft["),
        "{said}"
    );
    let said = read_log(&log, 6, |_| false);
    assert!(!said.contains(&other), "nothing more of it: {said}");

    // pfknock's own commands log what they do, once: the daemon sees the
    // committer is pfknock and adds no line of its own.
    let sock = n.dir.join("log.sock");
    let cli = |args: &[&str]| {
        let c = n.conf();
        ok(&Command::new("ip")
            .args(["netns", "exec", &n.srv, "env"])
            .arg(format!("PFKNOCK_SYSLOG_SOCKET={}", sock.display()))
            .arg(common::BIN)
            .args(args)
            .args(["-c", c.to_str().unwrap()])
            .output()
            .unwrap())
    };
    cli(&["allow", &other]);
    cli(&["revoke", &other]);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let mut said = read_log(&log, 3, |s| s.contains(&format!("authorized {ip}")));
    cli(&["revoke", &ip]);
    said.push_str(&read_log(&log, 3, |_| false));
    assert_eq!(said.matches(&format!("revoked {ip} ")).count(), 1, "{said}");
    assert_eq!(
        said.matches(&format!("revoked {other} ")).count(),
        1,
        "{said}"
    );
    assert!(!said.contains("removed"), "logged twice: {said}");
    // The line says whose authorization it was and how old (a netlink
    // lookup of the element before it goes).
    let line = said
        .lines()
        .find(|l| l.contains(&format!("revoked {ip} ")))
        .unwrap();
    assert!(
        line.contains(" service=") && line.contains(" age=") && line.contains(" ttl="),
        "{line}"
    );
    assert!(!n.open(false), "revoked");
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_deleted_table_comes_back_with_its_authorizations() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "2m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    read_log(&log, 3, |s| s.contains("authorized"));
    assert!(n.open(false));
    std::thread::sleep(Duration::from_secs(4));
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    let said = read_log(&log, 5, |s| s.contains("restored"));
    assert!(said.contains("restored 1 authorizations"), "{said}");
    assert!(said.contains("by nft["), "{said}");
    wait_for("the port open again", || n.open(false));
    let set = String::from_utf8_lossy(
        &ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]).stdout,
    )
    .into_owned();
    // The time it had left, not a fresh ttl: 4 s went by before the delete.
    let left = expires_ms(&set, &n.cli_ip(false)).expect("an expiry");
    assert!(left <= 116_000, "a fresh ttl: {set}");
    assert!(left >= 100_000, "{set}");
    // Closed still for everybody else.
    assert!(!n.open(true));
    let _ = d.kill();
    let _ = d.wait();
}

/// 200 knocks from 200 addresses while the daemon reloads 50 times: every
/// one authorized, and logged once.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn two_hundred_knocks_across_fifty_reloads_are_all_authorized_and_logged() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let dev = n.cli_dev();
    let srcs: Vec<String> = (10..210).map(|h| format!("198.18.{}.{h}", n.n)).collect();
    for s in &srcs {
        ok(&ns(
            &n.cli,
            &["ip", "addr", "add", &format!("{s}/24"), "dev", &dev],
        ));
    }
    // A syslog that keeps up with a burst of 250 lines: a receiver in the
    // server's namespace, whose datagram queue (net.unix.max_dgram_qlen,
    // per namespace, 10 by default) holds them all. The daemon drops
    // what a full syslog socket refuses, and says how many.
    let sock = n.dir.join("burst.sock");
    let out = n.dir.join("burst.log");
    let recv = "import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                s.bind(sys.argv[1])\nf = open(sys.argv[2], 'ab', 0)\n\
                while True:\n    f.write(s.recv(4096) + b'\\n')\n";
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", &n.srv, "sh", "-c"])
        .arg("sysctl -qw net.unix.max_dgram_qlen=4096 && exec python3 -c \"$0\" \"$1\" \"$2\"")
        .args([recv, sock.to_str().unwrap(), out.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for("the receiver", || sock.exists());
    let (mut d, pid) = daemon_env(&n, &[("PFKNOCK_SYSLOG_SOCKET", sock.to_str().unwrap())]);
    let said = || fs::read_to_string(&out).unwrap_or_default();
    wait_for("the daemon started", || said().contains("started"));
    let py = format!(
        "import socket, sys, threading\n\
         srcs = sys.argv[1:]\n\
         def knock(chunk):\n\
         \x20   for s in chunk:\n\
         \x20       for _ in range(3):\n\
         \x20           try:\n\
         \x20               socket.create_connection(('{}', 1234), timeout=3, source_address=(s, 0)).close()\n\
         \x20           except ConnectionResetError:\n\
         \x20               pass  # the local stack resets the completed knock\n\
         ts = [threading.Thread(target=knock, args=(srcs[i::4],)) for i in range(4)]\n\
         [t.start() for t in ts]\n\
         [t.join() for t in ts]\n",
        n.srv_ip(false)
    );
    let mut knocker = Command::new("ip")
        .args(["netns", "exec", &n.cli, "python3", "-c", &py])
        .args(&srcs)
        .spawn()
        .unwrap();
    // Each SIGHUP waits for its reload line: two signals that arrive
    // before the daemon reads the first are rightly one reload.
    let hups = 50;
    for i in 0..hups {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_for("the reload logged", || {
            said().matches("reloaded").count() > i
        });
    }
    assert!(
        knocker.wait().unwrap().success(),
        "every knock connection completed"
    );
    for _ in 0..100 {
        let t = said();
        if t.matches("authorized").count() >= 200 && t.matches("reloaded").count() >= hups {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = said();
    let _ = receiver.kill();
    let _ = receiver.wait();
    let set = String::from_utf8_lossy(
        &ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]).stdout,
    )
    .into_owned();
    let mut missing = Vec::new();
    for s in &srcs {
        if !set.contains(&format!("{s} ")) && !set.contains(&format!("{s},")) {
            missing.push(format!("{s}: not in the set"));
        }
        let logged = said.matches(&format!("authorized {s} service=ssh")).count();
        if logged != 1 {
            missing.push(format!("{s}: logged {logged} times"));
        }
    }
    assert!(missing.is_empty(), "{}\n{said}", missing.join("\n"));
    assert!(!said.contains("dropped"), "{said}");
    assert_eq!(
        said.matches("reloaded").count(),
        hups,
        "every reload: {said}"
    );
    let _ = d.kill();
    let _ = d.wait();
}

/// More expiries within a second than `log_burst` are one line with
/// their number.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_mass_expiry_is_one_line() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("log_burst = 20\n{}", CONF.replace("TTL", "3s")));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let many: Vec<String> = (10..40).map(|h| format!("198.18.{}.{h}", n.n)).collect();
    let few: Vec<String> = (50..55).map(|h| format!("198.18.{}.{h}", n.n)).collect();
    ok(&ns(
        &n.srv,
        &[
            "nft",
            &format!("add element inet pfknock ssh_4 {{ {} }}", many.join(", ")),
        ],
    ));
    // Lines of their own, and the test's socket holds ten: read as they come.
    let said = read_log(&log, 3, |s| s.matches("authorized").count() >= 10);
    assert!(said.contains("by nft["), "{said}");
    let said = read_log(&log, 8, |s| {
        s.contains("expired 30 authorizations of service ssh at once")
    });
    assert!(
        said.contains("expired 30 authorizations of service ssh at once"),
        "{said}"
    );
    assert!(
        !said.contains("expired 198.18."),
        "one line, not thirty: {said}"
    );
    // Below the threshold, a line each.
    ok(&ns(
        &n.srv,
        &[
            "nft",
            &format!("add element inet pfknock ssh_4 {{ {} }}", few.join(", ")),
        ],
    ));
    let said = read_log(&log, 8, |s| s.matches("expired 198.18.").count() >= 5);
    assert_eq!(said.matches("expired 198.18.").count(), 5, "{said}");
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn unload_and_load_through_the_daemon_are_kept() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    // One loop, one thread: events, signals and commands in one poll(2).
    let threads = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    assert_eq!(threads, 1, "the daemon runs {threads} threads");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    read_log(&log, 3, |s| s.contains("authorized"));
    assert!(n.open(false));

    let o = via_daemon(&n, &["unload"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains(&format!("daemon (pid {pid}) keeps it unloaded")),
        "{err}"
    );
    let said = read_log(&log, 3, |_| false);
    assert!(
        said.contains("anchor pfknock unloaded by pfknock unload: 1 authorizations went with it"),
        "{said}"
    );
    assert!(!said.contains("restored"), "{said}");
    // Kept so: closed, and a knock opens nothing.
    assert!(!n.open(false), "unload left it open");
    let _ = n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!n.open(false), "the daemon undid unload");
    let said = read_log(&log, 1, |_| false);
    assert!(
        !said.contains("restored") && !said.contains("authorized"),
        "{said}"
    );

    // load: the daemon loads again, and an edited config is kept; the
    // command says what a load without a daemon says (here the config's
    // warning), the daemon logs it.
    fs::write(n.conf(), conf("7m") + "window = \"3s\"\n").unwrap();
    let o = via_daemon(&n, &["load"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("loaded by the running daemon"), "{err}");
    assert!(err.contains("anchor pfknock loaded again"), "{err}");
    assert!(
        err.contains("service.window: warning: has no effect on a single knock port"),
        "{err}"
    );
    let said = read_log(&log, 3, |s| s.contains("reloaded"));
    assert!(said.contains("anchor pfknock loaded again"), "{said}");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    wait_for("the port open after load", || n.open(false));
    std::thread::sleep(Duration::from_secs(2));
    let set = String::from_utf8_lossy(
        &ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]).stdout,
    )
    .into_owned();
    assert!(set.contains("timeout 7m"), "the daemon went back: {set}");
    // Another config: refused, nothing changed.
    let other = n.dir.join("other.toml");
    fs::write(&other, conf("1m")).unwrap();
    fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ctl = n.ctl();
    let o = ns(
        &n.srv,
        &[
            common::BIN,
            "unload",
            "-c",
            other.to_str().unwrap(),
            "-S",
            ctl.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(n.open(false));
    let _ = d.kill();
    let _ = d.wait();
}

/// A revoke right after a knock, ten times: the knock's event may reach
/// the daemon after the revoke, but the host never comes back, not even
/// when the table is deleted and restored.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_revoke_right_after_a_knock_wins() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let ip = n.cli_ip(false);
    let mut said = String::new();
    for _ in 0..10 {
        ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
        ok(&via_daemon(&n, &["revoke", &ip]));
        said.push_str(&read_log(&log, 1, |_| false));
    }
    assert!(!n.open(false), "revoked");
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    said.push_str(&read_log(&log, 3, |s| s.contains("restored")));
    assert!(said.contains("restored 0 authorizations"), "{said}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!n.open(false), "a revoked host came back: {said}");
    // Each knock and each revoke once, the knock first.
    assert_eq!(
        said.matches(&format!("revoked {ip} ")).count(),
        10,
        "{said}"
    );
    assert_eq!(
        said.matches(&format!("authorized {ip} ")).count(),
        10,
        "{said}"
    );
    let order: Vec<&str> = said
        .lines()
        .filter_map(|l| {
            if l.contains(&format!("authorized {ip} ")) {
                Some("a")
            } else if l.contains(&format!("revoked {ip} ")) {
                Some("r")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(order, ["a", "r"].repeat(10), "{said}");
    assert!(!said.contains("expired"), "a ghost expiry: {said}");
    let _ = d.kill();
    let _ = d.wait();
}

/// The `expired` line follows the kernel's own expiry (nftables times
/// elements to the millisecond) by milliseconds, not by up to a second: a
/// knock at three different points of a second, each expiry measured
/// against the deadline `nft list set` shows.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_expiry_is_logged_within_milliseconds_of_the_kernels() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "2s"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let ip = n.cli_ip(false);
    let mut lates = Vec::new();
    for phase in [300u128, 600, 900] {
        // Start the knock at `phase` ms into a wall-clock second.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        sleep_ms(((1000 + phase - ms % 1000) % 1000) as u64);
        ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
        let knocked = Instant::now();
        let said = read_log(&log, 3, |s| s.contains("authorized"));
        assert!(said.contains(&format!("authorized {ip} ")), "{said}");
        let authorized_late = knocked.elapsed();
        let t0 = Instant::now();
        let set = ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]);
        let listed = t0.elapsed();
        let left = expires_ms(&String::from_utf8_lossy(&set.stdout), &ip)
            .expect("the element and its time left");
        let deadline = t0 + Duration::from_millis(left);
        let said = read_log(&log, 4, |s| s.contains("expired"));
        let at = Instant::now();
        assert!(said.contains(&format!("expired {ip} ")), "{said}");
        assert!(!n.open(false), "closed once expired");
        let late = at.saturating_duration_since(deadline);
        lates.push((phase, authorized_late, late, listed));
    }
    eprintln!(
        "(phase, authorized after the knock, expired after the deadline, nft list took): {lates:?}"
    );
    for (_, auth, late, listed) in &lates {
        // 50 ms is the aim (see the note on the issue for the measured
        // figures); the bound leaves room for a loaded test machine and
        // still fails the old whole-second deadlines at these phases.
        assert!(*auth < Duration::from_millis(250), "{lates:?}");
        assert!(*late < Duration::from_millis(250) + *listed, "{lates:?}");
    }
    let _ = d.kill();
    let _ = d.wait();
}

/// No line of severity err or worse in `said` (`<PRI>`: the low three
/// bits).
fn no_errors(said: &str) {
    let errors = said.lines().filter(|l| {
        let pri = l.strip_prefix('<').and_then(|r| r.split_once('>'));
        pri.and_then(|(p, _)| p.parse::<u8>().ok())
            .is_some_and(|p| p & 7 <= 3)
    });
    assert_eq!(errors.count(), 0, "{said}");
}

/// How many lines of a log hold `what`: a host said exactly once is 1.
fn lines_with(said: &str, what: &str) -> usize {
    said.lines().filter(|l| l.contains(what)).count()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A process with CAP_NET_ADMIN sends a forged nfnetlink_log packet
/// (prefix and payload as the kernel's, source 198.18.71.123) to each of
/// the daemon's netfilter netlink sockets: the daemon believes only the
/// kernel (port id 0), logs the forgery, authorizes nothing, and a later
/// load puts nothing back.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_forged_netlink_message_is_not_believed() {
    need_root_and_tools!();
    let mut n = Net::new(&conf("10m"));
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("last run"));
    // The daemon's netlink sockets (protocol 12, NETLINK_NETFILTER), by
    // inode, as its namespace's /proc/net/netlink lists them.
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = String::from_utf8(ns(&n.srv, &["cat", "/proc/net/netlink"]).stdout).unwrap();
    let ports: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 10 && f[1] == "12" && inodes.iter().any(|i| i == f[9]))
                .then(|| f[2].to_owned())
        })
        .collect();
    assert!(!ports.is_empty(), "the daemon's sockets: {table}");
    let py = "import socket, struct, sys\n\
              def nla(t, v):\n\
              \x20   b = struct.pack('=HH', len(v) + 4, t) + v\n\
              \x20   return b + b'\\0' * (-len(b) % 4)\n\
              ip = bytearray(40); ip[0] = 0x45; ip[12:16] = bytes([198, 18, 71, 123])\n\
              body = struct.pack('=BBH', 2, 0, socket.htons(4747)) + nla(1, b'\\x08\\x00\\x01\\x00') \\\n\
              \x20   + nla(10, b'pfknock ssh: \\0') + nla(9, bytes(ip))\n\
              m = struct.pack('=IHHII', 16 + len(body), 0x0400, 0, 0, 0) + body\n\
              s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)\n\
              for p in sys.argv[1:]:\n\
              \x20   s.sendto(m, (int(p), 0))\n";
    let mut args = vec!["python3", "-c", py];
    args.extend(ports.iter().map(String::as_str));
    ok(&ns(&n.srv, &args));
    // One line per socket, each with its own count, in any order.
    let said = read_log(&log, 8, |s| {
        s.contains("nflog: 1 netlink message") && s.contains("nf_tables monitor: 1 netlink message")
    });
    for on in ["nflog", "nf_tables monitor"] {
        assert!(
            said.contains(&format!(
                "{on}: 1 netlink message(s) that the kernel did not send ignored"
            )),
            "{said}"
        );
    }
    assert!(!said.contains("198.18.71.123"), "{said}");
    ok(&n.via_daemon(&["load"]));
    let set = String::from_utf8_lossy(
        &ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]).stdout,
    )
    .into_owned();
    assert!(!set.contains("198.18.71.123"), "{set}");
    // A real knock is still believed.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let said = read_log(&log, 3, |s| s.contains("authorized"));
    assert!(
        said.contains(&format!("authorized {} ", n.cli_ip(false))),
        "{said}"
    );
    let _ = d.kill();
    let _ = d.wait();
}

/// SIGHUP with a shorter ttl: what is past it expires at once, and is
/// logged with the new ttl; the authorized line comes within moments of
/// the knock (nflog batches up to a second by default).
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_shorter_ttl_on_sighup_expires_and_logs_at_once() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "5m"));
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let ip = n.cli_ip(false);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let t = Instant::now();
    let said = read_log(&log, 3, |s| s.contains("authorized"));
    let late = t.elapsed();
    assert!(said.contains(&format!("authorized {ip} ")), "{said}");
    assert!(
        late < Duration::from_millis(500),
        "authorized logged {late:?} late"
    );
    std::thread::sleep(Duration::from_secs(4));
    fs::write(n.conf(), conf("3s")).unwrap();
    ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
    let said = read_log(&log, 3, |s| s.contains("expired"));
    assert!(
        said.lines()
            .any(|l| l.contains(&format!("expired {ip} ")) && l.contains("ttl=3s")),
        "{said}"
    );
    // The set was changed in place, its element keeping the five minutes
    // it was given: the daemon deleted it, once.
    assert!(!n.elements("ssh_4").contains(&ip), "still in the kernel");
    assert!(!n.open(false));
    std::thread::sleep(Duration::from_millis(500));
    let said = read_log(&log, 1, |_| false);
    assert!(!said.contains(&format!(" {ip} ")), "said again: {said}");
    let _ = d.kill();
    let _ = d.wait();
}

/// A set at its size is logged once when it fills and once when it has
/// room again, and SIGUSR2 says so; a burst of knocks to a syslog socket
/// with the default queue of 10 loses no line.
/// Three connections to the knock port from each of `srcs` (addresses
/// of the client's namespace): past the rate, each is authorized.
fn knock_from(n: &Net, srcs: &[String]) {
    let py = format!(
        "import socket, sys\n\
         for s in sys.argv[1:]:\n\
         \x20   for _ in range(3):\n\
         \x20       try:\n\
         \x20           socket.create_connection(('{}', 1234), timeout=2, source_address=(s, 0)).close()\n\
         \x20       except OSError:\n\
         \x20           pass\n",
        n.srv_ip(false)
    );
    ok(&ns(
        &n.cli,
        &[
            &["python3", "-c", &py][..],
            &srcs.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    ));
}

/// A set of size 3 with ttl `ttl`, a daemon logging to the test (its
/// pid and log), knockers at the hosts `hosts` of the client's network;
/// the first three knock, and what the log said until the set was full,
/// with exactly three authorized.
fn three_in_a_set_of_three(
    ttl: &str,
    hosts: std::ops::Range<u8>,
) -> (
    Net,
    std::process::Child,
    String,
    UnixDatagram,
    Vec<String>,
    String,
) {
    let mut n = Net::new(&format!("{}size    = 3\n", CONF.replace("TTL", ttl)));
    n.up();
    let srcs = knockers(&n, hosts);
    let (d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    knock_from(&n, &srcs[..3]);
    let said = read_log(&log, 3, |s| s.contains("set ssh_4 is full"));
    assert_eq!(said.matches("authorized ").count(), 3, "{said}");
    (n, d, pid, log, srcs, said)
}

/// A full set whose authorizations time out takes a knock as soon as the
/// daemon says it has room: the kernel counts a timed-out element against
/// the size until its collection frees it, up to a second later, so the
/// line waits for the kernel's count.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_set_said_to_have_room_takes_the_next_knock() {
    need_root_and_tools!();
    let (n, mut d, _pid, log, srcs, _) = three_in_a_set_of_three("3s", 10..14);
    // They time out 3 s after their knocks.
    let said = read_log(&log, 8, |s| s.contains("set ssh_4 has room again"));
    let kernel = kernel_count(&n, "ssh_4");
    assert!(said.contains("set ssh_4 has room again"), "{said}");
    assert!(
        kernel.is_some_and(|k| k < 3),
        "the kernel counts {kernel:?} of 3 when the daemon says there is room"
    );
    assert!(n.elements("ssh_4").is_empty());
    // The next knock, at once: taken, said, and nothing else came back.
    knock_from(&n, &srcs[3..]);
    let said = read_log(&log, 3, |s| s.contains("authorized "));
    assert_eq!(said.matches("authorized ").count(), 1, "{said}");
    assert!(said.contains(&format!("authorized {} ", srcs[3])), "{said}");
    assert_eq!(n.elements("ssh_4"), [srcs[3].clone()]);
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_full_set_is_logged_when_it_fills_and_when_it_drains() {
    need_root_and_tools!();
    // Three fill the authorized set; the meter, four times its size,
    // takes twelve sources and no more.
    let (n, mut d, pid, log, srcs, said) = three_in_a_set_of_three("10m", 10..24);
    knock_from(&n, &srcs[3..]);
    let said = format!("{said}{}", read_log(&log, 3, |s| s.contains("ssh_m1_4")));
    assert_eq!(
        said.matches("set ssh_4 is full (3 elements)").count(),
        1,
        "{said}"
    );
    let full_said = said.clone();
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let said = read_log(&log, 3, |s| s.contains("status"));
    // The meter (12) is full as well: the last two sources' knocks.
    assert!(said.contains("sets ssh_4 and ssh_m1_4 full"), "{said}");
    let full_said = format!("{full_said}{said}");
    let o = n.server(&["show"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pfknock: set ssh_4 is full (3 elements)"),
        "show says it: {err}"
    );
    // The meter, which show does not list, counted by itself.
    assert!(
        err.contains("pfknock: set ssh_m1_4 is full (12 elements)"),
        "show says it: {err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        4,
        "a heading and 3 rows"
    );
    ok(&via_daemon(&n, &["revoke", &srcs[0]]));
    let o = n.server(&["show"]);
    // (The meter is full until its 5 s window ends.)
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("set ssh_4 is full"),
        "{o:?}"
    );
    let said = read_log(&log, 3, |s| s.contains("set ssh_4 has room again"));
    assert!(said.contains("set ssh_4 has room again"), "{said}");
    // The meter was full for the last sources: their knocks were logged by
    // the meter's own rule, once; room again once its entries time out
    // (5 s) and the daemon looks a window after the last dropped knock.
    let all = format!(
        "{full_said}{said}{}",
        read_log(&log, 15, |s| s.contains("ssh_m1_4 has room again"))
    );
    assert_eq!(
        all.matches("set ssh_m1_4 is full (12 elements)").count(),
        1,
        "{all}"
    );
    assert!(all.contains("set ssh_m1_4 has room again"), "{all}");
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_burst_of_authorizations_loses_no_log_line() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    // 300 allows in one go, through the daemon: 300 lines at once to a
    // socket that queues 10 (net.unix.max_dgram_qlen's default).
    let mut said = String::new();
    for h in 0..300u32 {
        let a = format!("198.19.{}.{}", h / 250, 1 + h % 250);
        ok(&via_daemon(&n, &["allow", &a]));
    }
    said.push_str(&read_log(&log, 10, |s| {
        s.matches("allowed ").count() >= 300
    }));
    assert_eq!(said.matches("allowed ").count(), 300, "{said}");
    assert!(!said.contains("dropped"), "{said}");
    // In order.
    let order: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split("allowed ").nth(1)?.split(' ').next())
        .collect();
    let want: Vec<String> = (0..300u32)
        .map(|h| format!("198.19.{}.{}", h / 250, 1 + h % 250))
        .collect();
    assert_eq!(order, want);
    let _ = d.kill();
    let _ = d.wait();
}

/// One `nft -f` adding 20,000 authorizations, while syslog takes no
/// line for 0.6 s: each is logged once, in the order nft gave them, with
/// who made it, and no line is dropped (said at once, past syslog's queue
/// of 10,000, half were). The kernel holds the 20,000, and SIGUSR2 counts
/// them. A `pfknock revoke` of the last of them sent meanwhile waits for
/// them to be said (done at once, it said them all past syslog's queue),
/// and so does a SIGHUP: their lines come after them, and the kernel and
/// the count leave that host out. Then a knock: the host is logged after them, and its port
/// opens. (Bounded at three minutes: on a busy machine the daemon, which
/// sends as syslog takes lines ten at a time, waits for a CPU each time.)
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_transaction_of_20000_by_nft_is_all_logged_as_syslog_takes_it() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let hosts = |i: u32| format!("198.19.{}.{}", i / 250, i % 250 + 1);
    n.fill("ssh_4", (0..20_000).map(|i| hosts(i) + " timeout 10m"));
    let last = hosts(19_999);
    let (said, revoked) = std::thread::scope(|sc| {
        let revoke = sc.spawn(|| n.via_daemon(&["revoke", &last]));
        std::thread::sleep(Duration::from_millis(300));
        ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
        std::thread::sleep(Duration::from_millis(300));
        // Read as syslogd would, until the 20,000 and the revoke came or
        // 180 s passed.
        let (mut said, mut by, mut buf) = (String::new(), 0, [0u8; 4096]);
        log.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(180);
        let done = |s: &str| s.contains("revoked ") && s.contains("reloaded");
        while (by < 20_000 || !done(&said)) && Instant::now() < end {
            if let Ok(k) = log.recv(&mut buf) {
                let l = String::from_utf8_lossy(&buf[..k]);
                by += usize::from(l.contains(" by nft["));
                said.push_str(&l);
                said.push('\n');
            }
        }
        (said, revoke.join().unwrap())
    });
    ok(&revoked);
    assert!(
        String::from_utf8_lossy(&revoked.stderr)
            .contains("ssh in table inet pfknock: 1/1 addresses deleted."),
        "what the revoke told the admin: {revoked:?}"
    );
    let mut said = said + &read_log(&log, 1, |_| false);
    let revoked_at = said
        .lines()
        .position(|l| l.contains(&format!("revoked {last} ")));
    let lines = said.lines().count();
    let after_all = |at: Option<usize>| {
        at.is_some_and(|i| {
            said.lines()
                .take(i)
                .filter(|l| l.contains(" by nft["))
                .count()
                == 20_000
        })
    };
    assert!(
        after_all(revoked_at),
        "the revoke's line after the 20,000 (at {revoked_at:?} of {lines})"
    );
    let reloaded_at = said.lines().position(|l| l.contains("reloaded"));
    assert!(
        after_all(reloaded_at),
        "SIGHUP's line after the 20,000 (at {reloaded_at:?} of {lines})"
    );
    said = said
        .lines()
        .filter(|l| !l.contains("revoked "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        !said.contains("dropped"),
        "{}",
        &said[said.len().saturating_sub(2000)..]
    );
    let order: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(" by nft["))
        .filter_map(|l| l.split("authorized ").nth(1)?.split(' ').next())
        .collect();
    let want: Vec<String> = (0..20_000).map(hosts).collect();
    let tail: Vec<&str> = said.lines().rev().take(5).collect();
    assert_eq!(order.len(), 20_000, "{tail:?}");
    let mut sorted = order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 20_000, "each once");
    assert_eq!(order, want, "in nft's order");
    let listed = ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]);
    ok(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.matches("198.19.").count(), 19_999);
    assert!(!listed.contains(&format!("{last} ")), "revoked");
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status: "));
    assert!(status.contains(": 19999 entries"), "{status}");
    // A knock after them is said, and opens.
    assert!(!n.open(false), "shut before the knock");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let ip = n.cli_ip(false);
    let said = read_log(&log, 5, |s| s.contains(&format!("authorized {ip} ")));
    assert!(
        said.contains(&format!("authorized {ip} service=ssh")),
        "{said}"
    );
    assert!(n.open(false), "the knocker's port opens");
    let _ = d.kill();
    let _ = d.wait();
}

/// A daemon stopped and started again logs what happened meanwhile, as
/// such: an authorization the kernel timed out, and a knock it missed.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn what_happened_while_the_daemon_was_down_is_logged_at_start() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "3s"));
    n.up();
    let dev = n.cli_dev();
    let other = format!("198.18.{}.66", n.n);
    ok(&ns(
        &n.cli,
        &["ip", "addr", "add", &format!("{other}/24"), "dev", &dev],
    ));
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let said = read_log(&log, 1, |_| false);
    assert!(said.contains("no record of the last run"), "{said}");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    read_log(&log, 3, |s| s.contains("authorized"));
    ok(&Command::new("kill").args(["-TERM", &pid]).output().unwrap());
    let _ = d.wait();
    read_log(&log, 1, |_| false);
    // While down: the first authorization times out, another host knocks.
    std::thread::sleep(Duration::from_secs(4));
    let py = format!(
        "import socket\nfor _ in range(3):\n    try:\n        socket.create_connection(('{}', 1234), timeout=2, source_address=('{other}', 0)).close()\n    except OSError:\n        pass\n",
        n.srv_ip(false)
    );
    ok(&ns(&n.cli, &["python3", "-c", &py]));
    let sock = n.dir.join("log.sock");
    let (mut d, _) = common::daemon_env(&n, &[("PFKNOCK_SYSLOG_SOCKET", sock.to_str().unwrap())]);
    let said = read_log(&log, 5, |s| {
        s.contains("while the daemon was down") && s.contains("expired")
    });
    let ip = n.cli_ip(false);
    assert!(
        said.contains(&format!(
            "expired {ip} service=ssh table=ssh anchor=pfknock ttl=3s while the daemon was down"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("authorized {other} service=ssh"))
            && said.contains("while the daemon was down"),
        "{said}"
    );
    assert!(!said.contains("no record"), "{said}");
    let _ = d.kill();
    let _ = d.wait();
}

/// A restart over what the last daemon kept, where the kernel counts just
/// as many: each set is read by a look-up of each kept authorization, not
/// dumped (the kernel's count, NFTA_SET_COUNT, says nothing else is
/// there), and nothing is said of the 50,000, which the daemon knows
/// (SIGUSR2 counts them). Then one host is added by nft and one deleted
/// while no daemon runs: the count is the same but a kept host is not
/// found, the set is read whole, and both are said as such. Then 60
/// deleted while down, past `log_burst` (`down_past_log_burst`). Last, a
/// kept host taken out and put back right before a start is read whole
/// too.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_restart_over_an_unchanged_record_looks_up_what_it_kept() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    // Whether this kernel counts a set's elements at all.
    let counts = {
        // A first daemon loads the table, and what it keeps is dropped:
        // the next start has no record.
        let _ = started_and_stopped(&n, 10);
        fs::remove_file(n.dir.join("pfknock.pid.state")).unwrap();
        held_50k(&n);
        // No element's timer may start within a second of the look-ups,
        // however long they take: over half a second for these 50,000 on
        // a loaded machine, where 1.5 s was once too little (the reading
        // then rightly fell back to a dump).
        std::thread::sleep(Duration::from_millis(3000));
        let counts = kernel_count(&n, "ssh_4");
        // With no record, one dump, checked by a look-up of what it gave
        // where the kernel counts; else dumps until two agree.
        let said = started_and_stopped(&n, 60);
        let once = "set ssh_4: read by one dump and a look-up of each of the 50000 it gave";
        match counts {
            Some(50_000) => assert!(said.contains(once), "{said}"),
            _ => assert!(said.contains("set ssh_4: read by 2 dumps"), "{said}"),
        }
        assert!(!said.contains("198.19."), "{said}");
        let (d, pid, log, _) = counted_daemon(&n);
        let said = read_log(&log, 60, |s| s.contains("set ssh_6: read"));
        if counts == Some(50_000) {
            assert!(
                said.contains("set ssh_4: read by a look-up of each of the 50000"),
                "{said}"
            );
            assert!(
                said.contains("set ssh_6: read by a look-up of each of the 0"),
                "{said}"
            );
        } else {
            // A kernel that does not count: the set is read whole.
            assert!(said.contains("set ssh_4: read whole"), "{said}");
        }
        assert!(
            !said.contains("198.19."),
            "the 50,000 are not news:\n{said}"
        );
        assert!(!said.contains("no record"), "{said}");
        // Asked until the reading is taken in (bounded: 50 times).
        let mut status = String::new();
        for _ in 0..50 {
            ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
            status = read_log(&log, 1, |s| s.contains(": 50000 entries"));
            if status.contains(": 50000 entries") {
                break;
            }
        }
        assert!(status.contains(": 50000 entries"), "{status}");
        stopped(&n, d, &pid, log);
        counts
    };
    eprintln!("this kernel's count of the set: {counts:?}");
    // While down: one added, one deleted; the count stays 50,000.
    ok(&ns(
        &n.srv,
        &[
            "nft",
            "add element inet pfknock ssh_4 { 198.19.250.1 timeout 10m }",
        ],
    ));
    ok(&ns(
        &n.srv,
        &["nft", "delete element inet pfknock ssh_4 { 198.19.0.1 }"],
    ));
    let (d, pid, log, _) = counted_daemon(&n);
    let said = read_log(&log, 60, |s| {
        s.contains("authorized 198.19.250.1 ") && s.contains("removed 198.19.0.1 ")
    });
    assert!(said.contains("set ssh_4: read whole"), "{said}");
    for l in ["authorized 198.19.250.1 ", "removed 198.19.0.1 "] {
        assert_eq!(lines_with(&said, l), 1, "{l}:\n{said}");
        assert!(
            said.lines()
                .any(|x| x.contains(l) && x.contains("while the daemon was down")),
            "{said}"
        );
    }
    assert_eq!(lines_with(&said, "198.19."), 2, "{said}");
    stopped(&n, d, &pid, log);
    down_past_log_burst(&n);
    // A kept host taken out and put back just before the start: all are
    // found and the count is the same, but that one's timer started
    // within a second of the look-ups (it could stand for another that
    // the count holds and no look-up found): read whole.
    ok(&ns(
        &n.srv,
        &[
            "nft",
            "delete element inet pfknock ssh_4 { 198.19.0.2 }; \
             add element inet pfknock ssh_4 { 198.19.0.2 timeout 10m }",
        ],
    ));
    let (mut d, _pid, log, _) = counted_daemon(&n);
    let said = read_log(&log, 60, |s| s.contains("set ssh_6: read"));
    assert!(said.contains("set ssh_4: read whole"), "{said}");
    let _ = d.kill();
    let _ = d.wait();
}

/// While down, 60 kept hosts deleted by nft: more than `log_burst` (50),
/// so the start says one line with their number (info), and each, at
/// debug; the 49,939 still there are said nowhere.
fn down_past_log_burst(n: &Net) {
    let gone: Vec<String> = (1..=60).map(|h| format!("198.19.1.{h}")).collect();
    let del = format!(
        "delete element inet pfknock ssh_4 {{ {} }}",
        gone.join(", ")
    );
    ok(&ns(&n.srv, &["nft", &del]));
    let (d, pid, log, _) = counted_daemon(n);
    let said = read_log(&log, 60, |s| s.matches("removed 198.19.1.").count() >= 60);
    // The priority's severity: info 6, debug 7 (whatever the facility).
    let severity = |l: &str| {
        let pri = l.strip_prefix('<').and_then(|r| r.split_once('>'));
        pri.and_then(|(p, _)| p.parse::<u8>().ok()).map(|p| p & 7)
    };
    let sixty = "60 changes to the authorizations of service ssh while the daemon was down";
    assert!(
        said.lines()
            .any(|l| severity(l) == Some(6) && l.ends_with(sixty)),
        "{said}"
    );
    for h in &gone {
        let each: Vec<&str> = said
            .lines()
            .filter(|l| l.contains(&format!("removed {h} ")))
            .collect();
        assert_eq!(each.len(), 1, "{h}: {said}");
        assert_eq!(severity(each[0]), Some(7), "at debug: {}", each[0]);
        assert!(
            each[0].ends_with("while the daemon was down"),
            "{}",
            each[0]
        );
    }
    assert_eq!(lines_with(&said, "198.19."), 60, "{said}");
    stopped(n, d, &pid, log);
}

/// A daemon started with no record, until its reading is done, and
/// stopped cleanly (it keeps a record); what it logged.
fn started_and_stopped(n: &Net, secs: u64) -> String {
    let (d, pid, log, _) = counted_daemon(n);
    let said = read_log(&log, secs, |s| s.contains("no record of the last run"));
    assert!(said.contains("no record of the last run"), "{said}");
    stopped(n, d, &pid, log);
    said
}

/// SIGTERM, and its exit waited for; its log socket unbound.
fn stopped(n: &Net, mut d: std::process::Child, pid: &str, log: UnixDatagram) {
    ok(&Command::new("kill").args(["-TERM", pid]).output().unwrap());
    let _ = d.wait();
    drop(log);
    let _ = fs::remove_file(n.dir.join("log.sock"));
}

/// The kernel's count of a set's elements (NFTA_SET_COUNT of
/// NFT_MSG_GETSET, read here by python, apart from the daemon's code), or
/// `None` from a kernel that does not say.
fn kernel_count(n: &Net, set: &str) -> Option<u64> {
    let py = "import socket, struct, sys\n\
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)\n\
        def attr(t, v):\n\
        \x20   v += b'\\0'\n\
        \x20   return struct.pack('HH', 4 + len(v), t) + v + b'\\0' * (-len(v) % 4)\n\
        p = struct.pack('BBH', 1, 0, 0) + attr(1, b'pfknock') + attr(2, sys.argv[1].encode())\n\
        s.send(struct.pack('IHHII', 16 + len(p), (10 << 8) | 10, 1, 1, 0) + p)\n\
        d = s.recv(65536)\n\
        l, t = struct.unpack('IH', d[:6])\n\
        o, out = 20, 'none'\n\
        while t == (10 << 8) | 9 and o + 4 <= l:\n\
        \x20   al, at = struct.unpack('HH', d[o:o + 4])\n\
        \x20   if at & 0x7fff == 20:\n\
        \x20       out = str(struct.unpack('>I', d[o + 4:o + 8])[0])\n\
        \x20   o += (al + 3) & ~3\n\
        print(out)\n";
    let o = ns(&n.srv, &["python3", "-c", py, set]);
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// 50,000 authorizations in the set (198.19.0.0/16, 10 minutes), put
/// there by nft before a daemon starts: it reads them, and logs none.
fn held_50k(n: &Net) {
    let fill: Vec<String> = (0..50_000u32)
        .map(|i| format!("198.19.{}.{} timeout 10m", i / 250, i % 250 + 1))
        .collect();
    let script = format!("add element inet pfknock ssh_4 {{ {} }}\n", fill.join(", "));
    let path = n.dir.join("fill.nft");
    fs::write(&path, script).unwrap();
    ok(&ns(&n.srv, &["nft", "-f", path.to_str().unwrap()]));
}

/// A python program that knocks (three SYNs to port 1234 of argv[1]) from
/// each source address argv[2:] in turn, `pause` seconds between hosts.
fn knock_script(pause: f64) -> String {
    format!(
        "import socket, sys, time\n\
         dst = sys.argv[1]\n\
         for src in sys.argv[2:]:\n\
         \x20   for _ in range(3):\n\
         \x20       s = socket.socket()\n\
         \x20       s.bind((src, 0))\n\
         \x20       s.settimeout(1)\n\
         \x20       try:\n\
         \x20           s.connect((dst, 1234))\n\
         \x20       except OSError:\n\
         \x20           pass\n\
         \x20       s.close()\n\
         \x20   time.sleep({pause})\n"
    )
}

/// Addresses `198.18.N.h` for `h` in `range` on the client's side.
fn knockers(n: &Net, range: std::ops::Range<u8>) -> Vec<String> {
    let dev = n.cli_dev();
    let hosts: Vec<String> = range.map(|h| format!("198.18.{}.{h}", n.n)).collect();
    for h in &hosts {
        ok(&ns(
            &n.cli,
            &["ip", "addr", "add", &format!("{h}/24"), "dev", &dev],
        ));
    }
    hosts
}

/// The daemon `pid` still reads its sets at its start, after what the
/// test did (`what`, said if not): SIGUSR2 says so. Then the log until
/// the reading is done and what waited behind it is worked through.
fn still_reading_then_done(log: &UnixDatagram, pid: &str, what: &str) -> String {
    ok(&Command::new("kill").args(["-USR2", pid]).output().unwrap());
    let mut said = read_log(log, 5, |s| s.contains("status: "));
    assert!(
        said.contains("status: reading the sets for "),
        "the reading was over before {what} (too short a reading to tell)\n{said}"
    );
    said += &read_log(log, 120, |s| s.contains("no record of the last run"));
    assert!(said.contains("no record of the last run"), "{said}");
    // What waited behind the reading is worked through: nothing more.
    said += &read_log(log, 2, |_| false);
    said
}

/// Knocks right after the start, while it still reads a set of 50,000
/// and one of 200,000 (seconds of the kernel's dumps) beside its loop:
/// each knocker is logged as authorized while the reading still runs
/// (SIGUSR2 after the lines says it reads), not once it is over; and
/// once it is over, each knocker is in the set and was logged exactly
/// once (the reading holds their elements too; taken in silently with the
/// rest, their lines were lost), the held ones not at all.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn knocks_while_the_start_reads_the_sets_are_each_logged_once_and_at_once() {
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "10m") + "size    = 262144\n"));
    n.up();
    held_50k(&n);
    fill_6(&n, 200_000, "timeout 10m");
    let hosts = knockers(&n, 10..15);
    let py = knock_script(0.0);
    let (mut d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log(&log, 10, |s| s.contains("started"));
    let mut args = vec!["python3", "-c", &py];
    let dst = n.srv_ip(false);
    args.push(&dst);
    args.extend(hosts.iter().map(String::as_str));
    ok(&ns(&n.cli, &args));
    let all_said = |s: &str| {
        hosts
            .iter()
            .all(|h| s.contains(&format!("authorized {h} ")))
    };
    said += &read_log(&log, 20, all_said);
    assert!(all_said(&said), "{said}");
    said += &still_reading_then_done(&log, &pid, "the knocks were said");
    let held = n.elements("ssh_4");
    for h in &hosts {
        assert!(held.contains(h), "{h} not in the set");
        assert_eq!(
            lines_with(&said, &format!("authorized {h} ")),
            1,
            "{h}:\n{said}"
        );
    }
    assert!(
        !said.contains("198.19.") && !said.contains("fd00:19::"),
        "the 250,000 are not news:\n{said}"
    );
    // The client's own address did not knock: it stays out, unsaid.
    let ip = n.cli_ip(false);
    assert!(!held.contains(&ip) && !n.open(false), "{ip} got in");
    assert!(!said.contains(&format!(" {ip} ")), "{said}");
    let _ = d.kill();
    let _ = d.wait();
}

/// `nft add element` and `nft delete element` by hand while the start
/// still reads a set of 50,000 and one of 200,000 beside its loop: each
/// is logged at once with who made it (SIGUSR2 after the lines says the
/// daemon still reads), not once the reading is over, and once. The
/// added host is held and counted (found by the reading, it was taken in
/// with the rest and never logged before); the deleted one, held before
/// the start, is not, and no line of it follows. A third host added,
/// deleted and added again (three transactions) is logged three times,
/// in that order, and held: the build before said the deletion and the
/// second addition again once the reading was over, and forgot it.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn changes_by_hand_while_the_start_reads_the_sets_are_each_logged_once_and_at_once() {
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "10m") + "size    = 262144\n"));
    n.up();
    held_50k(&n);
    fill_6(&n, 200_000, "timeout 10m");
    let (mut d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log(&log, 10, |s| s.contains("started"));
    let (added, deleted) = ("198.19.250.1", "198.19.0.1");
    let add = format!("add element inet pfknock ssh_4 {{ {added} timeout 10m }}");
    ok(&ns(&n.srv, &["nft", &add]));
    let del = format!("delete element inet pfknock ssh_4 {{ {deleted} }}");
    ok(&ns(&n.srv, &["nft", &del]));
    let again = "198.19.250.2";
    for verb in ["add", "delete", "add"] {
        let t = if verb == "add" { " timeout 10m" } else { "" };
        let c = format!("{verb} element inet pfknock ssh_4 {{ {again}{t} }}");
        ok(&ns(&n.srv, &["nft", &c]));
    }
    let all = |s: &str| {
        s.contains(&format!("authorized {added} "))
            && s.contains(&format!("removed {deleted} "))
            && lines_with(s, &format!(" {again} ")) == 3
    };
    said += &read_log(&log, 20, all);
    assert!(all(&said), "{said}");
    said += &still_reading_then_done(&log, &pid, "the changes were said");
    let each = [
        ("authorized", added),
        ("removed", deleted),
        ("authorized", again),
        ("removed", again),
        ("authorized", again),
    ];
    let lines: Vec<&str> = said.lines().filter(|l| l.contains(" 198.19.")).collect();
    assert_eq!(lines.len(), each.len(), "{said}");
    for (l, (verb, a)) in lines.iter().zip(each) {
        assert!(l.contains(&format!(": {verb} {a} ")), "{said}");
        assert!(l.contains(" ttl=10m by nft["), "{said}");
    }
    let held = n.elements("ssh_4");
    for a in [added, again] {
        assert!(held.contains(&a.to_owned()), "{a} not in the set");
    }
    assert!(!held.contains(&deleted.to_owned()), "{deleted} in the set");
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status <"));
    assert!(status.contains(": 250001 entries"), "{status}");
    let _ = d.kill();
    let _ = d.wait();
}

/// `pfknock revoke` while the start reads a set of 200,000 beside its
/// loop (seconds of the kernel's dumps; minutes at a million): done at
/// once, not once the reading is over. Its answer comes within 3 s with
/// no note that it waits, SIGUSR2 after it says the daemon still reads,
/// the host's port is shut and the log says `revoked` once. Once the
/// reading is over, the host (knocked before the start, so in the set the
/// reading read) is not taken in: no entry, no line of it, no ghost
/// expiry; its next knock authorizes it again, logged once. `pfknock
/// allow` during the reading is done at once too: the port opens, and
/// the daemon holds the host once the reading is over (it is in SIGUSR2's
/// count).
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_revoke_and_an_allow_during_the_starts_reading_are_done_at_once() {
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "10m") + "size    = 262144\n"));
    n.up();
    fill_6(&n, 200_000, "timeout 10m");
    let ip = n.cli_ip(false);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "the knock before the start opened nothing");
    let (mut d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log(&log, 10, |s| s.contains("started"));
    let t = Instant::now();
    let o = via_daemon(&n, &["revoke", &ip]);
    let took = t.elapsed();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        took < Duration::from_secs(3) && !err.contains("wait"),
        "the revoke waited {took:?}: {err}"
    );
    // What the admin is told: the kernel's own count of what it deleted.
    assert!(err.contains("1/1 addresses deleted"), "{err}");
    assert!(!n.open(false), "revoked, yet the port opens");
    // Another host of the client's network, allowed at once.
    let other = format!("198.18.{}.3", n.n);
    let t = Instant::now();
    let o = via_daemon(&n, &["allow", &other]);
    ok(&o);
    assert!(t.elapsed() < Duration::from_secs(3), "the allow waited");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1/1 addresses added"), "{err}");
    assert!(
        n.elements("ssh_4").contains(&other),
        "allowed, yet not held"
    );
    said += &still_reading_then_done(&log, &pid, "the revoke");
    assert!(!n.elements("ssh_4").contains(&ip), "revoked, yet held");
    assert!(!n.open(false), "the reading brought the revoked host back");
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status <"));
    assert!(status.contains(": 200001 entries"), "{status}");
    assert_eq!(
        said.matches(&format!(": allowed {other} ")).count(),
        1,
        "{said}"
    );
    let of_ip: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(&format!(" {ip} ")))
        .collect();
    assert_eq!(of_ip.len(), 1, "{said}");
    assert!(of_ip[0].contains(&format!(": revoked {ip} ")), "{said}");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    said += &read_log(&log, 5, |s| s.contains(&format!("authorized {ip} ")));
    assert_eq!(
        said.matches(&format!("authorized {ip} ")).count(),
        1,
        "{said}"
    );
    assert!(n.open(false), "the knock after the revoke opened nothing");
    let _ = d.kill();
    let _ = d.wait();
}

/// `pfknock flush ssh` while the start reads a set of 200,000 of another
/// service beside its loop (seconds of the kernel's dumps; minutes at a
/// million): done at once, not once the reading is over, with SIGUSR2
/// after it saying the daemon still reads. The host that knocked before
/// the start is gone and stays gone after the reading (the reading found
/// it, and leaves it out); its knock after the flush authorizes it again,
/// logged once; the other service's 200,000 stay, not logged. The flush
/// does not say it waited for the reading; an `expire` sent meanwhile,
/// which does wait, says so once.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_flush_during_the_starts_reading_is_done_at_once() {
    need_root_and_tools!();
    let web = "[[service]]\nname = \"web\"\nprotect = [8443]\nknock = [1235]\n\
               ttl = \"10m\"\nsize = 262144\n";
    let mut n = Net::new(&(CONF.replace("TTL", "10m") + web));
    n.up();
    let held = (0..200_000u32).map(|i| {
        format!(
            "fd00:19::{:x}:{:x} timeout 10m",
            i / 10_000 + 1,
            i % 10_000 + 1
        )
    });
    n.fill("web_6", held);
    let ip = n.cli_ip(false);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "the knock before the start opened nothing");
    let (mut d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log(&log, 10, |s| s.contains("started"));
    let o = via_daemon(&n, &["flush", "ssh"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 addresses deleted"), "{err}");
    assert!(!err.contains("reading its sets"), "done at once: {err}");
    assert!(!n.open(false), "flushed, yet the port opens");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    said += &read_log(&log, 5, |s| s.contains(&format!("authorized {ip} ")));
    // `expire` waits for the reading, and says so.
    std::thread::scope(|sc| {
        let expire = sc.spawn(|| via_daemon(&n, &["expire"]));
        said += &still_reading_then_done(&log, &pid, "the flush");
        let o = expire.join().unwrap();
        ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        let note = "waiting for the daemon: it is reading its sets";
        assert_eq!(err.matches(note).count(), 1, "{err}");
    });
    assert!(n.open(false), "the knock after the flush opened nothing");
    assert_eq!(n.elements("ssh_4"), std::slice::from_ref(&ip));
    assert_eq!(kernel_count(&n, "web_6"), Some(200_000));
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status <ssh>"));
    assert!(
        status.contains("status <ssh> in anchor pfknock: 1 entries"),
        "{status}"
    );
    let of_ip: Vec<&str> = (said.lines())
        .filter(|l| l.contains(&format!(" {ip} ")))
        .collect();
    assert_eq!(of_ip.len(), 2, "{said}");
    assert!(of_ip[0].contains(&format!(": flushed {ip} ")), "{said}");
    assert!(of_ip[1].contains(&format!(": authorized {ip} ")), "{said}");
    assert!(!said.contains("fd00:19::"), "the 200,000 are not news");
    let _ = d.kill();
    let _ = d.wait();
}

/// A SIGHUP that changes the ttl and the size of the authorized set, which
/// holds 50,000 elements, while knocks from 40 hosts go on through it. The
/// set is changed in place: the kernel has the new ttl and size, and the
/// 50,000 keep the deadlines they had (none got the new ttl), knockers
/// after the commit get the new ttl, and those before it the old. Every
/// knocker is in the set afterwards and logged once as authorized (when
/// the set was made anew, knocks that landed in the old set between the
/// load's reading and its commit were lost).
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn knocks_during_a_reload_that_changes_ttl_and_size_are_all_kept() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    held_50k(&n);
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 10, |s| s.contains("started"));
    // The start reads the sets beside the loop (a SIGHUP waits for it):
    // the knocks and the reload begin once it knows the 50,000.
    let mut known = false;
    for _ in 0..100 {
        ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
        if read_log(&log, 1, |s| s.contains(": 50000 entries")).contains(": 50000 entries") {
            known = true;
            break;
        }
    }
    assert!(known, "the start did not read the 50,000");
    let hosts = knockers(&n, 10..50);
    let py = knock_script(0.03);
    let mut knocker = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.cli,
            "python3",
            "-c",
            &py,
            &n.srv_ip(false),
        ])
        .args(&hosts)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    fs::write(n.conf(), format!("{}size    = 100000\n", conf("20m"))).unwrap();
    ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
    assert!(knocker.wait().unwrap().success());
    let said = read_log(&log, 10, |s| {
        s.contains("reloaded")
            && hosts
                .iter()
                .all(|h| s.contains(&format!("authorized {h} ")))
    });
    assert!(said.contains("reloaded"), "{said}");
    let held = n.elements("ssh_4");
    let missing: Vec<&String> = hosts.iter().filter(|h| !held.contains(h)).collect();
    assert!(
        missing.is_empty(),
        "lost in the reload: {missing:?}\n{said}"
    );
    assert_eq!(held.len(), 50_000 + hosts.len());
    // The kernel's set: the new ttl and size; the 50,000 with their old
    // deadlines (under 10 minutes left), the knockers with the new ttl.
    let o = ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("size 100000") && text.contains("timeout 20m\n"),
        "{}",
        &text[..text.len().min(400)]
    );
    let timed = |prefix: &str| -> Vec<String> {
        let elements = text.split_once("elements = { ").map_or("", |(_, e)| e);
        elements
            .split(',')
            .map(str::trim_start)
            .filter(|e| e.starts_with(prefix))
            .map(|e| e.split(" expires ").nth(1).unwrap_or("").to_owned())
            .collect()
    };
    let old = timed("198.19.");
    assert_eq!(old.len(), 50_000);
    assert!(old.iter().all(|e| e.starts_with("9m")), "{:?}", &old[..3]);
    // A knock that landed before the reload's commit has the old ttl, like
    // the 50,000; every later one the new. The hosts knock one after the
    // other, so the old ttl is on a first few of them at most, and the
    // reload (100 ms into more than a second of knocking) came before the
    // last.
    let elements = text.split_once("elements = { ").map_or("", |(_, e)| e);
    let expires: Vec<(String, String)> = hosts
        .iter()
        .map(|h| {
            let e = elements
                .split(',')
                .map(str::trim_start)
                .find(|e| e.starts_with(&format!("{h} ")))
                .unwrap_or("");
            let left = e.split(" expires ").nth(1).unwrap_or("").to_owned();
            (h.clone(), left)
        })
        .collect();
    let before = expires
        .iter()
        .take_while(|(_, e)| e.starts_with("9m"))
        .count();
    assert!(
        expires[before..].iter().all(|(_, e)| e.starts_with("19m")),
        "{expires:?}"
    );
    assert!(before < hosts.len() / 2, "{expires:?}");
    for h in &hosts {
        let lines: Vec<&str> = said
            .lines()
            .filter(|l| l.contains(&format!("authorized {h} ")))
            .collect();
        assert_eq!(lines.len(), 1, "{h}: {lines:?}");
        assert!(!lines[0].contains("removed again"), "{}", lines[0]);
    }
    let _ = d.kill();
    let _ = d.wait();
}

/// A knock under way when a SIGHUP changes `size` (rate 2/5: the third
/// connection within five seconds authorizes): .10 makes two of its
/// three connections, the reload makes the sets larger, .10 makes its
/// third and is authorized, logged once; its meter's count went on (the
/// meter was made larger in place, not anew and empty, which lost such a
/// knock now and then in `knocks_during_a_reload_...`). What must stay
/// closed stays closed: .11, two connections before the reload and none
/// after, and .12, two after it, are in no set and in no line, and the
/// client's own address, which never knocked, gets no further.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_knock_under_way_when_a_reload_changes_size_still_counts() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 10, |s| s.contains("started"));
    let hosts = knockers(&n, 10..13);
    let connects = |src: &str, times: usize| {
        let py = format!(
            "import socket\n\
             for _ in range({times}):\n\
             \x20   s = socket.socket()\n\
             \x20   s.bind(('{src}', 0))\n\
             \x20   s.settimeout(1)\n\
             \x20   try:\n\
             \x20       s.connect(('{}', 1234))\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             \x20   s.close()\n",
            n.srv_ip(false)
        );
        ok(&ns(&n.cli, &["python3", "-c", &py]));
    };
    connects(&hosts[0], 2);
    connects(&hosts[1], 2);
    fs::write(n.conf(), format!("{}size    = 100000\n", conf("10m"))).unwrap();
    ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
    let mut said = read_log(&log, 3, |s| s.contains("reloaded"));
    assert!(said.contains("reloaded"), "{said}");
    let meter = ns(
        &n.srv,
        &["nft", "list", "set", "inet", "pfknock", "ssh_m1_4"],
    );
    let meter = String::from_utf8_lossy(&meter.stdout).into_owned();
    assert!(meter.contains("size 400000"), "{meter}");
    connects(&hosts[0], 1);
    connects(&hosts[2], 2);
    let ten = format!("authorized {} ", hosts[0]);
    said += &read_log(&log, 3, |s| s.contains(&ten));
    said += &read_log(&log, 1, |_| false);
    assert_eq!(lines_with(&said, &ten), 1, "{said}");
    assert!(
        said.contains(&format!(
            "{ten}service=ssh table=ssh anchor=pfknock ttl=10m"
        )),
        "{said}"
    );
    assert_eq!(n.elements("ssh_4"), [hosts[0].clone()]);
    for h in &hosts[1..] {
        assert!(!said.contains(&format!(" {h} ")), "{h}: {said}");
    }
    assert!(!n.open(false), "the client's own address got in");
    let _ = d.kill();
    let _ = d.wait();
}

/// Make the kernel drop notifications to the daemon `pid`: its event
/// sockets hold 64 MB, and while it is stopped IPv6 elements come and go
/// (1.5M notifications, about 200 MB), nothing of them left; then the
/// nft script `then`, if any. It goes on no sooner than `stopped` after
/// the stop.
fn overrun_while_stopped(n: &Net, pid: &str, then: Option<&std::path::Path>, stopped: Duration) {
    let six: Vec<String> = (0..250_000u32)
        .map(|i| format!("fd00::5:{:x}:{:x}", i >> 16, i & 0xffff))
        .collect();
    let six = six.join(", ");
    let churn = format!(
        "add element inet pfknock ssh_6 {{ {six} }}\ndelete element inet pfknock ssh_6 {{ {six} }}\n"
    );
    let churn_path = n.dir.join("churn.nft");
    fs::write(&churn_path, churn).unwrap();
    ok(&Command::new("kill").args(["-STOP", pid]).output().unwrap());
    let since = Instant::now();
    let churned: Vec<_> = (0..3)
        .map(|_| ns(&n.srv, &["nft", "-f", churn_path.to_str().unwrap()]))
        .collect();
    let filled = then.map(|p| ns(&n.srv, &["nft", "-f", p.to_str().unwrap()]));
    std::thread::sleep(stopped.saturating_sub(since.elapsed()));
    ok(&Command::new("kill").args(["-CONT", pid]).output().unwrap());
    churned.iter().for_each(ok);
    filled.iter().for_each(ok);
}

/// An authorization due while the daemon reads its sets again after the
/// kernel dropped notifications (seconds here, minutes at a million)
/// expires at its deadline: its `expired` line comes while SIGUSR2 says
/// the daemon still reads, not once the reading is over, and no other
/// line of it follows; the kernel does not hold it and its port is shut.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_authorization_due_during_an_overruns_reading_expires_at_once() {
    need_root_and_tools!();
    // Room for the 300,000 held and the 250,000 that come and go.
    let mut n = Net::new(&(CONF.replace("TTL", "30s") + "size    = 1048576\n"));
    n.up();
    fill_6(&n, 300_000, "timeout 10m");
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 120, |s| s.contains("no record of the last run"));
    let ip = n.cli_ip(false);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let said = read_log(&log, 3, |s| s.contains(&format!("authorized {ip} ")));
    assert!(said.contains(&format!("authorized {ip} ")), "{said}");
    // The daemon goes on 1.5 s before the host is due: its reading of
    // the sets (300,000: seconds) begins at once, and the deadline comes
    // during it.
    let knocked = Instant::now();
    let until = Duration::from_millis(28_500);
    overrun_while_stopped(&n, &pid, None, until.saturating_sub(knocked.elapsed()));
    assert!(
        knocked.elapsed() < Duration::from_secs(29),
        "the host was due before the daemon went on: too slow a machine to tell"
    );
    // Line by line (the churn heard before the drop is many lines).
    log.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(90);
    let (mut of_ip, mut dropped, mut status) = (Vec::new(), false, None);
    let mut buf = [0u8; 4096];
    while Instant::now() < end && status.is_none() {
        let Ok(k) = log.recv(&mut buf) else { continue };
        let l = String::from_utf8_lossy(&buf[..k]).into_owned();
        if l.contains("the kernel dropped notifications") {
            dropped = true;
        } else if l.contains(&format!(" {ip} ")) {
            of_ip.push(l);
            ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
        } else if !of_ip.is_empty() && l.contains(": status") {
            status = Some(l);
        }
    }
    assert!(dropped, "no overrun");
    let status = status.unwrap_or_else(|| panic!("no status after {of_ip:?}"));
    // (Its per-table line says "so far (reading the sets)" then.)
    assert!(
        status.contains("reading the sets"),
        "said once the reading was over: {of_ip:?} {status}"
    );
    // The reading ends; nothing more of it.
    let said = reading_over(&log, &pid);
    of_ip.extend(
        said.lines()
            .filter(|l| l.contains(&format!(" {ip} ")))
            .map(str::to_owned),
    );
    assert_eq!(of_ip.len(), 1, "{of_ip:?}");
    assert!(of_ip[0].contains(&format!(": expired {ip} ")), "{of_ip:?}");
    assert!(!of_ip[0].contains("learned late"), "{of_ip:?}");
    assert!(!n.elements("ssh_4").contains(&ip) && !n.open(false));
    let _ = d.kill();
    let _ = d.wait();
}

/// The log until the daemon `pid` no longer reads its sets (SIGUSR2 once
/// a second, at most a minute).
fn reading_over(log: &UnixDatagram, pid: &str) -> String {
    let mut said = String::new();
    let over = |s: &str| (s.lines()).any(|l| l.contains("status <ssh>") && !l.contains("reading"));
    for _ in 0..60 {
        ok(&Command::new("kill").args(["-USR2", pid]).output().unwrap());
        said += &read_log(log, 1, over);
        if over(&said) {
            return said;
        }
    }
    panic!("the reading did not end: {said}");
}

/// A knock during the start's reading (300,000 held: seconds here,
/// minutes at a million) whose ttl (3 s) ends before the reading does:
/// its `expired` line comes at its deadline, while SIGUSR2 says the
/// daemon still reads, not once the reading is over; no other line of it
/// follows, and the kernel does not hold it.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_knock_during_the_starts_reading_expires_at_its_deadline_during_it() {
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "3s") + "size    = 1048576\n"));
    n.up();
    fill_6(&n, 300_000, "timeout 10m");
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 10, |s| s.contains("started"));
    let ip = n.cli_ip(false);
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let expired = format!("expired {ip} ");
    let mut said = read_log(&log, 10, |s| s.contains(&expired));
    assert!(said.contains(&expired), "{said}");
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status: "));
    assert!(
        status.contains("status: reading the sets for "),
        "said once the reading was over (too short a reading to tell)\n{said}{status}"
    );
    said += &reading_over(&log, &pid);
    let of_ip: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(&format!(" {ip} ")))
        .collect();
    assert_eq!(of_ip.len(), 2, "{said}");
    assert!(of_ip[0].contains(&format!(": authorized {ip} ")), "{said}");
    assert!(of_ip[1].contains(&format!(": expired {ip} ")), "{said}");
    assert!(of_ip[1].contains(" age=3s ttl=3s"), "{said}");
    assert!(!n.elements("ssh_4").contains(&ip) && !n.open(false));
    let _ = d.kill();
    let _ = d.wait();
}

/// A daemon that falls behind: stopped while another process adds 250,000
/// authorizations in one transaction and deletes the one it knew, so the
/// kernel drops notifications. After SIGCONT the daemon says so, reads the
/// set again and says what changed meanwhile as learned late (past
/// log_burst, one line with the number), never as renewed; every change
/// is said once, by notification or as learned late; and it knows what the
/// kernel holds (SIGUSR2's count is the set's). The reading runs beside
/// the loop: a SIGUSR2 sent as it begins is answered before it ends.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_overrun_says_what_changed_meanwhile_as_learned_late() {
    need_root_and_tools!();
    const N: u32 = 250_000;
    let conf = format!("{}size    = 262144\n", CONF.replace("TTL", "10m"));
    let mut n = Net::new(&conf);
    n.up();
    let (mut d, pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    // Its two event sockets hold 64 MB each (the kernel shows twice that).
    let socks = ns(&n.srv, &["ss", "-f", "netlink", "-m", "-p"]);
    let socks = String::from_utf8_lossy(&socks.stdout).into_owned();
    // (Only the daemon's sockets are in this namespace.)
    assert!(socks.matches("rb134217728").count() >= 2, "{socks}");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let said = read_log(&log, 3, |s| s.contains("authorized"));
    let knocker = said
        .split("authorized ")
        .nth(1)
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no authorization: {said}"))
        .to_owned();
    let fill: Vec<String> = (0..N)
        .map(|i| format!("198.19.{}.{}", i / 250 % 256, i % 250 + 1))
        .collect();
    // 198.19/16 holds 64,000 of these; the rest in 198.18.128/17 upwards.
    let fill: Vec<String> = fill
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i < 64_000 {
                a
            } else {
                let j = i - 64_000;
                format!("198.18.{}.{}", 128 + j / 250 % 128, j % 250 + 1)
            }
        })
        .collect();
    let mut uniq = fill.clone();
    uniq.sort();
    uniq.dedup();
    let n_fill = uniq.len() as u32;
    let script = format!(
        "add element inet pfknock ssh_4 {{ {} }}\ndelete element inet pfknock ssh_4 {{ {knocker} }}\n",
        uniq.join(", ")
    );
    let path = n.dir.join("fill.nft");
    fs::write(&path, script).unwrap();
    overrun_while_stopped(&n, &pid, Some(&path), Duration::ZERO);
    // Read line by line (a bounded wait): the lines heard by notification
    // before the kernel dropped the rest, then the overrun's.
    log.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (mut heard, mut removed, mut dropped, mut late) = (0u32, 0u32, false, None);
    // SIGUSR2 sent when the reading begins is answered while it runs.
    let mut answered = false;
    // The churn's elements the daemon heard added and learned gone.
    let mut late6 = 0u32;
    let mut rest = String::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end && late.is_none() {
        let Ok(k) = log.recv(&mut buf) else { continue };
        let l = String::from_utf8_lossy(&buf[..k]).into_owned();
        if l.contains(" by nft[") && l.contains("authorized fd00:") {
            // The churn's, heard before the kernel dropped the rest.
        } else if l.contains(" by nft[") && l.contains("authorized ") {
            heard += 1;
        } else if l.contains(&format!("removed {knocker} ")) {
            removed += 1;
        } else if l.contains("the kernel dropped notifications: reading the sets again") {
            dropped = true;
            ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
        } else if l.contains("status: reading the sets for ")
            || l.contains("status: taking in what a reading of the sets found")
        {
            answered = true;
        } else if l.contains("changes to the authorizations of service ssh (learned late") {
            late = l
                .split(" changes to")
                .next()
                .and_then(|h| h.rsplit(' ').next()?.parse::<u32>().ok());
        } else if l.contains("(learned late") && l.contains(" fd00:") {
            late6 += 1;
        } else if !l.contains("(learned late") {
            rest.push_str(&l);
            rest.push('\n');
        }
    }
    let late = late.unwrap_or_else(|| panic!("no learned-late line ({heard} heard): {rest}"));
    assert!(dropped, "{rest}");
    assert!(answered, "SIGUSR2 waited for the reading: {rest}");
    assert!(!rest.contains("renewed"), "{rest}");
    assert!(late > 0 && removed <= 1, "{late} {removed}");
    // Each addition and the removal said once, one way or the other.
    assert_eq!(
        late + heard,
        n_fill + 1 - removed + late6,
        "{late} late ({late6} of the churn), {heard} heard, {removed} removed: {rest}"
    );
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    // (The learned-late lines at debug come first.)
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut status = String::new();
    while std::time::Instant::now() < end && status.is_empty() {
        if let Ok(k) = log.recv(&mut buf) {
            let l = String::from_utf8_lossy(&buf[..k]);
            if l.contains("status ") {
                status = l.into_owned();
            }
        }
    }
    assert!(
        status.contains(&format!(": {n_fill} entries")),
        "the daemon knows what the set holds: {status}"
    );
    // The notifications still queued at the overrun were dropped with the
    // socket that held them: a new one hears what comes after.
    let add = "nft add element inet pfknock ssh_4 {198.18.77.1}";
    ok(&ns(&n.srv, &add.split(' ').collect::<Vec<_>>()));
    // (Read line by line: what is left of the lines learned late first.)
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut line = None;
    while std::time::Instant::now() < end && line.is_none() {
        if let Ok(k) = log.recv(&mut buf) {
            let l = String::from_utf8_lossy(&buf[..k]);
            if l.contains("authorized 198.18.77.1 ") {
                line = Some(l.into_owned());
            }
        }
    }
    let line = line.unwrap_or_else(|| panic!("not heard after the overrun"));
    assert!(line.contains(" by nft["), "{line}");
    // What the log says, the kernel holds and the daemon counts agree.
    assert_eq!(kernel_count(&n, "ssh_4"), Some(u64::from(n_fill) + 1));
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let said = read_log(&log, 10, |s| s.contains("status <ssh>"));
    assert!(
        said.contains(&format!(
            "status <ssh> in anchor pfknock: {} entries",
            n_fill + 1
        )),
        "{said}"
    );
    let _ = d.kill();
    let _ = d.wait();
}

/// `pfknock expire` through the daemon, which lists the authorized set
/// from what it heard rather than from the kernel: 300 hosts added by
/// another process a minute old, 100 five minutes old (their time left
/// says so); `expire -o 120s` takes exactly the 100, from the kernel and
/// in the log, each once, and says 100/400.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn expire_through_the_daemon_takes_exactly_what_is_past_the_age() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let young: Vec<String> = (0..300)
        .map(|i| format!("198.19.{}.{}", 1 + i / 200, i % 200 + 1))
        .collect();
    let old: Vec<String> = (1..=100).map(|i| format!("198.19.9.{i}")).collect();
    let elems: Vec<String> = young
        .iter()
        .map(|a| format!("{a} timeout 10m expires 9m"))
        .chain(old.iter().map(|a| format!("{a} timeout 10m expires 5m")))
        .collect();
    let script = format!(
        "add element inet pfknock ssh_4 {{ {} }}\n",
        elems.join(", ")
    );
    let path = n.dir.join("aged.nft");
    fs::write(&path, script).unwrap();
    ok(&ns(&n.srv, &["nft", "-f", path.to_str().unwrap()]));
    read_log(&log, 3, |s| s.matches("authorized ").count() >= 400);
    let o = via_daemon(&n, &["expire", "-o", "120s"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("100/400 addresses expired"), "{err}");
    let held = n.elements("ssh_4");
    assert_eq!(held.len(), 300);
    assert!(
        old.iter().all(|a| !held.contains(a)),
        "an old one is still there"
    );
    assert!(young.iter().all(|a| held.contains(a)), "a young one went");
    let said = read_log(&log, 2, |_| false);
    for a in &old {
        assert_eq!(
            lines_with(&said, &format!("expired {a} ")),
            1,
            "{a}: {said}"
        );
    }
    assert!(
        !young
            .iter()
            .any(|a| said.contains(&format!("expired {a} ")))
    );
    let _ = d.kill();
    let _ = d.wait();
}

/// `expire -o` through the daemon compares the age the log gives, to the
/// nearest second, on the daemon's own clock: a host allowed early in a
/// second (its fraction under 0.2) and expired with `-o 1s` 1.75 s later
/// is 2 s old and goes, its line saying `age=2s`; by whole seconds it was
/// 1 s old (the same second's end less its start) and stayed. A host
/// allowed a second after it, 0.75 s old (1 s), stays, unsaid.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn expire_through_the_daemon_compares_the_age_the_log_gives() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    let ip = "198.18.7.7";
    let fraction = || {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        t.unwrap().subsec_millis()
    };
    // Early in a second (bounded: a second or two).
    for _ in 0..3 {
        let f = fraction();
        if (20..150).contains(&f) {
            break;
        }
        std::thread::sleep(Duration::from_millis(u64::from((1020 - f) % 1000)));
    }
    let asked = Instant::now();
    ok(&via_daemon(&n, &["allow", ip]));
    read_log(&log, 2, |s| s.contains(&format!("allowed {ip} ")));
    let young = "198.18.7.8";
    std::thread::sleep(
        (asked + Duration::from_millis(1000)).saturating_duration_since(Instant::now()),
    );
    ok(&via_daemon(&n, &["allow", young]));
    read_log(&log, 2, |s| s.contains(&format!("allowed {young} ")));
    std::thread::sleep(
        (asked + Duration::from_millis(1750)).saturating_duration_since(Instant::now()),
    );
    let o = via_daemon(&n, &["expire", "-o", "1s"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1/2 addresses expired"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{ip}\n"));
    assert_eq!(n.elements("ssh_4"), [young], "the kernel's set");
    let said = read_log(&log, 2, |_| false);
    assert_eq!(lines_with(&said, young), 0, "{said}");
    assert_eq!(
        lines_with(
            &said,
            &format!("expired {ip} table=ssh anchor=pfknock age=2s by pfknock expire")
        ),
        1,
        "{said}"
    );
    no_errors(&said);
    let _ = d.kill();
    let _ = d.wait();
}

/// A start with no record while the set's elements time out steadily
/// (300,000 in fd00::/8, 1,500 a second): the kernel frees them once a
/// second, each freeing shifts the count a dump resumes by, and a dump
/// passes over elements that stay. The reading must hold every element
/// that was there throughout (the record the daemon keeps at its stop
/// holds each that is surely still in the set then), or say as a warning
/// that one may be missing. (Three dumps joined, as before, missed 223 of
/// 300,000 IPv4 ones timing out at 3,000 a second, with a line at debug.)
/// What times out while the reading runs is let go of between its dumps
/// and said expired then, before the reading's end, each once, and none
/// of it is kept at the stop.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_start_while_elements_time_out_reads_each_that_stays() {
    use std::net::IpAddr;
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "1h") + "size = 1048576\n"));
    n.up();
    let _ = started_and_stopped(&n, 10);
    fs::remove_file(n.dir.join("pfknock.pid.state")).unwrap();
    let (count, first, spread) = (300_000u32, 20u64, 200u32);
    let at = |i: u32| format!("fd00::1:0:{:x}:{:x}", i >> 16, i & 0xffff);
    let added = std::time::SystemTime::now();
    fill_timed_6(&n, 0..count, |i| (at(i), first + u64::from(i % spread)));
    let done = std::time::SystemTime::now();
    // Expiries running, and the daemon started.
    std::thread::sleep(Duration::from_secs(first + 2));
    let (d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log_to(&log, 300, |l| l.contains("set ssh_6: read"));
    let how = (said.lines().find(|l| l.contains("set ssh_6: read"))).map(str::to_owned);
    eprintln!("{how:?}");
    assert!(how.is_some(), "{said}");
    let expired = |s: &str| said_of(s, "expired");
    // What timed out while the reading's later dumps ran is said as the
    // reading learns it, before its end (its line), not at its take-in.
    let early = expired(&said).len();
    assert!(early > 0, "{said}");
    said += &read_log(&log, 1, |_| false);
    let stopped_at = std::time::SystemTime::now();
    stopped(&n, d, &pid, log);
    let kept = fs::read_to_string(n.dir.join("pfknock.pid.state")).unwrap();
    let kept: std::collections::HashSet<IpAddr> = kept
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    // Surely there at the stop: its timeout ends 3 s after it, counted
    // from the start of the fill (the earliest it can have begun).
    let secs = |t: std::time::SystemTime, from| t.duration_since(from).unwrap().as_secs_f64();
    let (stop, late) = (secs(stopped_at, added), secs(done, added));
    let (mut there, mut missing) = (0, Vec::new());
    for i in 0..count {
        let ends = (first + u64::from(i % spread)) as f64;
        if ends > stop + 3.0 + late {
            there += 1;
            let a: IpAddr = at(i).parse().unwrap();
            if !kept.contains(&a) {
                missing.push(a);
            }
        }
    }
    assert!(there > 100_000, "{there}");
    // Each said expired once, and none of them kept.
    let gone = expired(&said);
    let once: std::collections::HashSet<IpAddr> = gone.iter().copied().collect();
    assert_eq!(once.len(), gone.len(), "an expiry said twice");
    assert!(
        gone.iter().all(|a| !kept.contains(a)),
        "said expired, and kept"
    );
    eprintln!(
        "{early} said expired during the reading, {} in all",
        gone.len()
    );
    // Whole, or a warning that an element may be missing (the set changed
    // throughout the dumps it took): never short and silent.
    let how = how.unwrap();
    // Its severity: warning is 4, whatever the facility.
    let pri = how.strip_prefix('<').and_then(|r| r.split_once('>'));
    let warned = pri.and_then(|(p, _)| p.parse::<u8>().ok()).map(|p| p & 7) == Some(4);
    assert_eq!(warned, how.contains("may be missing"), "{how}");
    assert!(
        missing.is_empty() || warned,
        "{} of {there} missing, and nothing said: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The hosts in fd00::/8 that lines of `said` say `verb` of, in order.
fn said_of(said: &str, verb: &str) -> Vec<std::net::IpAddr> {
    let verb = format!("{verb} fd00::");
    (said.lines().filter_map(|l| l.split_once(&verb)))
        .filter_map(|(_, r)| format!("fd00::{}", r.split(' ').next()?).parse().ok())
        .collect()
}

/// Elements `range` of set ssh_6, each at the address and timeout (s)
/// `each` gives, in transactions of 50,000 (one of all overflows nft's
/// socket).
fn fill_timed_6(n: &Net, range: std::ops::Range<u32>, each: impl Fn(u32) -> (String, u64)) {
    let all: Vec<u32> = range.collect();
    for part in all.chunks(50_000) {
        let fill: Vec<String> = (part.iter().map(|i| each(*i)))
            .map(|(a, t)| format!("{a} timeout {t}s"))
            .collect();
        let path = n.dir.join("fill6.nft");
        let text = format!("add element inet pfknock ssh_6 {{ {} }}\n", fill.join(", "));
        fs::write(&path, text).unwrap();
        ok(&ns(&n.srv, &["nft", "-f", path.to_str().unwrap()]));
    }
}

/// A start over the last run's record while the set's elements time out
/// steadily: the reading lets go of what times out while it runs, and
/// each host is said once for what became of it. 100,000 in fd00::/8 were
/// there at the last run's stop, so its record keeps them; 100,000 more
/// came while no daemon ran. Both time out at 1,000 a second each during
/// the reading, and one in ten of each stays an hour. A kept host that
/// timed out is said expired once (by the comparison, "while the daemon
/// was down", or by the loop), never also authorized; one the record did
/// not keep that the reading let go of is said authorized while the
/// daemon was down, then expired, once each and in that order, and
/// before the reading's end. What stays is said of nothing but the
/// comparison's authorization of the new ones, and it is in the kernel
/// and in the record kept at the stop; nothing said expired is either.
/// (Before, the reading let go of nothing over a record: the take-in
/// expired what it found, and the comparison said nothing of a new one
/// it no longer found.)
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_start_over_a_record_while_elements_time_out_says_each_once() {
    use std::collections::{HashMap, HashSet};
    use std::net::IpAddr;
    need_root_and_tools!();
    let mut n = Net::new(&(CONF.replace("TTL", "1h") + "size = 1048576\n"));
    n.up();
    let (half, spread) = (100_000u32, 100u32);
    let at = |i: u32| format!("fd00::1:0:{:x}:{:x}", i >> 16, i & 0xffff);
    let stays = |i: u32| i.is_multiple_of(10);
    let timeout = |i: u32, first: u64| match stays(i) {
        true => 3600,
        false => first + u64::from(i % spread),
    };
    // The kept ones time out from 60 s after their fill; the new ones,
    // filled after the first daemon's run, from about then too. The
    // second daemon starts once both are timing out.
    let t0 = std::time::Instant::now();
    fill_timed_6(&n, 0..half, |i| (at(i), timeout(i, 60)));
    let said = started_and_stopped(&n, 60);
    assert!(
        said.contains(&format!("{half} authorizations found")),
        "{said}"
    );
    let first = 60u64.saturating_sub(t0.elapsed().as_secs()).max(20);
    fill_timed_6(&n, half..2 * half, |i| (at(i), timeout(i, first)));
    // Expiries running, and the daemon started (as in the test before).
    std::thread::sleep(Duration::from_secs(first + 2));
    let (d, pid, log, _) = counted_daemon(&n);
    let mut said = read_log_to(&log, 400, |l| l.contains("set ssh_6: read"));
    assert!(said.contains("set ssh_6: read whole"), "{said}");
    let of = said_of;
    // Let go of while the reading ran: said before its end (its line),
    // which the comparison, after the reading, cannot do.
    let early = of(&said, "authorized").len();
    assert!(early > 0, "{said}");
    // Until every one that does not stay has timed out, and a little.
    let end = Duration::from_secs(60 + u64::from(spread) + 5).saturating_sub(t0.elapsed());
    said += &read_log(&log, end.as_secs().max(5), |_| false);
    // What the admin is told: the daemon counts what stays, and `show`
    // lists as many (a heading and a row each).
    let staying = (0..2 * half).filter(|i| stays(*i)).count();
    ok(&Command::new("kill").args(["-USR2", &pid]).output().unwrap());
    let status = read_log(&log, 5, |s| s.contains("status <"));
    assert!(status.contains(&format!(": {staying} entries")), "{status}");
    said += &status;
    let shown = n.server(&["show"]);
    ok(&shown);
    let rows = String::from_utf8_lossy(&shown.stdout).lines().count();
    assert_eq!(rows, staying + 1, "show");
    stopped(&n, d, &pid, log);
    let kept = fs::read_to_string(n.dir.join("pfknock.pid.state")).unwrap();
    let kept: HashSet<IpAddr> = (kept.lines().filter_map(|l| l.split('\t').nth(1)))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    let held: HashSet<IpAddr> = (n.elements("ssh_6").iter())
        .filter_map(|a| a.parse().ok())
        .collect();
    // Per host, what was said of it, in order.
    let mut lines: HashMap<IpAddr, Vec<String>> = HashMap::new();
    for l in said.lines() {
        let down = if l.ends_with("while the daemon was down") {
            " down"
        } else {
            ""
        };
        for verb in ["authorized", "expired", "renewed", "removed"] {
            if let Some(a) = of(l, verb).first() {
                lines.entry(*a).or_default().push(format!("{verb}{down}"));
            }
        }
    }
    let (mut new_gone, mut kept_gone) = (0, 0);
    for i in 0..2 * half {
        let a: IpAddr = at(i).parse().unwrap();
        let e: Vec<&str> = lines
            .get(&a)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let (here, at_stop) = (held.contains(&a), kept.contains(&a));
        match (i < half, stays(i)) {
            (true, true) => assert!(e.is_empty(), "{a}: kept, stays: {e:?}"),
            (false, true) => assert_eq!(e, ["authorized down"], "{a}"),
            (true, false) => {
                assert!(e == ["expired down"] || e == ["expired"], "{a}: {e:?}");
                kept_gone += 1;
            }
            // Unseen (timed out before the reading reached it), or
            // authorized while no daemon ran, then expired.
            (false, false) if e.is_empty() => {}
            (false, false) => {
                assert_eq!(e, ["authorized down", "expired"], "{a}");
                new_gone += 1;
            }
        }
        assert_eq!((here, at_stop), (stays(i), stays(i)), "{a}: said {e:?}");
    }
    eprintln!(
        "{early} new ones said during the reading; {new_gone} new and {kept_gone} kept \
         said expired by the stop"
    );
    assert!(new_gone >= early && kept_gone > 0);
    no_errors(&said);
}

/// A SIGHUP during the start's reading of the sets, whose config keeps
/// them (the ttl shortened from 10 to 2 minutes), is loaded at once: the
/// log says `reloaded` while the daemon still reads (SIGUSR2 says so),
/// nothing says it waits, and the kernel's set has the new ttl at once.
/// A host that knocks during the reading is in the set and said
/// authorized once. Once the reading and what waited behind it are
/// worked through, a host authorized three minutes before the start,
/// within the old ttl but past the new one, is deleted from the kernel
/// and said expired once, with the new ttl (and its age: more than that,
/// since the daemon learns of it only then); none of the 150,000 the
/// reading found (IPv6, in fd00::/8) is said.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_sighup_during_the_starts_reading_is_loaded_at_once() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) =
        started_over_150k("add element inet pfknock ssh_4 { 198.18.N.99 timeout 10m expires 7m }");
    let old = knockers(&n, 99..100).remove(0);
    let hosts = knockers(&n, 10..11);
    ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
    said += &read_log(&log, 5, |s| s.contains("reloaded"));
    reloaded_while_reading(&n, &pid, &log, &mut said);
    assert!(!said.contains("waits until"), "{said}");
    // A knock while the daemon still reads.
    let py = knock_script(0.0);
    let dst = n.srv_ip(false);
    let mut args = vec!["python3", "-c", &py, &dst];
    args.extend(hosts.iter().map(String::as_str));
    ok(&ns(&n.cli, &args));
    said += &read_log(&log, 120, |s| s.contains(&format!("expired {old} ")));
    // A moment for anything said twice.
    said += &read_log(&log, 1, |_| false);
    assert_eq!(lines_with(&said, &format!("expired {old} ")), 1, "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains(&format!(": expired {old} ")) && l.ends_with(" ttl=2m")),
        "{said}"
    );
    assert_eq!(
        lines_with(&said, &format!("authorized {} ", hosts[0])),
        1,
        "{said}"
    );
    assert!(
        !said.contains("fd00:19::"),
        "the 150,000 are not news:\n{said}"
    );
    let held = n.elements("ssh_4");
    assert!(!held.contains(&old), "{old} still in the kernel");
    assert!(held.contains(&hosts[0]), "{} not in the set", hosts[0]);
    // What the port says of each: closed to the host cut, and to one
    // that never knocked; open to the knocker.
    assert!(!n.reaches_from(&old), "{old} still gets in");
    assert!(!n.open(false), "a host that did not knock gets in");
    assert!(n.reaches_from(&hosts[0]), "{} does not get in", hosts[0]);
    let _ = d.kill();
    let _ = d.wait();
}

/// During the start's reading of 150,000 authorizations in ssh_6, a
/// SIGHUP whose config takes IPv6 from the service (`family = "inet"`)
/// deletes that set while it is read: the reload is loaded at once, the
/// log says how many went with the set (the kernel's count just before),
/// the reading ends without an error, and none of the 150,000 is said
/// afterwards. The kernel has no ssh_6; a knock over IPv4 still opens,
/// and a host that never knocked stays shut out.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_sighup_deleting_the_set_being_read_is_loaded_at_once() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    fs::write(
        n.conf(),
        conf("10m") + "size    = 262144\nfamily  = \"inet\"\n",
    )
    .unwrap();
    let hosts = knockers(&n, 10..11);
    ok(&Command::new("kill").args(["-HUP", &pid]).output().unwrap());
    said += &read_log(&log, 5, |s| s.contains("went with it"));
    assert!(!said.contains("waits until"), "{said}");
    assert!(said.contains("reloaded "), "{said}");
    assert!(
        said.contains(
            "set ssh_6 of service ssh deleted by the reload: 150000 authorizations went with it"
        ),
        "{said}"
    );
    let terse = ns(
        &n.srv,
        &["nft", "-t", "list", "set", "inet", "pfknock", "ssh_6"],
    );
    assert!(!terse.status.success(), "ssh_6 still there");
    // The reading's end: its line on what it found. Nothing: the reload
    // came before it had read ssh_6 whole (a reading done before would
    // have found the 150,000, and the reload said so from what it knew).
    said += &read_log(&log, 120, |s| s.contains("authorizations found"));
    assert!(
        said.contains("): 0 authorizations found"),
        "the reading was over before the reload:\n{said}"
    );
    let py = knock_script(0.0);
    let dst = n.srv_ip(false);
    ok(&ns(&n.cli, &["python3", "-c", &py, &dst, &hosts[0]]));
    said += &read_log(&log, 5, |s| {
        s.contains(&format!("authorized {} ", hosts[0]))
    });
    said += &read_log(&log, 1, |_| false);
    assert_eq!(
        lines_with(&said, &format!("authorized {} ", hosts[0])),
        1,
        "{said}"
    );
    assert_eq!(lines_with(&said, "fd00:19::"), 0, "{said}");
    assert_eq!(lines_with(&said, "went with it"), 1, "{said}");
    no_errors(&said);
    assert!(n.reaches_from(&hosts[0]), "{} does not get in", hosts[0]);
    assert!(!n.open(false), "a host that did not knock gets in");
    let _ = d.kill();
    let _ = d.wait();
}

/// A set deleted while it is dumped (`netlink::Lookup`, over real
/// nftables): the dump ends with ENOENT, which the daemon's reading takes
/// as a set that is not there, never as what it gave so far (a dump of
/// 300,000 takes most of a second here; the set goes 50 ms into it). Run
/// inside the test's namespace (`in_namespace`).
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_set_deleted_during_its_dump_is_not_there() {
    use pfknock::kevents::ElementLookup;
    if std::env::var_os("PFKNOCK_TEST_IN_NS").is_some() {
        let mut l = pfknock::netlink::Lookup::open("pfknock").unwrap();
        let t = Instant::now();
        let del = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            // As a load does it: the rules that use the set go with it.
            let o = Command::new("nft")
                .arg(
                    "flush chain inet pfknock knocks; flush chain inet pfknock protect; \
                     delete set inet pfknock ssh_6",
                )
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            Instant::now()
        });
        let read = l.dump_heard("ssh_6", &Vec::new, None);
        let took = t.elapsed();
        let deleted = del.join().unwrap() - t;
        match read {
            Ok((r, _)) => panic!(
                "the dump ended ({took:?}, {} given) before the set went ({deleted:?})",
                r.len()
            ),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
        }
        eprintln!("the set went after {deleted:?}, the dump ended after {took:?}");
        return;
    }
    need_root_and_tools!();
    in_namespace(
        "a_set_deleted_during_its_dump_is_not_there",
        &(CONF.replace("TTL", "10m") + "size    = 524288\n"),
        |n| fill_6(n, 300_000, "timeout 10m"),
    );
}

/// Run test `name` again inside the server namespace of a network with
/// config `conf`, up and prepared by `prepare` (`PFKNOCK_TEST_IN_NS` tells
/// it where it runs), so that no socket of it meets the host's ruleset.
fn in_namespace(name: &str, conf: &str, prepare: impl FnOnce(&Net)) {
    let mut n = Net::new(conf);
    n.up();
    prepare(&n);
    let me = std::env::current_exe().unwrap();
    let o = Command::new("ip")
        .args(["netns", "exec", &n.srv])
        .arg(me)
        .args(["--exact", name, "--include-ignored", "--nocapture"])
        .env("PFKNOCK_TEST_IN_NS", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A reading of a set by one dump, checked by a look-up of each element it
/// gave against the kernel's count (`netlink::Lookup`, over real
/// nftables): an element added behind the dump's walk (here after the
/// dump, with a timer that started a minute before, as a knock's would
/// have) makes the count hold one the dump did not give. Heard added
/// meanwhile (`dump_heard`, as the daemon hears a knock), it is looked up
/// too and the one dump stands; not heard, the set is dumped again. Both
/// readings hold it. Run inside the test's namespace: the test runs
/// itself there (`PFKNOCK_TEST_IN_NS`), so no socket meets the host's
/// ruleset.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_element_heard_added_behind_the_dump_costs_no_second_dump() {
    use pfknock::kevents::ElementLookup;
    if std::env::var_os("PFKNOCK_TEST_IN_NS").is_some() {
        let nft = |cmd: &str| {
            let o = Command::new("nft").arg(cmd).output().unwrap();
            assert!(
                o.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let added = |a: &str| {
            nft(&format!(
                "add element inet pfknock ssh_6 {{ {a} timeout 10m expires 9m }}"
            ));
            a.parse::<std::net::IpAddr>().unwrap()
        };
        let mut l = pfknock::netlink::Lookup::open("pfknock").unwrap();
        // A reading, and its line on how it was read.
        let mut reading = |heard: &dyn Fn() -> Vec<std::net::IpAddr>| {
            let (read, how) = l.dump_heard("ssh_6", heard, None).unwrap();
            (read, how.unwrap().line)
        };
        let began = pfknock::clock::now_ms();
        let (read, how) = reading(&|| vec![added("fd00:19::ffff:1")]);
        assert!(
            how.contains("read by one dump and a look-up of each of the 20000 it gave and of the 1 heard added meanwhile: 20001 found"),
            "{how}"
        );
        assert_eq!(read.len(), 20_001);
        // In address order, each with the deadline nft gave it: 9 minutes
        // after it was added (the fill less than a minute before this
        // reading), a second of the kernel's rounding allowed.
        let nine = 9 * 60_000;
        let ended = pfknock::clock::now_ms();
        assert!(
            read.iter()
                .zip(read.iter().skip(1))
                .all(|(a, b)| a.addr() < b.addr())
        );
        assert!(
            read.iter().all(|e| e
                .at()
                .is_some_and(|d| d >= began + nine - 60_000 && d <= ended + nine + 1000)),
            "{:?}",
            read.iter().take(3).collect::<Vec<_>>()
        );
        // One the dump gave, deleted before its look-up: the one dump
        // stands, without it.
        let gone: std::net::IpAddr = "fd00:19::ffff:1".parse().unwrap();
        let (read, how) = reading(&|| {
            nft("delete element inet pfknock ssh_6 { fd00:19::ffff:1 }");
            Vec::new()
        });
        assert!(
            how.contains(
                "read by one dump and a look-up of each of the 20001 it gave: 20000 found"
            ),
            "{how}"
        );
        assert_eq!(read.len(), 20_000);
        assert!(read.iter().all(|e| e.addr() != gone));
        added("fd00:19::ffff:1");
        let (read, how) = reading(&|| {
            added("fd00:19::ffff:2");
            Vec::new()
        });
        assert!(!how.contains("one dump"), "{how}");
        assert_eq!(read.len(), 20_002, "{how}");
        // Heard added meanwhile, but one the dump gave too (a host that
        // knocked again): looked up twice, counted once, and the one dump
        // stands.
        let (read, how) = reading(&|| vec!["fd00:19::1:2".parse().unwrap()]);
        assert!(
            how.contains("read by one dump and a look-up of each of the 20002 it gave and of the 1 heard added meanwhile: 20002 found"),
            "{how}"
        );
        assert_eq!(read.len(), 20_002);
        // One the dump gave, added anew just before the look-ups (its
        // timer started then): found, it could stand for another that
        // left, so the one dump does not stand, and the reading holds it
        // with its new deadline, ten minutes on.
        let anew: std::net::IpAddr = "fd00:19::1:1".parse().unwrap();
        let began = pfknock::clock::now_ms();
        let (read, how) = reading(&|| {
            nft("delete element inet pfknock ssh_6 { fd00:19::1:1 }; \
                 add element inet pfknock ssh_6 { fd00:19::1:1 timeout 10m }");
            Vec::new()
        });
        assert!(!how.contains("one dump"), "{how}");
        assert_eq!(read.len(), 20_002, "{how}");
        let d = read.iter().find(|e| e.addr() == anew).and_then(|e| e.at());
        assert!(
            d.is_some_and(|d| d >= began + 10 * 60_000 - 1000),
            "{d:?} {began}"
        );
        return;
    }
    need_root_and_tools!();
    // Knocked a minute ago: none of them looks (re)started during the
    // look-ups, which would leave the set to another dump.
    in_namespace(
        "an_element_heard_added_behind_the_dump_costs_no_second_dump",
        &(CONF.replace("TTL", "10m") + "size    = 262144\n"),
        |n| fill_6(n, 20_000, "timeout 10m expires 9m"),
    );
}

/// A reading of an IPv4 set keeps each element in 10 bytes, not 22
/// (`kevents::Deadlines::V4`, chosen by the key length the kernel gives
/// for the set), and holds what the set holds: each address nft added,
/// with the deadline nft gave it. Read by a dump and by a look-up of each
/// known address alike; an IPv6 set keeps the 22-byte shape. Run inside
/// the test's namespace.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_ipv4_set_is_read_in_ten_bytes_an_element() {
    use pfknock::kevents::{Deadlines, ElementLookup};
    const N: u32 = 20_000;
    if std::env::var_os("PFKNOCK_TEST_IN_NS").is_some() {
        let want: Vec<std::net::IpAddr> = (0..N).map(|i| host_4(i).parse().unwrap()).collect();
        let mut l = pfknock::netlink::Lookup::open("pfknock").unwrap();
        let began = pfknock::clock::now_ms();
        let (read, how) = l.dump_heard("ssh_4", &Vec::new, None).unwrap();
        let known = (l.read_known("ssh_4", N as usize, &mut want.iter().copied())).unwrap();
        let ended = pfknock::clock::now_ms();
        let nine = 9 * 60_000;
        for (read, by) in [(Some(read), "dump"), (known, "look-ups")] {
            let read = read.unwrap_or_else(|| panic!("not read by {by}: {how:?}"));
            assert!(matches!(read, Deadlines::V4(_)), "{by}: {:?}", read.get(0));
            let mut got: Vec<_> = read.iter().map(|e| e.addr()).collect();
            got.sort();
            let mut w = want.clone();
            w.sort();
            assert_eq!(got, w, "{by}");
            assert!(
                read.iter().all(|e| e
                    .at()
                    .is_some_and(|d| d >= began + nine - 60_000 && d <= ended + nine + 1000)),
                "{by}: {:?} {began} {ended}",
                read.get(0)
            );
        }
        let (six, _) = l.dump_heard("ssh_6", &Vec::new, None).unwrap();
        assert!(matches!(six, Deadlines::Any(_)), "{:?}", six.get(0));
        assert_eq!(six.len(), 3);
        return;
    }
    need_root_and_tools!();
    in_namespace(
        "an_ipv4_set_is_read_in_ten_bytes_an_element",
        &(CONF.replace("TTL", "10m") + "size    = 65536\n"),
        |n| {
            n.fill(
                "ssh_4",
                (0..N).map(|i| format!("{} timeout 10m expires 9m", host_4(i))),
            );
            fill_6(n, 3, "timeout 10m expires 9m");
        },
    );
}

/// The `i`th of the test's IPv4 hosts in a set, in 198.18.0.0/15.
fn host_4(i: u32) -> String {
    format!("198.18.{}.{}", 100 + i / 250, i % 250 + 1)
}

/// `pfknock load` while the daemon reads its sets at its start, with a
/// config that keeps them (ttl 10m -> 2m): the daemon loads it at once.
/// The command returns within the three seconds after which it would
/// say that it waits, while the daemon still reads (SIGUSR2 says so), and
/// the kernel has the new ttl. A `pfknock allow` sent before it waits for
/// the reading's end, and is done then: its host in the set, said once.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_load_during_the_starts_reading_is_done_at_once() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    let host = knockers(&n, 50..51).remove(0);
    std::thread::scope(|sc| {
        let allow = sc.spawn(|| via_daemon(&n, &["allow", &host]));
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let o = via_daemon(&n, &["load"]);
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        assert!(err.contains("loaded by the running daemon"), "{err}");
        assert!(!err.contains("waiting for the daemon"), "{err}");
        assert!(took < Duration::from_secs(3), "load took {took:?}: {err}");
        reloaded_while_reading(&n, &pid, &log, &mut said);
        let o = allow.join().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    said += &read_log(&log, 5, |s| s.contains(&format!("allowed {host} ")));
    said += &read_log(&log, 1, |_| false);
    assert_eq!(lines_with(&said, &format!("allowed {host} ")), 1, "{said}");
    assert!(n.elements("ssh_4").contains(&host), "{host} not in the set");
    assert!(n.reaches_from(&host), "{host} does not get in");
    assert!(!n.open(false), "a host that was not allowed gets in");
    let _ = d.kill();
    let _ = d.wait();
}

/// SIGTERM while a command waits for the start's reading: the command is
/// not done, and says so. `pfknock expire -o 1s` is held (it reads the
/// book the reading fills); the daemon stops; the command fails, saying
/// nothing was done, and the kernel keeps the anchor: the 150,000 and a
/// host allowed during the reading are still there, that host still gets
/// in and one never allowed does not. The log says the allow and the
/// exit, and no expiry.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_command_waiting_when_the_daemon_stops_is_told_it_was_not_done() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    let host = knockers(&n, 50..51).remove(0);
    let o = via_daemon(&n, &["allow", &host]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::thread::scope(|sc| {
        let expire = sc.spawn(|| via_daemon(&n, &["expire", "-o", "1s"]));
        std::thread::sleep(Duration::from_millis(500));
        ok(&Command::new("kill").args(["-TERM", &pid]).output().unwrap());
        expire.join().unwrap()
    });
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("waiting for the daemon"), "not held: {err}");
    let why = "pfknock: daemon: stopped before this command's turn: nothing was done";
    assert!(err.contains(why), "{err}");
    assert!(!err.contains("expired"), "{err}");
    let status = d.wait().unwrap();
    assert!(status.success(), "{status:?}");
    said += &read_log(&log, 5, |s| s.contains("exiting on SIGTERM"));
    assert_eq!(lines_with(&said, &format!("allowed {host} ")), 1, "{said}");
    assert_eq!(lines_with(&said, "exiting on SIGTERM"), 1, "{said}");
    assert_eq!(lines_with(&said, "expired"), 0, "{said}");
    assert_eq!(n.elements("ssh_6").len(), 150_000);
    assert!(n.elements("ssh_4").contains(&host), "{host} not in the set");
    assert!(n.reaches_from(&host), "{host} does not get in");
    assert!(!n.open(false), "a host that was not allowed gets in");
}

/// `pfknock unload` during the start's reading (no record; 150,000 held
/// in ssh_6 and a host allowed during the reading): done at once, not held
/// until the reading ends. The command succeeds and says the daemon keeps
/// the table unloaded; the log says the unload once, with the kernel's
/// count of what went (150,001, counted just before), and nothing of what
/// the reading found once it ends: no "no record" line (which a reading
/// over before the unload would have said), none of the 150,000, nothing
/// restored, no error. The kernel: no authorized set; the allowed host
/// does not get in, nor one that knocks (kept unloaded). `load` brings the
/// table back empty: the allowed host still does not get in, a knock
/// opens.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_unload_during_the_starts_reading_is_done_at_once() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    let host = knockers(&n, 50..51).remove(0);
    ok(&via_daemon(&n, &["allow", &host]));
    let o = via_daemon(&n, &["unload"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("waiting for the daemon"), "held: {err}");
    assert!(
        err.contains(&format!("daemon (pid {pid}) keeps it unloaded")),
        "{err}"
    );
    for set in ["ssh_4", "ssh_6"] {
        let listed = ns(
            &n.srv,
            &["nft", "-t", "list", "set", "inet", "pfknock", set],
        );
        assert!(!listed.status.success(), "{set} still there");
    }
    let over = reading_over(&log, &pid);
    // What the reading found was not taken in: the daemon knows of none.
    let status = (over.lines()).rfind(|l| l.contains("status <ssh>") && !l.contains("reading"));
    assert!(status.is_some_and(|l| l.contains(": 0 entries")), "{over}");
    said += &over;
    said += &read_log(&log, 2, |_| false);
    let went = "anchor pfknock unloaded by pfknock unload: 150001 authorizations went with it; \
                kept unloaded until pfknock load or SIGHUP";
    assert_eq!(lines_with(&said, went), 1, "{said}");
    assert_eq!(lines_with(&said, "unloaded by"), 1, "{said}");
    assert_eq!(
        lines_with(&said, "no record of the last run"),
        0,
        "the reading was over before the unload, or taken in after it:\n{said}"
    );
    assert_eq!(lines_with(&said, &format!("allowed {host} ")), 1, "{said}");
    assert_eq!(lines_with(&said, "fd00:19::"), 0, "{said}");
    assert_eq!(lines_with(&said, "restored"), 0, "{said}");
    assert_eq!(lines_with(&said, "expired"), 0, "{said}");
    no_errors(&said);
    assert!(!n.reaches_from(&host), "{host} gets in after the unload");
    let _ = n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!n.open(false), "the daemon undid the unload");
    let o = via_daemon(&n, &["load"]);
    ok(&o);
    said += &read_log(&log, 3, |s| s.contains("loaded again"));
    assert!(said.contains("anchor pfknock loaded again"), "{said}");
    assert!(
        n.elements("ssh_6").is_empty(),
        "ssh_6 came back with elements"
    );
    assert!(!n.reaches_from(&host), "{host} gets in after the load");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    wait_for("the port open after a knock", || n.open(false));
    let _ = d.kill();
    let _ = d.wait();
}

/// A daemon just started (ttl 10m, sets of 262,144) over 150,000
/// authorizations in ssh_6 and what `first` (an nft command, if any)
/// adds, with its config changed to a ttl of 2m: the network, the
/// daemon, its pid, its log and what it said so far.
fn started_over_150k(first: &str) -> (Net, std::process::Child, String, UnixDatagram, String) {
    let size = "size    = 262144\n";
    let mut n = Net::new(&(CONF.replace("TTL", "10m") + size));
    n.up();
    if !first.is_empty() {
        ok(&ns(
            &n.srv,
            &[
                "nft",
                &first.replace("198.18.N.", &format!("198.18.{}.", n.n)),
            ],
        ));
    }
    fill_6(&n, 150_000, "timeout 10m");
    let (d, pid, log, _) = counted_daemon(&n);
    let said = read_log(&log, 10, |s| s.contains("started"));
    fs::write(n.conf(), conf("2m") + size).unwrap();
    (n, d, pid, log, said)
}

/// After a reload during the start's reading: the log said `reloaded`,
/// SIGUSR2 says the daemon still reads, and the kernel's set has the new
/// ttl (2m).
fn reloaded_while_reading(n: &Net, pid: &str, log: &UnixDatagram, said: &mut String) {
    ok(&Command::new("kill").args(["-USR2", pid]).output().unwrap());
    *said += &read_log(log, 5, |s| s.contains("status: "));
    assert!(said.contains("reloaded "), "{said}");
    assert!(
        said.contains("entries so far (reading the sets)"),
        "no reading after `reloaded` (over before the reload, or the reload waited for it)\n{said}"
    );
    let terse = ns(
        &n.srv,
        &["nft", "-t", "list", "set", "inet", "pfknock", "ssh_4"],
    );
    let terse = String::from_utf8_lossy(&terse.stdout).into_owned();
    assert!(
        terse.contains("timeout 2m"),
        "not in the kernel yet:\n{terse}"
    );
}

/// `count` authorizations in ssh_6 (fd00:19::/96, each with `timers`),
/// put there by nft.
fn fill_6(n: &Net, count: u32, timers: &str) {
    n.fill(
        "ssh_6",
        (0..count).map(|i| {
            format!(
                "fd00:19::{:x}:{:x} {timers}",
                i / 10_000 + 1,
                i % 10_000 + 1
            )
        }),
    );
}

/// The table's statistics as `show`, `expire` and the daemon's polls read
/// them on Linux (`NftTables::table_stats`: `-t list sets`, `list chains`,
/// and the rules counted over netlink by `Lookup::rule_counts`), against
/// the kernel: as loaded the table is whole (`Tables::intact`); a rule
/// deleted, a rule added by hand and a flushed chain each make it not;
/// without the table there are no statistics. Run inside the test's
/// namespace.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn the_rules_counted_over_netlink_tell_a_changed_table() {
    use pfknock::tables::Tables;
    let conf = format!("{CONF}[[service]]\nname = \"web\"\nprotect = [8080]\nknock = [1240]\n")
        .replace("TTL", "10m");
    if std::env::var_os("PFKNOCK_TEST_IN_NS").is_some() {
        let text = conf.replace("PROTECTED", &common::PROTECTED.to_string());
        let (cfg, _) =
            pfknock::config::Config::parse(&text, std::path::Path::new("p.toml")).unwrap();
        let mut t = pfknock::nft::NftTables::new(pfknock::nft::Nft {
            argv: vec!["nft".into()],
            remade: Default::default(),
            went: Default::default(),
        });
        // nft with a script on its standard input.
        let nft = |script: &str| {
            use std::io::Write;
            let mut c = Command::new("nft")
                .args(["-a", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let table = pfknock::render::nft::render(&cfg, "p.toml");
        let fresh = || {
            nft(&format!(
                "delete table inet pfknock\ndelete table inet pfknock_guard\n{table}"
            ))
        };
        let mut whole = |why: &str| {
            let stats = t.table_stats(&cfg.anchor).unwrap();
            assert!(stats.iter().any(|s| s.name == "web"), "{why}: {stats:?}");
            t.intact(&cfg)
        };
        assert_eq!(whole("as loaded"), Some(true));
        let listing = nft("list chain inet pfknock input");
        let last = listing
            .lines()
            .rev()
            .find_map(|l| l.rsplit_once("# handle "))
            .unwrap()
            .1;
        nft(&format!(
            "delete rule inet pfknock input handle {}",
            last.trim()
        ));
        assert_eq!(whole("a rule deleted"), Some(false));
        fresh();
        assert_eq!(whole("loaded again"), Some(true));
        nft("add rule inet pfknock output tcp dport 9 drop");
        assert_eq!(whole("a rule added"), Some(false));
        fresh();
        nft("flush chain inet pfknock prerouting");
        assert_eq!(whole("a chain flushed"), Some(false));
        nft("delete table inet pfknock");
        assert!(t.table_stats(&cfg.anchor).is_err(), "no table");
        assert_eq!(t.intact(&cfg), None);
        return;
    }
    need_root_and_tools!();
    in_namespace(
        "the_rules_counted_over_netlink_tell_a_changed_table",
        &conf,
        |_| (),
    );
}

/// An unload during the start's reading behind a command held before it
/// (`expire -o 1h`, which waits for the reading) waits its turn: both are
/// held, and the expire is done first, over the 150,000 still there (a
/// `load` held so would otherwise undo the unload). Then the unload, with
/// the count the daemon knows by then.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn an_unload_behind_a_held_command_waits_its_turn() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    let (expire, unload) = std::thread::scope(|sc| {
        let e = sc.spawn(|| via_daemon(&n, &["expire", "-o", "1h"]));
        std::thread::sleep(Duration::from_millis(300));
        let u = sc.spawn(|| via_daemon(&n, &["unload"]));
        (e.join().unwrap(), u.join().unwrap())
    });
    let (e, u) = (
        String::from_utf8_lossy(&expire.stderr).into_owned(),
        String::from_utf8_lossy(&unload.stderr).into_owned(),
    );
    assert!(expire.status.success(), "{e}");
    assert!(unload.status.success(), "{u}");
    assert!(e.contains("waiting for the daemon"), "expire not held: {e}");
    assert!(u.contains("waiting for the daemon"), "unload not held: {u}");
    assert!(
        e.contains("ssh in table inet pfknock: 0/150000 addresses expired."),
        "the expire came after the unload: {e}"
    );
    said += &reading_over(&log, &pid);
    said += &read_log(&log, 2, |_| false);
    let went = "anchor pfknock unloaded by pfknock unload: 150000 authorizations went with it";
    assert_eq!(lines_with(&said, went), 1, "{said}");
    assert_eq!(lines_with(&said, "no record of the last run"), 1, "{said}");
    no_errors(&said);
    for set in ["ssh_4", "ssh_6"] {
        let listed = ns(
            &n.srv,
            &["nft", "-t", "list", "set", "inet", "pfknock", set],
        );
        assert!(!listed.status.success(), "{set} still there");
    }
    assert!(!n.open(false), "open after the unload");
    let _ = d.kill();
    let _ = d.wait();
}

/// The table deleted by nft during the start's reading (150,000 held in
/// ssh_6, not yet read, and a host allowed during the reading): the
/// daemon restores the table with what it knows (the allowed host), and
/// says so; of ssh_6 it says that what it held is not known and cannot
/// be put back, rather than nothing (before, the log read as if the
/// table had held one authorization). None of the 150,000 is said; the
/// allowed host gets in, a host never allowed does not.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_table_deleted_during_the_starts_reading_says_what_it_cannot_restore() {
    need_root_and_tools!();
    let (n, mut d, pid, log, mut said) = started_over_150k("");
    let host = knockers(&n, 50..51).remove(0);
    ok(&via_daemon(&n, &["allow", &host]));
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    said += &read_log(&log, 60, |s| s.contains("restored"));
    said += &reading_over(&log, &pid);
    said += &read_log(&log, 2, |_| false);
    let gone = "set ssh_6: gone before this reading of the sets had read it: the \
                authorizations it held are not known, and a restore cannot put them back";
    assert_eq!(lines_with(&said, gone), 1, "{said}");
    assert_eq!(lines_with(&said, "set ssh_4: gone"), 0, "{said}");
    assert_eq!(lines_with(&said, "restored 1 authorizations"), 1, "{said}");
    assert_eq!(
        lines_with(&said, "table restored after a change by nft["),
        1,
        "{said}"
    );
    assert_eq!(lines_with(&said, &format!("allowed {host} ")), 1, "{said}");
    assert_eq!(lines_with(&said, "fd00:19::"), 0, "{said}");
    assert_eq!(n.elements("ssh_4"), std::slice::from_ref(&host));
    assert!(n.elements("ssh_6").is_empty());
    assert!(n.reaches_from(&host), "{host} does not get in");
    assert!(!n.open(false), "a host never allowed gets in");
    let _ = d.kill();
    let _ = d.wait();
}
