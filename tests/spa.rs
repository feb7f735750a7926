//! Signed knocks end to end, in network namespaces (root only): the
//! daemon's listener, the kernel's set, `show` and the log must agree on
//! what opened, and on what did not: replays from the same or another
//! address, in and after the window, a forged sender, wrong and unknown
//! keys, datagrams of every wrong shape, and a flood.
//!
//! The client namespace holds two addresses, 198.18.N.2 (the knocker)
//! and 198.18.N.3 (the attacker). Datagrams are made here with the
//! library and sent from the namespace by python, so that a test can
//! send the same bytes twice, from either address.
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Net, PROTECTED, ns, ok};
use pfknock::spa::{Action, Knock, Target, key_id, keys};

const CONF: &str = r#"
spa_user = "nobody"

[[service]]
name    = "ssh"
protect = [PROTECTED]
ttl     = "2m"
[service.spa]
port    = 62201
keys    = "KEYS"
window  = "5s"
"#;

const WINDOW: u64 = 5;

struct Rig {
    n: Net,
    alice: ed25519_dalek::SigningKey,
    mallory: ed25519_dalek::SigningKey,
    daemon: std::process::Child,
    pid: String,
    log: std::os::unix::net::UnixDatagram,
    said: String,
}

impl Rig {
    /// A daemon with alice's public key (not mallory's), its listener
    /// ready and its first window gone by.
    fn new(conf: &str) -> Rig {
        Rig::with_window(conf, WINDOW)
    }

    /// `new`, for a config whose window is `window` seconds.
    fn with_window(conf: &str, window: u64) -> Rig {
        Rig::prepared(conf, window, |_| {})
    }

    /// `with_window`, with the table as `prepare` leaves it once loaded,
    /// before the daemon starts.
    fn prepared(conf: &str, window: u64, prepare: impl FnOnce(&Net)) -> Rig {
        let mut n = Net::new("");
        let keydir = n.dir.join("keys");
        std::fs::create_dir(&keydir).unwrap();
        std::fs::write(
            n.conf(),
            conf.replace("PROTECTED", &PROTECTED.to_string())
                .replace("KEYS", keydir.to_str().unwrap()),
        )
        .unwrap();
        for who in ["alice", "mallory"] {
            ok(&Command::new(BIN)
                .args(["keygen", "--spa"])
                .arg(n.dir.join(who))
                .output()
                .unwrap());
        }
        std::fs::copy(n.dir.join("alice.pub"), keydir.join("alice.pub")).unwrap();
        let dev = n.cli_dev();
        common::sh(&[
            "ip",
            "-n",
            &n.cli,
            "addr",
            "add",
            &format!("198.18.{}.3/24", n.n),
            "dev",
            &dev,
        ]);
        n.up();
        prepare(&n);
        let (daemon, pid, log) = common::daemon_logging_to_a_socket(&n);
        let said = common::read_log(&log, 10, |s| s.contains("listener pid"));
        assert!(said.contains("sandbox seccomp"), "{said}");
        // Stamps from before the start and one window on are refused.
        std::thread::sleep(Duration::from_secs(window + 2));
        Rig {
            alice: keys::read_private(&n.dir.join("alice")).unwrap(),
            mallory: keys::read_private(&n.dir.join("mallory")).unwrap(),
            n,
            daemon,
            pid,
            log,
            said,
        }
    }

    /// Alice's signed knock from `host`, and the line that it opened:
    /// the datagram.
    fn opened_by_alice(&mut self, host: u8) -> Vec<u8> {
        let d = self.open_for(host);
        self.send(host, &d, 1);
        let line = self.wait_log("by signed knock of key alice", 5);
        let ip = self.ip(host);
        assert!(
            line.contains(&format!("allowed {ip} service=ssh")),
            "{line}"
        );
        d
    }

