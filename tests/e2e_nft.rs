//! End to end on a real firewall: nftables in two network namespaces joined
//! by a veth pair (198.18.N.1/2 and fd00:N::1/2), the table loaded by
//! `pfknock load` in the server namespace, a listener on the protected
//! port, and `pfknock knock` from the client namespace.
//!
//! Needs root, iproute2, nft and python3 (for the listener); elsewhere each
//! test says it was skipped and why. The namespaces are removed when a test
//! ends, also when it fails.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::sleep;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pfknock");
const PROTECTED: u16 = 2222;

static NEXT: AtomicU8 = AtomicU8::new(1);

fn skip_reason() -> Option<String> {
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

macro_rules! need_root_and_tools {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Two namespaces and a veth between them; removed on drop.
struct Net {
    srv: String,
    cli: String,
    n: u8,
    dir: PathBuf,
    listener: Option<Child>,
}

fn sh(args: &[&str]) -> Output {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

impl Net {
    fn new(conf: &str) -> Net {
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

    fn conf(&self) -> PathBuf {
        self.dir.join("pfknock.toml")
    }

    fn srv_ip(&self, v6: bool) -> String {
        if v6 {
            format!("fd00:{}::1", self.n)
        } else {
            format!("198.18.{}.1", self.n)
        }
    }

    fn cli_ip(&self, v6: bool) -> String {
        if v6 {
            format!("fd00:{}::2", self.n)
        } else {
            format!("198.18.{}.2", self.n)
        }
    }

    /// pfknock in the server namespace.
    fn server(&self, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", &self.srv, BIN];
        a.extend_from_slice(args);
        let c = self.conf();
        a.extend(["-c", c.to_str().unwrap()]);
        Command::new("ip").args(&a).output().unwrap()
    }

    /// Load the table and start a listener on the protected port.
    fn up(&mut self) {
        let o = self.server(&["load"]);
        assert!(
            o.status.success(),
            "load: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let py = format!(
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('::', {PROTECTED}))\ns.listen(64)\n\
             while True:\n    c, _ = s.accept()\n    c.close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv, "python3", "-c", &py])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.listener = Some(child);
        // Wait until the listener answers from inside its own namespace.
        for _ in 0..50 {
            if self.reach_from(&self.srv, "127.0.0.1", PROTECTED) {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("listener did not come up");
    }

    fn reach_from(&self, ns: &str, ip: &str, port: u16) -> bool {
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
    fn open(&self, v6: bool) -> bool {
        self.reach_from(&self.cli, &self.srv_ip(v6), PROTECTED)
    }

    /// `pfknock knock` from the client namespace.
    fn knock(&self, args: &[&str]) -> Output {
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
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const RATE: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [1234]
rate    = "2/5"
ttl     = "3s"
"#;

#[test]
fn rate_knock_opens_then_expires() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    assert!(!n.open(false), "closed before knocking");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "open after three completed connects");
    let show = n.server(&["show"]);
    ok(&show);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains(&n.cli_ip(false)), "{text}");
    // --all too: nftables has no renewal table to list.
    ok(&n.server(&["show", "--all"]));
    sleep(Duration::from_millis(4500));
    assert!(!n.open(false), "closed again after the ttl");
}

#[test]
fn too_few_hits_open_nothing() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "2"]));
    assert!(!n.open(false), "two connects are not more than 2 in 5 s");
}

#[test]
fn revoke_closes_at_once() {
    need_root_and_tools!();
    let mut n = Net::new(&RATE.replace("3s", "10m"));
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    ok(&n.server(&["revoke", &n.cli_ip(false)]));
    assert!(!n.open(false), "revoked");
}

#[test]
fn ipv6_too() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    assert!(!n.open(true));
    ok(&n.knock(&["-6", &n.srv_ip(true), "1234", "-n", "3"]));
    assert!(n.open(true), "open over IPv6");
    assert!(
        !n.open(false),
        "the IPv4 address is not authorized by an IPv6 knock"
    );
}

