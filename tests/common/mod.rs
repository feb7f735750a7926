//! The namespace rig shared by the nftables end-to-end tests: a server and
//! a client namespace joined by a veth pair (198.18.N.1/2, fd00:N::1/2).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pfknock");
pub const PROTECTED: u16 = 2222;

static NEXT: AtomicU8 = AtomicU8::new(1);

pub fn skip_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Some("not root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("python3", "--version")] {
        if !Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(format!("{tool} not available"));
        }
    }
    None
}

/// Root-only tests are `#[ignore]`d, so `cargo test` lists them as
/// ignored; run explicitly (`--include-ignored`, as .ci/run does), a
/// missing privilege or tool is a failure, not a quiet pass.
#[macro_export]
macro_rules! need_root_and_tools {
    () => {
        if let Some(why) = common::skip_reason() {
            panic!("this test needs root, ip, nft and python3: {why}");
        }
    };
}

/// Two namespaces and a veth between them; removed on drop.
pub struct Net {
    pub srv: String,
    pub cli: String,
    pub n: u8,
    pub dir: PathBuf,
    pub listener: Option<Child>,
}

pub fn sh(args: &[&str]) -> Output {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

impl Net {
    pub fn new(conf: &str) -> Net {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let net = Net {
            srv: format!("pfk-s-{id}"),
            cli: format!("pfk-c-{id}"),
            n,
            dir: std::env::temp_dir().join(format!("pfknock-e2e-{id}")),
            listener: None,
        };
        fs::create_dir_all(&net.dir).unwrap();
        let (vs, vc) = (format!("pks{id}"), format!("pkc{id}"));
        let (vs, vc) = (&vs[..vs.len().min(15)], &vc[..vc.len().min(15)]);
        sh(&["ip", "netns", "add", &net.srv]);
        sh(&["ip", "netns", "add", &net.cli]);
        sh(&[
            "ip", "link", "add", vs, "netns", &net.srv, "type", "veth", "peer", "name", vc,
            "netns", &net.cli,
        ]);
        for (ns, dev, host) in [(&net.srv, vs, 1), (&net.cli, vc, 2)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("198.18.{n}.{host}/24"),
                "dev",
                dev,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd00:{n}::{host}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        fs::write(
            net.conf(),
            conf.replace("PROTECTED", &PROTECTED.to_string()),
        )
        .unwrap();
        net
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("pfknock.toml")
    }

    /// The control socket of this test's daemon.
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    pub fn srv_ip(&self, v6: bool) -> String {
        if v6 {
            format!("fd00:{}::1", self.n)
        } else {
            format!("198.18.{}.1", self.n)
        }
    }

    pub fn cli_ip(&self, v6: bool) -> String {
        if v6 {
            format!("fd00:{}::2", self.n)
        } else {
            format!("198.18.{}.2", self.n)
        }
    }

    /// pfknock in the server namespace.
    pub fn server(&self, args: &[&str]) -> Output {
        self.server_env(args, &[])
    }

    /// pfknock in the server namespace, with these environment variables
    /// (`PFKNOCK_SYSLOG_SOCKET`, say).
    pub fn server_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let c = self.conf();
        Command::new("ip")
            .args(["netns", "exec", &self.srv, "env"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(BIN)
            .args(args)
            .args(["-c", c.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// pfknock in the server namespace, talking to this test's daemon
    /// through its control socket.
    pub fn via_daemon(&self, args: &[&str]) -> Output {
        let c = self.conf();
        let ctl = self.ctl();
        let mut a = args.to_vec();
        a.extend(["-c", c.to_str().unwrap(), "-S", ctl.to_str().unwrap()]);
        ns(&self.srv, &[&[BIN][..], &a].concat())
    }

    /// Load the table and start a listener on the protected port.
    pub fn up(&mut self) {
        self.up_with("c.close()");
    }

    /// `up`, with a listener that echoes what it gets, a thread each, and
    /// closes its side when the client closes.
    pub fn up_echo(&mut self) {
        self.up_with(
            "threading.Thread(target=lambda c=c: ([c.sendall(d) for d in iter(lambda: c.recv(64), b'')], c.close()), daemon=True).start()",
        );
    }

    /// Load the table and start a listener that does `each` with every
    /// accepted connection `c`.
    fn up_with(&mut self, each: &str) {
        let o = self.server(&["load"]);
        assert!(
            o.status.success(),
            "load: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.listen_with(each);
    }

    /// A listener on the protected port that echoes what it gets, with no
    /// table loaded (nothing in the namespace uses conntrack yet).
    pub fn listen_echo(&mut self) {
        self.listen_with(
            "threading.Thread(target=lambda c=c: ([c.sendall(d) for d in iter(lambda: c.recv(64), b'')], c.close()), daemon=True).start()",
        );
    }

    fn listen_with(&mut self, each: &str) {
        self.listener = Some(self.listener_on(PROTECTED, each));
    }

    /// A listener on `port` of the server that does `each` with every
    /// accepted connection `c`, answering before this returns. The
    /// caller ends it; a test that fails first leaves it to `Drop`, which
    /// kills what runs in the namespaces.
    pub fn listener_on(&self, port: u16, each: &str) -> Child {
        let py = format!(
            "import socket, threading\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('::', {port}))\ns.listen(64)\n\
             while True:\n    c, _ = s.accept()\n    {each}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.srv, "python3", "-c", &py])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the listener answers from inside its own namespace.
        for _ in 0..50 {
            if self.reach_from(&self.srv, "127.0.0.1", port) {
                return child;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("listener on {port} did not come up");
    }

    pub fn reach_from(&self, ns: &str, ip: &str, port: u16) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "timeout",
                "1",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{ip}/{port}"),
            ])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Can the client open a new connection to the protected port?
    pub fn open(&self, v6: bool) -> bool {
        self.reach_from(&self.cli, &self.srv_ip(v6), PROTECTED)
    }

    /// Can `src`, an IPv4 address of the client's namespace, open a new
    /// connection to the protected port?
    pub fn reaches_from(&self, src: &str) -> bool {
        let py = "import socket, sys\ns = socket.socket()\ns.settimeout(1)\n\
                  s.bind((sys.argv[1], 0))\ntry:\n    s.connect((sys.argv[2], int(sys.argv[3])))\n\
                  except OSError:\n    sys.exit(1)\n";
        let (dst, port) = (self.srv_ip(false), PROTECTED.to_string());
        ns(&self.cli, &["python3", "-c", py, src, &dst, &port])
            .status
            .success()
    }

    /// Put `elems` (each as nft writes an element, timers and all) in
    /// `set` of the table, by one `nft -f` in the server's namespace, a
    /// transaction each 10,000: the script's path, to run again.
    pub fn fill(&self, set: &str, elems: impl IntoIterator<Item = String>) -> PathBuf {
        let all: Vec<String> = elems.into_iter().collect();
        let mut script = String::new();
        for part in all.chunks(10_000) {
            let line = format!("add element inet pfknock {set} {{ {} }}\n", part.join(", "));
            script.push_str(&line);
        }
        let path = self.dir.join(format!("fill-{set}.nft"));
        fs::write(&path, script).unwrap();
        ok(&ns(&self.srv, &["nft", "-f", path.to_str().unwrap()]));
        path
    }

    /// `pfknock knock` from the client namespace.
    pub fn knock(&self, args: &[&str]) -> Output {
        let mut a = vec![
            "netns", "exec", &self.cli, BIN, "knock", "-q", "-t", "1000", "-g", "100",
        ];
        a.extend_from_slice(args);
        Command::new("ip").args(&a).output().unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.listener.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever still runs in the namespaces (a daemon of a test that
        // failed before it stopped it) goes with them.
        for ns in [&self.srv, &self.cli] {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Run a command in a namespace; its output.
pub fn ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

/// Debian's python3 with scapy, for forged packets (a failure where it is
/// missing: .ci/run installs python3-scapy).
pub fn scapy() -> Option<&'static str> {
    let py = "/usr/bin/python3";
    let ok = Command::new(py)
        .args(["-c", "import scapy.all"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "/usr/bin/python3 has no scapy (Debian: python3-scapy)");
    Some(py)
}

impl Net {
    /// Elements of one of pfknock's sets in the server namespace.
    pub fn elements(&self, set: &str) -> Vec<String> {
        let o = ns(
            &self.srv,
            &["nft", "-j", "list", "set", "inet", "pfknock", set],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut out = Vec::new();
        for i in v["nftables"].as_array().unwrap() {
            for e in i["set"]["elem"].as_array().into_iter().flatten() {
                let val = e.get("elem").map_or(e, |x| &x["val"]);
                out.push(val.as_str().unwrap_or_default().to_owned());
            }
        }
        out
    }

    /// A probe table in the server namespace that counts, before anything
    /// else sees them, the TCP packets to `port` (it accepts everything).
    pub fn probe(&self, port: u16) {
        let rules = format!(
            "table inet probe {{ chain c {{ type filter hook prerouting priority -400; policy accept; \
             tcp dport {port} counter; }}; }}"
        );
        let o = ns(&self.srv, &["nft", &rules]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Packets the probe has counted.
    pub fn probed(&self) -> u64 {
        let o = ns(&self.srv, &["nft", "-j", "list", "table", "inet", "probe"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("rule"))
            .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
            .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
            .unwrap_or(0)
    }

    /// Run a Python script (Debian's, with scapy) in the client namespace.
    pub fn forge(&self, py: &str, script: &str) -> Output {
        let o = ns(&self.cli, &[py, "-c", script]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// The client namespace's veth.
    pub fn cli_dev(&self) -> String {
        let o = ns(&self.cli, &["ip", "-o", "link", "show"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .find(|n| n != "lo")
            .expect("the client's veth")
    }
}

/// A scratch directory under the temp directory, removed when dropped
/// (also when a test fails), so that test runs leave nothing behind.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("pfknock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every line the daemon logged to `log` within `secs`, or until `until`
/// holds.
pub fn read_log(
    log: &std::os::unix::net::UnixDatagram,
    secs: u64,
    until: impl Fn(&str) -> bool,
) -> String {
    read_lines(log, secs, |said, _| until(said))
}

/// `read_log` until a line that `last` takes (that line too), for `secs`
/// at most: what it checks is each line as it comes, not all that came,
/// so that a long burst before it (300,000 lines) is read at its pace.
pub fn read_log_to(
    log: &std::os::unix::net::UnixDatagram,
    secs: u64,
    last: impl Fn(&str) -> bool,
) -> String {
    read_lines(log, secs, |_, line| last(line))
}

/// The lines logged to `log` within `secs`, until `stop` holds of what
/// came and of the last line.
fn read_lines(
    log: &std::os::unix::net::UnixDatagram,
    secs: u64,
    stop: impl Fn(&str, &str) -> bool,
) -> String {
    log.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut said, mut last) = (String::new(), 0);
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !stop(&said, &said[last..]) {
        if let Ok(k) = log.recv(&mut buf) {
            last = said.len();
            said.push_str(&String::from_utf8_lossy(&buf[..k]));
            said.push('\n');
        }
    }
    said
}

/// Connect from the client namespace to every port of `ports` ("7001,7002"
/// or "40000-40999", in that order), `rounds` times over, as a scan or a
/// sweep does: each connect completes (synproxy answers) and ends at once.
pub fn sweep(n: &Net, v6: bool, ports: &str, rounds: u32) {
    let py = "import socket, sys\n\
              dst, spec, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
              ports = []\n\
              for part in spec.split(','):\n\
              \x20   lo, _, hi = part.partition('-')\n\
              \x20   ports += range(int(lo), int(hi or lo) + 1)\n\
              for _ in range(rounds):\n\
              \x20   for p in ports:\n\
              \x20       s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET)\n\
              \x20       s.settimeout(1)\n\
              \x20       try:\n\
              \x20           s.connect((dst, p))\n\
              \x20       except OSError:\n\
              \x20           pass\n\
              \x20       s.close()\n";
    let o = ns(
        &n.cli,
        &[
            "python3",
            "-c",
            py,
            &n.srv_ip(v6),
            ports,
            &rounds.to_string(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Wait, at most 8 s, until `f` holds.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..80 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `pfknock run -f` in the server namespace, with a pidfile of its own.
pub fn daemon(n: &Net) -> (Child, String) {
    daemon_env(n, &[])
}

pub fn daemon_env(n: &Net, env: &[(&str, &str)]) -> (Child, String) {
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o600)).unwrap();
    let pidfile = n.dir.join("pfknock.pid");
    let c = n.conf();
    let child = Command::new("ip")
        .args(["netns", "exec", &n.srv, "env"])
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .args([BIN, "run", "-f", "-p"])
        .args([pidfile.to_str().unwrap(), "-c", c.to_str().unwrap()])
        .args(["-S", n.ctl().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the pidfile", || {
        fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())
    });
    (
        child,
        fs::read_to_string(&pidfile).unwrap().trim().to_owned(),
    )
}

/// A daemon whose syslog is a datagram socket of the test's, unread.
pub fn daemon_logging_to_a_socket(n: &Net) -> (Child, String, std::os::unix::net::UnixDatagram) {
    let path = n.dir.join("log.sock");
    let log = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let (d, pid) = daemon_env(n, &[("PFKNOCK_SYSLOG_SOCKET", path.to_str().unwrap())]);
    (d, pid, log)
}