    fn ip(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.n.n)
    }

    /// A datagram for `target`, stamped now plus `skew`, signed by `by`
    /// under the key id of `id`.
    fn datagram(
        &self,
        target: Target,
        skew: i64,
        by: &ed25519_dalek::SigningKey,
        id: &ed25519_dalek::SigningKey,
    ) -> Vec<u8> {
        Knock {
            action: Action::Open,
            target,
            time: (pfknock::clock::now() + skew) as u64,
            nonce: pfknock::trusted::random().unwrap(),
            key_id: key_id(id.verifying_key().as_bytes()),
            service: "ssh".into(),
        }
        .sign(by)
    }

    fn open_for(&self, host: u8) -> Vec<u8> {
        let a = self.ip(host).parse().unwrap();
        self.datagram(Target::Addr(a), 0, &self.alice, &self.alice)
    }

    /// A python script in the client namespace, bound to 198.18.N.`from`
    /// (its first argument), toward the server (its second), with `rest`.
    fn py_from(&self, from: u8, py: &str, rest: &[&str]) -> std::process::Output {
        let (src, dst) = (self.ip(from), self.n.srv_ip(false));
        let args: Vec<&str> = ["python3", "-c", py, src.as_str(), dst.as_str()]
            .into_iter()
            .chain(rest.iter().copied())
            .collect();
        ns(&self.n.cli, &args)
    }

    /// Send these bytes from 198.18.N.`from`, `times` times.
    fn send(&self, from: u8, d: &[u8], times: u32) {
        let py = "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                  s.bind((sys.argv[1], 0))\nfor _ in range(int(sys.argv[4])):\n    \
                  s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[2], 62201))\n";
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        ok(&self.py_from(from, py, &[&hex, &times.to_string()]));
    }

    /// Can 198.18.N.`from` open a connection to the protected port?
    fn reaches(&self, from: u8) -> bool {
        self.n.reaches_from(&self.ip(from))
    }

    fn authorized(&self) -> Vec<String> {
        self.n.elements("ssh_4")
    }

    /// Log lines until one holds `what` (at most `secs`).
    fn wait_log(&mut self, what: &str, secs: u64) -> String {
        let more = common::read_log(&self.log, secs, |s| s.contains(what));
        self.said.push_str(&more);
        assert!(more.contains(what), "no {what:?} in the log: {}", self.said);
        more
    }

    /// What `show` lists, as the administrator sees it.
    fn show(&self) -> String {
        let o = self.n.server(&["show"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_signed_knock_opens_its_sender_once_and_no_replay_opens_anything() {
    need_root_and_tools!();
    let mut r = Rig::new(CONF);
    assert!(!r.reaches(2) && !r.reaches(3), "closed before any knock");
    let d = r.opened_by_alice(2);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
    assert!(r.show().contains(&r.ip(2)));
    assert!(r.reaches(2) && !r.reaches(3));

    // The same bytes from the attacker's address: nothing opens for it.
    r.send(3, &d, 3);
    r.wait_log(&format!("the last from {}: replayed", r.ip(3)), 12);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
    assert!(!r.reaches(3));

    // Revoked, then replayed within the window from the knocker's own
    // address: the host stays out.
    ok(&r.n.via_daemon(&["revoke", &r.ip(2)]));
    r.wait_log("revoked", 5);
    r.send(2, &d, 1);
    r.wait_log(&format!("the last from {}: replayed", r.ip(2)), 12);
    assert!(r.authorized().is_empty());
    assert!(!r.reaches(2));

    // After the window: too old, whatever the record says.
    std::thread::sleep(Duration::from_secs(WINDOW + 1));
    r.send(2, &d, 1);
    r.wait_log(
        &format!("the last from {}: outside the time window", r.ip(2)),
        12,
    );
    assert!(r.authorized().is_empty());
    assert!(!r.show().contains(&r.ip(2)));
    let opened = r.said.matches("by signed knock").count();
    assert_eq!(opened, 1, "one authorization in all: {}", r.said);
}

/// A signed close knock that comes while the daemon works through a
/// transaction by others (one `nft -f` of 20,000, the knocker's address
/// last) is done after it: the log says the knocker authorized by nft,
/// then revoked by the signed knock, never the other way round, and no
/// line is dropped while syslog is slow; the kernel and SIGUSR2's count
/// leave the knocker out, and it reaches nothing. (Done at once, it said
/// what was left of the transaction at once, past syslog's queue; had it
/// come before the transaction's commit was read, it was revoked in the
/// kernel and then said authorized, which the kernel no longer held.)
#[test]
#[ignore = "needs root: network namespaces"]
fn a_signed_knock_comes_after_a_transaction_committed_before_it() {
    need_root_and_tools!();
    let conf = CONF.replace("ttl     = \"2m\"\n", "ttl     = \"2m\"\nsize    = 65536\n");
    let mut r = Rig::new(&conf);
    let me = r.ip(2);
    let close = Knock {
        action: Action::Close,
        target: Target::Addr(me.parse().unwrap()),
        time: pfknock::clock::now() as u64,
        nonce: pfknock::trusted::random().unwrap(),
        key_id: key_id(r.alice.verifying_key().as_bytes()),
        service: "ssh".into(),
    }
    .sign(&r.alice);
    let hosts = |i: u32| format!("198.19.{}.{}", i / 250, i % 250 + 1);
    r.n.fill(
        "ssh_4",
        (0..19_999)
            .map(hosts)
            .chain(std::iter::once(me.clone()))
            .map(|h| h + " timeout 10m"),
    );
    r.send(2, &close, 1);
    // Syslog takes no line for 0.6 s: the knock comes while most of the
    // transaction waits to be said. Then read as syslogd would (a line at
    // a time, looking at each once), until the knock's line came or 120 s
    // passed.
    std::thread::sleep(Duration::from_millis(600));
    r.log
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut said, mut buf) = (String::new(), [0u8; 4096]);
    let end = Instant::now() + Duration::from_secs(120);
    let revoked_line = format!("revoked {me} ");
    while Instant::now() < end {
        if let Ok(k) = r.log.recv(&mut buf) {
            let l = String::from_utf8_lossy(&buf[..k]);
            said.push_str(&l);
            said.push('\n');
            if l.contains(&revoked_line) {
                break;
            }
        }
    }
    r.said.push_str(&said);
    let lines: Vec<&str> = r.said.lines().collect();
    let authorized = lines
        .iter()
        .position(|l| l.contains(&format!("authorized {me} ")) && l.contains(" by nft["));
    let revoked = lines
        .iter()
        .position(|l| l.contains(&format!("revoked {me} ")));
    assert!(
        authorized.is_some() && authorized < revoked,
        "authorized by nft at {authorized:?}, revoked at {revoked:?} of {}",
        lines.len()
    );
    assert!(
        lines[revoked.unwrap()].contains("by signed close knock of key alice"),
        "{}",
        lines[revoked.unwrap()]
    );
    let by_nft = r.said.matches(" by nft[").count();
    assert_eq!(
        by_nft, 20_000,
        "each of the transaction once, before the knock"
    );
    assert!(!r.said.contains("dropped"), "{}", r.said);
    assert!(!r.authorized().contains(&me));
    assert_eq!(r.authorized().len(), 19_999);
    assert!(!r.reaches(2));
    ok(&Command::new("kill")
        .args(["-USR2", &r.pid])
        .output()
        .unwrap());
    let status = r.wait_log("status <", 5);
    assert!(status.contains(": 19999 entries"), "{}", r.said);
}

/// A signed knock while the daemon's start reads a set of 400,000 beside
/// its loop (seconds of the kernel's dumps; minutes at a million) opens
/// at once, as `allow` does then: the log says `allowed` while SIGUSR2
/// still says the daemon reads, the sender reaches the port, and once the
/// reading is over the daemon holds it (in SIGUSR2's count) and said it
/// once.
#[test]
#[ignore = "needs root: network namespaces"]
fn a_signed_knock_during_the_starts_reading_opens_at_once() {
    need_root_and_tools!();
    let conf = CONF.replace("ttl     = \"2m\"\n", "ttl     = \"2m\"\nsize    = 524288\n");
    let mut r = Rig::prepared(&conf, WINDOW, |n| {
        n.fill(
            "ssh_6",
            (0..400_000u32).map(|i| {
                format!(
                    "fd00:19::{:x}:{:x} timeout 10m",
                    i / 10_000 + 1,
                    i % 10_000 + 1
                )
            }),
        );
    });
    r.opened_by_alice(2);
    ok(&Command::new("kill")
        .args(["-USR2", &r.pid])
        .output()
        .unwrap());
    let status = r.wait_log("status: ", 5);
    assert!(
        status.contains("status: reading the sets for "),
        "the reading was over before the signed knock (too short a reading to tell)\n{}",
        r.said
    );
    assert!(r.reaches(2) && !r.reaches(3));
    r.wait_log("no record of the last run", 120);
    ok(&Command::new("kill")
        .args(["-USR2", &r.pid])
        .output()
        .unwrap());
    let count = r.wait_log("status <", 5);
    assert!(count.contains(": 400001 entries"), "{}", r.said);
    assert_eq!(r.said.matches("by signed knock").count(), 1, "{}", r.said);
    assert!(r.reaches(2));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn forged_senders_wrong_keys_and_bad_shapes_open_nothing_and_are_counted() {
    need_root_and_tools!();
    let mut r = Rig::new(CONF);
    let (alice, mallory) = (r.alice.clone(), r.mallory.clone());
    let three = Target::Addr(r.ip(3).parse().unwrap());
    let good = r.open_for(2);
    let mut bad: Vec<(&str, Vec<u8>)> = vec![
        // Signed for .3, sent from .2: not the sender's.
        (
            "address not the sender's",
            r.datagram(three, 0, &alice, &alice),
        ),
        // "The sender's address" without nat.
        (
            "address not the sender's",
            r.datagram(Target::Sender, 0, &alice, &alice),
        ),
        (
            "bad signature",
            r.datagram(Target::Addr(r.ip(2).parse().unwrap()), 0, &mallory, &alice),
        ),
        (
            "unknown key",
            r.datagram(
                Target::Addr(r.ip(2).parse().unwrap()),
                0,
                &mallory,
                &mallory,
            ),
        ),
        (
            "outside the time window",
            r.datagram(Target::Addr(r.ip(2).parse().unwrap()), 60, &alice, &alice),
        ),
        ("malformed", good[..good.len() - 1].to_vec()),
        ("malformed", [good.as_slice(), &[0]].concat()),
        ("malformed", vec![0x5a; 1400]),
        ("malformed", Vec::new()),
    ];
    let mut flipped = good.clone();
    flipped[40] ^= 1;
    bad.push(("bad signature", flipped));
    for (_, d) in &bad {
        r.send(2, d, 1);
    }
    // The first refusal at once, the rest summed up at most 10 s later.
    let mut said = r.wait_log("the last from", 5);
    said.push_str(&common::read_log(&r.log, 15, |s| {
        s.matches("refused").count() >= 2
    }));
    let total: usize = said
        .lines()
        .filter_map(|l| {
            l.split(" refused (")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(total, bad.len(), "{said}");
    for (why, _) in &bad {
        assert!(said.contains(why), "{why}: {said}");
    }
    assert!(r.authorized().is_empty());
    assert!(!r.reaches(2) && !r.reaches(3));
    assert!(!r.said.contains("allowed"), "{}", r.said);
    // The knock's nonce still opens (stamped anew: the wait above took
    // longer than the window): nothing above used it up.
    let mut k = pfknock::spa::packet::parse(&good).unwrap().knock;
    k.time = pfknock::clock::now() as u64;
    r.send(2, &k.sign(&alice), 1);
    r.wait_log("by signed knock of key alice", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
}

fn status_of(pid: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn listener_pid(n: &Net) -> String {
    let o = Command::new("pgrep")
        .args(["-f", &format!("{BIN} spa-listen")])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // This test's listener: the one in the server namespace.
    pids.into_iter()
        .find(|p| {
            let o = Command::new("ip")
                .args(["netns", "identify", p])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim() == n.srv
        })
        .expect("a listener in the server namespace")
}

#[test]
#[ignore = "needs root: network namespaces"]
fn the_listener_holds_no_privilege_and_comes_back_when_killed() {
    need_root_and_tools!();
    let mut r = Rig::new(CONF);
    let pid = listener_pid(&r.n);
    let nobody = common::sh(&["id", "-u", "nobody"]);
    let uid = String::from_utf8_lossy(&nobody.stdout).trim().to_owned();
    assert_eq!(
        status_of(&pid, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![uid.as_str(); 4]
    );
    assert_eq!(status_of(&pid, "Seccomp:"), "2");
    assert_eq!(status_of(&pid, "NoNewPrivs:"), "1");
    assert_eq!(status_of(&pid, "CapEff:"), "0000000000000000");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        std::path::Path::new("/run/pfknock/empty")
    );
    // Its descriptors: standard ones, the channel and the two UDP
    // sockets, nothing it inherited by accident.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert_eq!(
        fds,
        6,
        "{:?}",
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| std::fs::read_link(e.unwrap().path()).unwrap())
            .collect::<Vec<_>>()
    );

    common::sh(&["kill", "-KILL", &pid]);
    r.wait_log("was killed by signal 9", 5);
    r.wait_log("listener pid", 5);
    let again = listener_pid(&r.n);
    assert_ne!(again, pid);
    assert_eq!(status_of(&again, "Seccomp:"), "2");
    // The restarted listener takes knocks as before.
    let d = r.open_for(2);
    r.send(2, &d, 1);
    r.wait_log("by signed knock of key alice", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
}

const NAT: &str = r#"
spa_user = "nobody"

[[service]]
name    = "ssh"
protect = [PROTECTED]
[service.spa]
port    = 62201
keys    = "KEYS"
window  = "5s"
nat     = true
"#;

#[test]
#[ignore = "needs root: network namespaces"]
fn the_client_opens_verifies_and_closes_and_nat_takes_the_sender() {
    need_root_and_tools!();
    let mut r = Rig::new(NAT);
    let key = r.n.dir.join("alice");
    let srv = r.n.srv_ip(false);
    let cli = r.n.cli.clone();
    let knock = |args: &[&str]| {
        let mut a = vec![
            "netns",
            "exec",
            &cli,
            BIN,
            "knock",
            "--spa",
            key.to_str().unwrap(),
            "-s",
            "ssh",
        ];
        a.extend_from_slice(args);
        Command::new("ip").args(&a).output().unwrap()
    };
    // "The address this arrives from": .2, the client's own.
    let o = knock(&["--nat", "--verify", &PROTECTED.to_string(), &srv, "62201"]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(": open"),
        "{o:?}"
    );
    r.wait_log("by signed knock of key alice", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
    // A signed close takes it out again.
    ok(&knock(&["--close", &srv, "62201"]));
    let line = r.wait_log("signed close knock of key alice", 5);
    assert!(line.contains(&format!("revoked {}", r.ip(2))), "{line}");
    assert!(r.authorized().is_empty());
    assert!(!r.reaches(2));
    // With nat, a signed address opens that address, wherever the
    // datagram comes from.
    let three = Target::Addr(r.ip(3).parse().unwrap());
    let d = r.datagram(three, 0, &r.alice.clone(), &r.alice.clone());
    r.send(2, &d, 1);
    r.wait_log(&format!("allowed {}", r.ip(3)), 5);
    assert_eq!(r.authorized(), vec![r.ip(3)]);
    assert!(r.reaches(3) && !r.reaches(2));
    // Over IPv6: the client's own address, into the IPv6 set only.
    let srv6 = r.n.srv_ip(true);
    let o = knock(&["-6", "--verify", &PROTECTED.to_string(), &srv6, "62201"]);
    ok(&o);
    r.wait_log(&format!("allowed {} service=ssh", r.n.cli_ip(true)), 5);
    assert_eq!(r.n.elements("ssh_6"), vec![r.n.cli_ip(true)]);
    assert_eq!(r.authorized(), vec![r.ip(3)], "the IPv4 set as it was");
    // The client's own errors: a key file that is not one.
    let o = knock(&["--spa", "/etc/hostname", &srv]);
    assert!(!o.status.success());
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_flood_opens_nothing_keeps_memory_flat_and_a_real_knock_still_opens() {
    need_root_and_tools!();
    let mut r = Rig::new(CONF);
    let pid = listener_pid(&r.n);
    let rss = |p: &str| {
        status_of(p, "VmRSS:")
            .trim_end_matches(" kB")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let before = rss(&pid);
    let cpu = |p: &str| {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let f: Vec<u64> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // utime and stime, fields 14 and 15 of stat(5): 11 and 12 after
        // the command name.
        f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
    };
    let cpu_before = cpu(&pid);
    // A datagram that costs the most to refuse: alice's key id, a stamp
    // in the window, mallory's signature. 100k a second asked of hping3
    // in all (a 2-core machine sends about 60k), from 4 forged addresses
    // of the test's own range, for 3 s; counted as they arrive by a probe
    // table of the test's. The kernel's per-source limit leaves the
    // listener a few hundred: its CPU is printed beside its memory.
    let probe = "table inet spaprobe { chain c { type filter hook prerouting priority -400; policy accept; udp dport 62201 counter; }; }";
    ok(&ns(&r.n.srv, &["nft", probe]));
    let forged = r.datagram(
        Target::Addr(r.ip(2).parse().unwrap()),
        0,
        &r.mallory.clone(),
        &r.alice.clone(),
    );
    let payload = r.n.dir.join("forged.bin");
    std::fs::write(&payload, &forged).unwrap();
    let mut floods = Vec::new();
    for i in 0..4 {
        floods.push(
            Command::new("ip")
                .args([
                    "netns", "exec", &r.n.cli, "timeout", "3", "hping3", "--udp", "-i", "u40",
                    "-q", "-p", "62201",
                ])
                .args([
                    "-a",
                    &format!("198.18.{}.{}", r.n.n, 100 + i),
                    "-d",
                    &forged.len().to_string(),
                    "-E",
                ])
                .arg(&payload)
                .arg(r.n.srv_ip(false))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    // In the middle of it, the real knock.
    let t = Instant::now();
    let d = r.open_for(2);
    r.send(2, &d, 1);
    common::wait_for("the real knock", || r.authorized().contains(&r.ip(2)));
    let took = t.elapsed();
    for mut f in floods {
        let _ = f.wait();
    }
    r.wait_log("by signed knock of key alice", 5);
    let after = rss(&pid);
    let o = ns(&r.n.srv, &["nft", "list", "table", "inet", "spaprobe"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let sent: u64 = text
        .split("packets ")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let ticks = cpu(&pid) - cpu_before;
    eprintln!(
        "flood: {sent} datagrams in 3 s; the real knock opened in {took:?}; listener RSS \
         {before} kB -> {after} kB, CPU {ticks} ticks"
    );
    // How many arrive depends on the machine (about 60k a second on an idle
    // 2-core one); a third of that still floods the listener's port.
    assert!(sent > 30_000, "the flood did not happen: {sent}");
    // How fast it opened is printed, not asserted (the machine's load
    // decides it); that it opened, during the flood, is.
    assert!(after < before + 2048, "{before} -> {after} kB");
    assert_eq!(r.authorized(), vec![r.ip(2)]);
    assert!(!r.said.contains(&format!("allowed 198.18.{}.10", r.n.n)));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn one_key_is_added_or_revoked_by_its_file_and_a_bad_one_changes_nothing() {
    need_root_and_tools!();
    let mut r = Rig::new(CONF);
    let keys = r.n.dir.join("keys");
    let hup = |r: &Rig| common::sh(&["kill", "-HUP", &r.pid]);
    let open_as = |r: &Rig, who: &ed25519_dalek::SigningKey| {
        let a = r.ip(2).parse().unwrap();
        r.datagram(Target::Addr(a), 0, who, who)
    };
    // Mallory's key is not installed: refused.
    let (alice, mallory) = (r.alice.clone(), r.mallory.clone());
    r.send(2, &open_as(&r, &mallory), 1);
    r.wait_log("unknown key", 12);
    assert!(r.authorized().is_empty());
    // Installed, and SIGHUP: the listener starts again with it.
    std::fs::copy(r.n.dir.join("mallory.pub"), keys.join("mallory.pub")).unwrap();
    hup(&r);
    r.wait_log("listener pid", 10);
    r.send(2, &open_as(&r, &mallory), 1);
    r.wait_log("by signed knock of key mallory", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
    ok(&r.n.via_daemon(&["revoke", &r.ip(2)]));
    r.wait_log("revoked", 5);
    // A key file that is not one: the reload fails, the keys stay.
    std::fs::write(keys.join("broken.pub"), "ed25519 nothex\n").unwrap();
    hup(&r);
    r.wait_log("keeping the running configuration", 5);
    std::fs::remove_file(keys.join("broken.pub")).unwrap();
    r.send(2, &open_as(&r, &alice), 1);
    r.wait_log("by signed knock of key alice", 5);
    ok(&r.n.via_daemon(&["revoke", &r.ip(2)]));
    r.wait_log("revoked", 5);
    // Alice's file removed: her knocks open nothing; mallory's still do.
    std::fs::remove_file(keys.join("alice.pub")).unwrap();
    hup(&r);
    r.wait_log("listener pid", 10);
    r.send(2, &open_as(&r, &alice), 1);
    r.wait_log("unknown key", 12);
    assert!(r.authorized().is_empty());
    r.send(2, &open_as(&r, &mallory), 1);
    r.wait_log("by signed knock of key mallory", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_clean_restart_keeps_the_replay_record_and_takes_knocks_at_once() {
    need_root_and_tools!();
    let conf = CONF.replace("window  = \"5s\"", "window  = \"20s\"");
    let mut r = Rig::with_window(&conf, 20);
    let d = r.open_for(2);
    r.send(2, &d, 1);
    r.wait_log("by signed knock of key alice", 5);
    ok(&r.n.via_daemon(&["revoke", &r.ip(2)]));
    r.wait_log("revoked", 5);
    // A clean stop (SIGTERM), and a new daemon.
    common::sh(&["kill", "-TERM", &r.pid]);
    let _ = r.daemon.wait();
    std::fs::remove_file(r.n.dir.join("log.sock")).unwrap();
    let (daemon, pid, log) = common::daemon_logging_to_a_socket(&r.n);
    (r.daemon, r.pid, r.log) = (daemon, pid, log);
    let line = r.wait_log("replay record of the last run taken back (1 nonces", 10);
    assert!(!line.contains("refused"), "{line}");
    r.wait_log("listener pid", 10);
    // The datagram the last daemon took opens nothing, still in its window.
    r.send(2, &d, 1);
    r.wait_log(&format!("the last from {}: replayed", r.ip(2)), 12);
    assert!(r.authorized().is_empty());
    // A new one opens at once: no window of refusals after this start.
    r.send(2, &r.open_for(2), 1);
    r.wait_log("by signed knock of key alice", 5);
    assert_eq!(r.authorized(), vec![r.ip(2)]);
}