const SEQ: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [7001, 7002, 7003]
rate    = "1/5"
window  = "5s"
ttl     = "1m"
"#;

#[test]
fn a_sequence_opens_only_in_order() {
    need_root_and_tools!();
    let mut n = Net::new(SEQ);
    n.up();
    let ip = n.srv_ip(false);
    // Every port hit, in the wrong order.
    ok(&n.knock(&[&ip, "7002", "7001", "7003", "-n", "2"]));
    assert!(!n.open(false), "wrong order");
    ok(&n.knock(&[&ip, "7001", "7002", "7003", "-n", "2"]));
    assert!(n.open(false), "right order");
}

#[test]
fn a_knock_from_outside_from_opens_nothing() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("{RATE}from    = [\"198.18.250.0/24\"]\n"));
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(!n.open(false), "not in from");
}

#[test]
fn reload_keeps_authorizations() {
    need_root_and_tools!();
    let mut n = Net::new(&RATE.replace("3s", "10m"));
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    fs::write(
        n.conf(),
        RATE.replace("3s", "20m")
            .replace("PROTECTED", &PROTECTED.to_string()),
    )
    .unwrap();
    ok(&n.server(&["load"]));
    assert!(
        n.open(false),
        "still authorized after loading the new table"
    );
    let json = n.server(&["show", "--json"]);
    ok(&json);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["ttl"], 1200);
    assert!(v[0]["left"].as_u64().unwrap() > 1100, "{v}");
}

fn set_json(n: &Net, set: &str) -> Option<serde_json::Value> {
    let o = Command::new("ip")
        .args([
            "netns", "exec", &n.srv, "nft", "-j", "list", "set", "inet", "pfknock", set,
        ])
        .output()
        .unwrap();
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["nftables"]
        .as_array()?
        .iter()
        .find_map(|i| i.get("set").cloned())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..60 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_daemon_reloads_heals_and_exits_cleanly() {
    need_root_and_tools!();
    use std::os::unix::fs::PermissionsExt;
    let mut n = Net::new(&RATE.replace("3s", "10m"));
    fs::set_permissions(n.conf(), fs::Permissions::from_mode(0o600)).unwrap();
    n.up();
    let pidfile = n.dir.join("pfknock.pid");
    let c = n.conf();
    let mut d = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.srv,
            BIN,
            "run",
            "-f",
            "-p",
            pidfile.to_str().unwrap(),
            "-c",
            c.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the pidfile", || {
        pidfile.exists() && !fs::read_to_string(&pidfile).unwrap().is_empty()
    });
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let kill = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };

    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));

    // SIGHUP with a new ttl: the set gets it, the authorization stays.
    fs::write(
        n.conf(),
        RATE.replace("3s", "20m")
            .replace("PROTECTED", &PROTECTED.to_string()),
    )
    .unwrap();
    kill("-HUP");
    wait_for("the new ttl", || {
        set_json(&n, "ssh_4").is_some_and(|s| s["timeout"] == 1200)
    });
    assert!(n.open(false), "authorization kept across the reload");

    // A bad config: logged, the running one stays.
    fs::write(n.conf(), "[[service]]\nname = \"ssh\"\nrate = \"5\"\n").unwrap();
    kill("-HUP");
    sleep(Duration::from_millis(500));
    assert!(
        d.try_wait().unwrap().is_none(),
        "still running after a bad reload"
    );
    assert!(n.open(false));

    // Someone deletes the table: the daemon loads it again.
    assert!(
        Command::new("ip")
            .args([
                "netns", "exec", &n.srv, "nft", "delete", "table", "inet", "pfknock"
            ])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the table to come back", || set_json(&n, "ssh_4").is_some());

    kill("-TERM");
    let st = d.wait().unwrap();
    let mut err = String::new();
    let _ = d.stderr.take().unwrap().read_to_string(&mut err);
    assert!(st.success(), "exit status {st}: {err}");
    assert!(!pidfile.exists(), "pidfile removed");
}
