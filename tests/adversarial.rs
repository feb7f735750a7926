//! The attacks pfknock must withstand, on a real firewall: nftables in
//! network namespaces made by each test (198.18.0.0/15 and fd00::/8 only,
//! forged sources inside those ranges too). Forged packets are made with
//! scapy (Debian's python3-scapy) and sent from the client namespace.
//!
//! Every test asserts what must stay closed as well as what must open, and
//! checks with a probe table that its forged packets really arrived.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::{BIN, Net, PROTECTED, ns, ok, scapy, sh};

const RATE: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [1234]
rate    = "2/5"
ttl     = "10m"
"#;

/// Forged TCP segments of every kind to the knock port: bare ACKs from
/// forged sources and from the client's own address, ACK scans, SYN floods,
/// RSTs and FINs, over IPv4 and IPv6. Prints how many were sent.
fn attack_script(n: &Net, dev: &str, v6: bool, count: usize) -> String {
    let (ip, net, me, dst) = if v6 {
        (
            "IPv6",
            format!("fd00:{}::", n.n),
            n.cli_ip(true),
            n.srv_ip(true),
        )
    } else {
        (
            "IP",
            format!("198.18.{}.", n.n),
            n.cli_ip(false),
            n.srv_ip(false),
        )
    };
    format!(
        r#"
import random
from scapy.all import IP, IPv6, TCP, sendp, Ether, conf
conf.verb = 0
random.seed(7)
pk = []
def src(i):
    if i % 5 == 0:
        return "{me}"                      # the client's own address
    return "{net}" + ("%x" % (100 + i % 150) if "{ip}" == "IPv6" else str(100 + i % 150))
for i in range({count}):
    flags = ["A", "A", "S", "R", "F", "FA", "PA"][i % 7]
    port = 1234 if i % 3 else random.choice([1234, 22, 80, {PROTECTED}])
    pk.append(Ether()/{ip}(src=src(i), dst="{dst}")/TCP(sport=random.randint(1024, 65535),
              dport=port, flags=flags, seq=random.getrandbits(32), ack=random.getrandbits(32)))
sendp(pk, iface="{dev}")
print(len(pk))
"#
    )
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn forged_packets_authorize_nothing() {
    need_root_and_tools!();
    let Some(py) = scapy() else { return };
    let mut n = Net::new(RATE);
    n.up();
    n.probe(1234);
    let dev = n.cli_dev();
    for v6 in [false, true] {
        let before = n.probed();
        let o = n.forge(py, &attack_script(&n, &dev, v6, 3000));
        let sent: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        sleep(Duration::from_millis(300));
        let arrived = n.probed() - before;
        // Two thirds go to the knock port; the probe saw them all.
        assert!(
            arrived >= sent * 2 / 3,
            "only {arrived} of {sent} forged packets arrived"
        );
        let fam = if v6 { "6" } else { "4" };
        assert_eq!(
            n.elements(&format!("ssh_{fam}")),
            Vec::<String>::new(),
            "authorized by forged packets"
        );
        assert_eq!(
            n.elements(&format!("ssh_m1_{fam}")),
            Vec::<String>::new(),
            "counted a forged packet"
        );
        assert!(!n.open(v6), "forged packets opened the port");
        eprintln!(
            "IPv{}: {arrived} forged packets arrived, 0 authorizations",
            if v6 { 6 } else { 4 }
        );
    }
    // The door still opens for the real thing, and only for it.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false));
    assert_eq!(n.elements("ssh_4"), vec![n.cli_ip(false)]);
    assert!(!n.open(true), "the IPv6 address did not knock");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_syn_flood_counts_nothing_and_locks_nobody_out() {
    need_root_and_tools!();
    let Some(py) = scapy() else { return };
    let mut n = Net::new(RATE);
    n.up();
    n.probe(1234);
    let dev = n.cli_dev();
    let script = format!(
        r#"
from scapy.all import IP, TCP, Ether, sendp, conf, RandShort
conf.verb = 0
pk = [Ether()/IP(src="198.18.{}.%d" % (10 + i % 200), dst="{}")/TCP(sport=RandShort(), dport=1234, flags="S")
      for i in range(5000)]
sendp(pk, iface="{dev}")
"#,
        n.n,
        n.srv_ip(false)
    );
    n.forge(py, &script);
    sleep(Duration::from_millis(300));
    assert!(
        n.probed() >= 5000,
        "the flood did not arrive: {}",
        n.probed()
    );
    assert!(n.elements("ssh_m1_4").is_empty(), "a SYN was counted");
    assert!(n.elements("ssh_4").is_empty());
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "the real knock after the flood");
    assert_eq!(n.elements("ssh_4"), vec![n.cli_ip(false)]);
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_knock_opens_only_its_own_service() {
    need_root_and_tools!();
    let conf = format!(
        "{RATE}\n[[service]]\nname    = \"web\"\nprotect = [{}]\nknock   = [1235]\nrate    = \"2/5\"\n",
        PROTECTED + 1
    );
    let mut n = Net::new(&conf);
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1235", "-n", "3"]));
    assert!(n.elements("web_4").contains(&n.cli_ip(false)));
    assert!(n.elements("ssh_4").is_empty(), "web's knock opened ssh");
    assert!(!n.open(false), "ssh's port stays closed");
    assert!(
        n.elements("ssh_m1_4").is_empty(),
        "web's knock counted on ssh's meter"
    );
}

#[test]
fn names_chosen_to_collide_are_refused() {
    // No root needed: this is `check` before anything reaches a firewall.
    let dir = std::env::temp_dir().join(format!("pfknock-adv-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("collide.toml");
    fs::write(
        &conf,
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n\n\
         [[service]]\nname = \"ssh_m1\"\nprotect = [80]\nknock = [1235]\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["-c", conf.to_str().unwrap(), "render", "--nft"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains(":7: service.name: nftables set ssh_m1_4 (authorized hosts) is also service \"ssh\"'s meter of knock port 1"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "nothing rendered");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_reload_in_the_middle_of_a_knock_keeps_its_progress() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    // Two of the three connects, a reload, then the third.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "2"]));
    for _ in 0..3 {
        ok(&n.server(&["load"]));
    }
    assert!(!n.open(false), "two connects are not a knock");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "1"]));
    assert!(
        n.open(false),
        "the third connect after the reloads completes the knock"
    );

    // And a reload never resets a meter into opening early: one connect,
    // a reload, one more is still not a knock.
    let mut m = Net::new(RATE);
    m.up();
    ok(&m.knock(&[&m.srv_ip(false), "1234", "-n", "1"]));
    ok(&m.server(&["load"]));
    ok(&m.knock(&[&m.srv_ip(false), "1234", "-n", "1"]));
    assert!(!m.open(false), "two connects across a reload");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn the_rate_trips_on_spaced_connects_as_pf_does() {
    need_root_and_tools!();
    // 5/15: six connects evenly over 0.3 * 15 s = 4.5 s (0.9 s apart) trip
    // pf's max-src-conn-rate, and must trip here; five must not.
    let conf = RATE.replace("2/5", "5/15");
    let mut n = Net::new(&conf);
    n.up();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "5", "-d", "900"]));
    assert!(!n.open(false), "five connects are not more than 5 in 15 s");
    let mut m = Net::new(&conf);
    m.up();
    ok(&m.knock(&[&m.srv_ip(false), "1234", "-n", "6", "-d", "900"]));
    assert!(m.open(false), "six connects 0.9 s apart are a knock");
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_neighbour_table_that_drops_is_named_with_its_remedy() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    let o = ns(
        &n.srv,
        &[
            "nft",
            "table ip filter { chain input { type filter hook input priority 0; policy drop; \
             iifname \"lo\" accept; ct state established,related accept; }; }",
        ],
    );
    ok(&o);
    n.up();
    let load = n.server(&["load"]);
    ok(&load);
    let err = String::from_utf8_lossy(&load.stderr);
    let want = format!(
        "pfknock: warning: chain ip filter input drops by default (policy drop): it runs on the input hook \
         beside pfknock's and closes what pfknock opens; add `tcp dport {{ 1234, {PROTECTED} }} accept` to it"
    );
    assert!(err.contains(&want), "{err}");
    let check = n.server(&["check"]);
    ok(&check);
    assert!(String::from_utf8_lossy(&check.stderr).contains(&want));
    // What the warning says is true: the knock is taken, the port stays shut.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.elements("ssh_4").contains(&n.cli_ip(false)));
    assert!(!n.open(false), "the neighbour's policy drop closes it");
    // And the remedy works.
    ok(&ns(
        &n.srv,
        &[
            "nft",
            &format!("add rule ip filter input tcp dport {{ 1234, {PROTECTED} }} accept"),
        ],
    ));
    assert!(n.open(false), "open once the neighbour accepts the ports");
    let load = n.server(&["load"]);
    assert!(
        !String::from_utf8_lossy(&load.stderr).contains("warning"),
        "the remedy silences it"
    );
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn revoke_kill_states_cuts_the_open_session() {
    need_root_and_tools!();
    if common_conntrack_missing() {
        return;
    }
    let mut n = Net::new(RATE);
    n.up_echo();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    // A session that says one thing, waits, and says another.
    let client = format!(
        r#"
import socket, time, sys
s = socket.create_connection(("{}", {PROTECTED}), timeout=2)
s.sendall(b"a"); assert s.recv(1) == b"a"
print("up", flush=True)
time.sleep(2)
try:
    s.sendall(b"b"); r = s.recv(1)
    print("alive" if r == b"b" else "closed")
except OSError as e:
    print("cut", e)
"#,
        n.srv_ip(false)
    );
    let c = Command::new("ip")
        .args(["netns", "exec", &n.cli, "python3", "-c", &client])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(800));
    let o = n.server(&["revoke", "-k", &n.cli_ip(false)]);
    ok(&o);
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("up"), "{text}");
    assert!(
        !text.contains("alive"),
        "the session survived revoke -k: {text}"
    );
    assert!(!n.open(false), "and no new connection opens");
}

fn common_conntrack_missing() -> bool {
    let missing = !std::path::Path::new("/usr/sbin/conntrack").exists()
        && !std::path::Path::new("/sbin/conntrack").exists();
    assert!(
        !missing,
        "conntrack(8) is not installed (Debian: conntrack)"
    );
    missing
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn allow_on_a_full_set_says_so() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("{RATE}size    = 2\n"));
    n.up();
    ok(&n.server(&["allow", "198.18.200.1"]));
    ok(&n.server(&["allow", "198.18.200.2"]));
    let o = n.server(&["allow", "198.18.200.3"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the set is full"), "{err}");
    assert_eq!(n.elements("ssh_4").len(), 2);
    // A real knock into the full set opens nothing, and --verify says so.
    let k = n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]);
    ok(&k);
    assert!(!n.elements("ssh_4").contains(&n.cli_ip(false)));
    assert!(!n.open(false), "the full set took no one");
    let v = Command::new("ip")
        .args([
            "netns", "exec", &n.cli, BIN, "knock", "-t", "300", "-g", "0", "-n", "3",
        ])
        .args([&n.srv_ip(false), "1234", "--verify", &PROTECTED.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(String::from_utf8_lossy(&v.stderr).contains("still closed"));
}

/// A router between a client and an inside host, pfknock loaded on the
/// router: forwarded connections to the knock and protected ports pass
/// untouched, in both directions, while the router's own port is shut.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn forwarded_traffic_is_untouched() {
    need_root_and_tools!();
    let id = format!("{}", std::process::id() % 100000);
    let (c, r, h) = (
        format!("pfa-c{id}"),
        format!("pfa-r{id}"),
        format!("pfa-h{id}"),
    );
    let _g = Cleanup(vec![c.clone(), r.clone(), h.clone()]);
    for x in [&c, &r, &h] {
        sh(&["ip", "netns", "add", x]);
        sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
    }
    let (ca, ra, rb, hb) = (
        format!("pac{id}"),
        format!("par{id}"),
        format!("pbr{id}"),
        format!("pbh{id}"),
    );
    sh(&[
        "ip", "link", "add", &ca, "netns", &c, "type", "veth", "peer", "name", &ra, "netns", &r,
    ]);
    sh(&[
        "ip", "link", "add", &rb, "netns", &r, "type", "veth", "peer", "name", &hb, "netns", &h,
    ]);
    for (x, dev, addr) in [
        (&c, &ca, "198.18.250.2/24"),
        (&r, &ra, "198.18.250.1/24"),
        (&r, &rb, "198.19.250.1/24"),
        (&h, &hb, "198.19.250.2/24"),
    ] {
        sh(&["ip", "-n", x, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", x, "link", "set", dev, "up"]);
    }
    sh(&[
        "ip",
        "-n",
        &c,
        "route",
        "add",
        "default",
        "via",
        "198.18.250.1",
    ]);
    sh(&[
        "ip",
        "-n",
        &h,
        "route",
        "add",
        "default",
        "via",
        "198.19.250.1",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);

    let dir = std::env::temp_dir().join(format!("pfknock-fwd-{id}"));
    fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("pfknock.toml");
    fs::write(&conf, RATE.replace("PROTECTED", &PROTECTED.to_string())).unwrap();
    let load = ns(&r, &[BIN, "-c", conf.to_str().unwrap(), "load"]);
    let _ = fs::remove_dir_all(&dir);
    ok(&load);

    // Listeners that greet, on both sides, on the knock and protected ports.
    let greeter = format!(
        "import socket, threading\n\
         def serve(p):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         s.bind(('0.0.0.0', p)); s.listen(16)\n    while True:\n        c, _ = s.accept(); c.sendall(b'hello'); c.close()\n\
         for p in (1234, {PROTECTED}):\n    threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         import time\ntime.sleep(60)\n"
    );
    let mut kids = Vec::new();
    for x in [&h, &c] {
        kids.push(
            Command::new("ip")
                .args(["netns", "exec", x, "python3", "-c", &greeter])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let _k = Kids(kids);
    let greets = |from: &str, to: &str, port: u16| -> bool {
        let py = format!(
            "import socket\ntry:\n    s = socket.create_connection(('{to}', {port}), timeout=1)\n    \
             print(s.recv(5).decode())\nexcept OSError as e:\n    print(e)\n"
        );
        let o = ns(from, &["python3", "-c", &py]);
        String::from_utf8_lossy(&o.stdout).trim() == "hello"
    };
    // Give the listeners a moment; bounded.
    for _ in 0..30 {
        if greets(&c, "198.19.250.2", PROTECTED) {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    for port in [1234, PROTECTED] {
        assert!(
            greets(&c, "198.19.250.2", port),
            "client -> inside host :{port} through the router"
        );
        assert!(
            greets(&h, "198.18.250.2", port),
            "inside host -> outside :{port} through the router"
        );
    }
    // The router's own protected port is closed to the client all along.
    let shut = ns(
        &c,
        &[
            "timeout",
            "1",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/198.18.250.1/{PROTECTED}"),
        ],
    );
    assert!(!shut.status.success(), "the router's own port is protected");
}

struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for x in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", x]).status();
        }
    }
}

struct Kids(Vec<std::process::Child>);
impl Drop for Kids {
    fn drop(&mut self) {
        for k in &mut self.0 {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_listened_knock_port_and_an_allow_for_everyone_are_named() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    // Something listens on the knock port.
    let mut l = Command::new("ip")
        .args(["netns", "exec", &n.srv, "python3", "-c"])
        .arg("import socket, time\ns = socket.socket()\ns.bind(('0.0.0.0', 1234))\ns.listen(1)\ntime.sleep(30)\n")
        .spawn()
        .unwrap();
    let mut warned = String::new();
    for _ in 0..30 {
        warned = String::from_utf8_lossy(&n.server(&["check"]).stderr).into_owned();
        if warned.contains("something listens on port 1234") {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let _ = l.kill();
    let _ = l.wait();
    assert!(
        warned.contains(":5: service.knock: warning: something listens on port 1234"),
        "{warned}"
    );
    // allow for all of IPv4 is refused in words, and changes nothing...
    let o = n.server(&["allow", "0.0.0.0/0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("covers every IPv4 address"));
    assert!(n.elements("ssh_4").is_empty());
    assert!(!n.open(false));
    // So is the client's address written IPv4-mapped, which the IPv6
    // set would hold and no IPv4 packet would meet.
    let o = n.server(&["allow", "::ffff:198.18.200.2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("give 198.18.200.2"));
    assert!(n.elements("ssh_4").is_empty() && n.elements("ssh_6").is_empty());
    assert!(!n.open(false));
    // ...unless forced (and then it is a network: the nft set takes hosts).
    let o = n.server(&["allow", "--force", "0.0.0.0/0"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("single addresses"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `count` TCP packets forged from the client's address to the protected
/// port, one every `gap` seconds, their flags cycling through `flags`,
/// with guessed sequence and acknowledgement numbers, from `sport` or a
/// random source port; data where the flags push.
fn forge_to_protected(
    n: &Net,
    py: &str,
    dev: &str,
    flags: &[&str],
    sport: Option<u16>,
    count: usize,
    gap: f64,
) {
    let flags: Vec<String> = flags.iter().map(|f| format!("{f:?}")).collect();
    let sport = sport.map_or("random.randint(1024, 65535)".to_owned(), |p| p.to_string());
    let script = format!(
        r#"
import time, random
from scapy.all import IP, TCP, Ether, sendp, conf
conf.verb = 0
flags = [{flags}]
for i in range({count}):
    f = flags[i % len(flags)]
    sendp(Ether()/IP(src="{me}", dst="{dst}")/TCP(sport={sport}, dport={PROTECTED},
          flags=f, seq=random.getrandbits(32), ack=random.getrandbits(32))/(b"x" if "P" in f else b""),
          iface="{dev}")
    time.sleep({gap})
"#,
        flags = flags.join(", "),
        me = n.cli_ip(false),
        dst = n.srv_ip(false)
    );
    n.forge(py, &script);
}

/// expire = "idle": forged packets from an authorized address to the
/// protected port keep nothing alive; a real session in use does.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn forged_packets_cannot_keep_an_idle_authorization_alive() {
    need_root_and_tools!();
    let Some(py) = scapy() else { return };
    let conf = RATE.replace("ttl     = \"10m\"", "ttl     = \"3s\"\nexpire  = \"idle\"");
    let mut n = Net::new(&conf);
    n.up_echo();
    n.probe(PROTECTED);
    let dev = n.cli_dev();
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.elements("ssh_4").contains(&n.cli_ip(false)));
    // ACKs, SYNs and data from the authorized address, every 0.4 s for 5 s.
    let before = n.probed();
    forge_to_protected(&n, py, &dev, &["A", "S", "PA"], None, 13, 0.4);
    assert!(n.probed() - before >= 13, "the forged packets arrived");
    assert!(
        !n.elements("ssh_4").contains(&n.cli_ip(false)),
        "expired on time, forged packets or not"
    );
    assert!(!n.open(false));

    // A real session that talks every 0.4 s keeps it for as long as it runs.
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let client = format!(
        "import socket, time\ns = socket.create_connection(('{}', {PROTECTED}), timeout=2)\n\
         for i in range(13):\n    s.sendall(b'k'); assert s.recv(1) == b'k'; time.sleep(0.4)\nprint('ok')\n",
        n.srv_ip(false)
    );
    let o = ns(&n.cli, &["python3", "-c", &client]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        n.elements("ssh_4").contains(&n.cli_ip(false)),
        "kept alive by the session in use"
    );
    sleep(Duration::from_millis(3500));
    assert!(
        !n.elements("ssh_4").contains(&n.cli_ip(false)),
        "idle once the session ended"
    );
}

/// expire = "idle", after a real session has ended: packets forged with
/// its own 5-tuple keep nothing alive, each kind on its own (one every
/// 0.5 s for 5 s, the ttl being 3 s): RSTs (which conntrack takes without
/// a window check in TIME_WAIT), SYNs, bare ACKs and data with guessed
/// sequence numbers. The authorization is gone a ttl after the session's
/// last real packet. (SYNs go last: the server's SYN-ACKs to them draw
/// answers from the real client's stack for a while, which would blur the
/// rounds after them; they share its address.)
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn packets_forged_on_an_ended_session_keep_nothing_alive() {
    need_root_and_tools!();
    let Some(py) = scapy() else { return };
    let conf = RATE.replace("ttl     = \"10m\"", "ttl     = \"3s\"\nexpire  = \"idle\"");
    let mut n = Net::new(&conf);
    n.up_echo();
    n.probe(PROTECTED);
    let dev = n.cli_dev();
    for flags in ["R", "A", "PA", "S"] {
        ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
        // One exchange, then an orderly close: the 5-tuple is in TIME_WAIT.
        let client = format!(
            "import socket\ns = socket.create_connection(('{}', {PROTECTED}), timeout=2)\n\
             s.sendall(b'k'); assert s.recv(1) == b'k'\nprint(s.getsockname()[1])\ns.close()\n",
            n.srv_ip(false)
        );
        let o = ns(&n.cli, &["python3", "-c", &client]);
        let sport: u16 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{o:?}"));
        let before = n.probed();
        forge_to_protected(&n, py, &dev, &[flags], Some(sport), 10, 0.5);
        assert!(
            n.probed() - before >= 10,
            "{flags}: the forged packets arrived"
        );
        assert!(
            !n.elements("ssh_4").contains(&n.cli_ip(false)),
            "{flags}: kept alive by packets forged on the ended session"
        );
        assert!(!n.open(false));
    }
}

/// Two services protecting one port (a warning, not an error): a knock on
/// either opens it, and a knock on neither does not.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn two_services_on_one_port_both_open_it() {
    need_root_and_tools!();
    let conf = format!(
        "{RATE}\n[[service]]\nname    = \"admin\"\nprotect = [PROTECTED]\nknock   = [1235]\nrate    = \"2/5\"\n"
    );
    let mut n = Net::new(&conf);
    n.up();
    let check = n.server(&["check"]);
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("is also protected by service \"ssh\"")
    );
    assert!(!n.open(false), "closed before either knock");
    ok(&n.knock(&[&n.srv_ip(false), "1235", "-n", "3"]));
    assert!(
        n.open(false),
        "the second service's knock opens the shared port"
    );
    assert!(n.elements("ssh_4").is_empty());
    assert!(!n.open(true), "and only for the address that knocked");
}

/// Services with ports of their own: the knock ports' answers, the drops
/// after the accepts and the guard's drops are one rule of each kind for
/// all of them (render/nft/merge.rs), and the protected ports' rules a
/// chain that packets to them jump to. Each knock still opens its own
/// service's port and not the other's, a close knock closes only its own,
/// the daemon logs each for its service, and with pfknock's table deleted
/// the guard keeps both closed.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn each_service_opens_its_own_port_through_rules_they_share() {
    need_root_and_tools!();
    const WEB: u16 = PROTECTED + 1;
    let conf = format!(
        "{RATE}\n[[service]]\nname    = \"web\"\nprotect = [{WEB}]\nknock   = [1236]\nclose   = 1240\nrate    = \"2/5\"\n"
    );
    let mut n = Net::new(&conf);
    n.up();
    let mut listener = n.listener_on(WEB, "c.close()");
    let web = |v6| n.reach_from(&n.cli, &n.srv_ip(v6), WEB);
    let rules = |chain: &str| {
        let o = ns(&n.srv, &["nft", "list", "chain", "inet", "pfknock", chain]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (input, protect) = (rules("input"), rules("protect"));
    assert_eq!(
        input.matches("synproxy").count(),
        2,
        "one SYN and one ACK answer for both:\n{input}"
    );
    assert_eq!(
        protect.matches(" drop").count(),
        1,
        "one drop for both:\n{protect}"
    );
    assert!(input.contains("jump protect"), "{input}");
    assert_eq!(rules("prerouting").matches("notrack").count(), 1);
    let (mut d, pid, log) = common::daemon_logging_to_a_socket(&n);
    assert!(
        !n.open(false) && !web(false) && !web(true),
        "closed at first"
    );

    ok(&n.knock(&[&n.srv_ip(false), "1236", "-n", "3"]));
    let me = n.cli_ip(false);
    assert!(web(false), "web's knock opens web's port");
    assert!(!n.open(false), "and not ssh's");
    assert!(!web(true), "and only for the address that knocked");
    assert_eq!(n.elements("web_4"), std::slice::from_ref(&me));
    assert!(n.elements("ssh_4").is_empty());
    let said = common::read_log(&log, 3, |s| s.contains("authorized"));
    assert!(
        said.contains(&format!("authorized {me} service=web")),
        "{said}"
    );
    assert!(!said.contains("service=ssh"), "{said}");

    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "ssh's knock opens ssh's port");
    ok(&n.knock(&[&n.srv_ip(false), "1240", "-n", "3"]));
    assert!(!web(false), "web's close knock closes web's port");
    assert!(n.open(false), "and not ssh's");
    assert!(n.elements("web_4").is_empty());
    assert_eq!(n.elements("ssh_4"), std::slice::from_ref(&me));
    let said = common::read_log(&log, 3, |s| s.contains("closed"));
    assert!(
        said.contains(&format!("authorized {me} service=ssh")),
        "{said}"
    );
    assert!(said.contains(&format!("closed {me} service=web")), "{said}");
    assert!(
        !said.contains(&format!("closed {me} service=ssh")),
        "{said}"
    );
    sh(&["kill", &pid]);
    let _ = d.wait();

    // No daemon to put the table back: the guard alone.
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    assert!(
        !n.open(false) && !web(false),
        "the guard keeps both closed to new connections"
    );
    let _ = listener.kill();
    let _ = listener.wait();
}

/// Knocks from any address a local user can bind (IPV6_FREEBIND and
/// IP_FREEBIND need no privilege) to this host's own knock port count
/// nothing; nor do knocks from a link-local address. Real knocks still do.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn local_and_link_local_knocks_open_nothing() {
    need_root_and_tools!();
    let mut n = Net::new(RATE);
    n.up();
    let py = "import socket, sys\n\
              src, dst, port, hits, scope = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]\n\
              six = ':' in dst\n\
              for _ in range(hits):\n\
              \x20   s = socket.socket(socket.AF_INET6 if six else socket.AF_INET)\n\
              \x20   if six:\n\
              \x20       s.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND\n\
              \x20       s.bind((src, 0, 0, socket.if_nametoindex(scope) if scope != '-' else 0))\n\
              \x20   else:\n\
              \x20       s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND\n\
              \x20       s.bind((src, 0))\n\
              \x20   s.settimeout(1)\n\
              \x20   try:\n\
              \x20       s.connect((dst, port))\n\
              \x20   except OSError:\n\
              \x20       pass\n\
              \x20   s.close()\n";
    let set = |af: &str| {
        String::from_utf8_lossy(
            &ns(
                &n.srv,
                &[
                    "nft",
                    "list",
                    "set",
                    "inet",
                    "pfknock",
                    &format!("ssh_{af}"),
                ],
            )
            .stdout,
        )
        .into_owned()
    };
    // As nobody on the server, from addresses that are not the server's.
    let forged6 = format!("fd00:{}::99", n.n);
    let forged4 = format!("198.18.{}.99", n.n);
    for (src, dst) in [(&forged6, n.srv_ip(true)), (&forged4, n.srv_ip(false))] {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &n.srv,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
            ])
            .args([
                "--clear-groups",
                // The system's python: a user's shims are not nobody's.
                "/usr/bin/python3",
                "-c",
                py,
                src,
                &dst,
                "1234",
                "6",
                "-",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    sleep(Duration::from_millis(300));
    assert!(!set("6").contains(&forged6), "{}", set("6"));
    assert!(!set("4").contains(&forged4), "{}", set("4"));
    // From the client's link-local address, on its link.
    let dev = n.cli_dev();
    let ll = String::from_utf8_lossy(
        &ns(&n.cli, &["sh", "-c", &format!("ip -6 addr show dev {dev} scope link | sed -n 's/.*inet6 \\(fe80[^/]*\\).*/\\1/p'")])
            .stdout,
    )
    .trim()
    .to_owned();
    assert!(ll.starts_with("fe80"), "no link-local address: {ll:?}");
    let o = Command::new("ip")
        .args(["netns", "exec", &n.cli, "python3", "-c", py, &ll])
        .args([&n.srv_ip(true), "1234", "6", &dev])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    sleep(Duration::from_millis(300));
    assert!(!set("6").contains("fe80"), "{}", set("6"));
    assert!(!n.open(true));
    // A real knock still opens.
    ok(&n.knock(&[&n.srv_ip(true), "1234", "-n", "3"]));
    common::wait_for("the real knock", || n.open(true));
}

/// A scan shows the knock ports of a sequence (synproxy answers them), not
/// their order. Knocked in the scan's order or in reverse, three rounds
/// each (the attack that opened the port when a wrong port reset
/// nothing), they open nothing: each knock out of order resets the
/// host's progress and holds it back for the rate's window. The admin's
/// `show`, the kernel's sets and the log agree; after the hold, the right
/// order opens.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_scanned_sequence_knocked_in_the_wrong_order_opens_nothing() {
    need_root_and_tools!();
    let mut n = Net::new(
        "[[service]]\nname    = \"ssh\"\nprotect = [PROTECTED]\nknock   = [7003, 7001, 7002]\n\
         rate    = \"2/5\"\nwindow  = \"10s\"\nttl     = \"10m\"\n",
    );
    n.up();
    let (mut d, pid, log) = common::daemon_logging_to_a_socket(&n);
    let me = n.cli_ip(false);
    for order in [
        // Ascending, as a scan lists them; and the right order reversed.
        "7001,7001,7001,7002,7002,7002,7003,7003,7003",
        "7002,7002,7002,7001,7001,7001,7003,7003,7003",
    ] {
        common::sweep(&n, false, order, 3);
        assert!(!n.open(false), "{order}: opened");
        assert!(n.elements("ssh_4").is_empty(), "{order}: authorized");
        assert!(n.elements("ssh_s2_4").is_empty(), "{order}: stage 2");
        assert_eq!(n.elements("ssh_hold_4"), vec![me.clone()], "{order}");
    }
    let shown = n.server(&["show"]);
    assert!(shown.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&shown.stderr).contains("nobody is authorized"),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    // Held back: even the right order counts nothing yet.
    ok(&n.knock(&[&n.srv_ip(false), "-n", "3", "7003", "7001", "7002"]));
    assert!(!n.open(false), "a held-back host opened the port");
    let said = common::read_log(&log, 1, |_| false);
    assert!(!said.contains("authorized"), "{said}");
    // After the hold (the rate's 5 s), the right order opens, and the log
    // says so once.
    common::wait_for("the hold to end", || n.elements("ssh_hold_4").is_empty());
    ok(&n.knock(&[&n.srv_ip(false), "-n", "3", "7003", "7001", "7002"]));
    assert!(n.open(false), "the right order did not open");
    let said = common::read_log(&log, 3, |s| s.contains("authorized"));
    assert_eq!(
        said.matches(&format!("authorized {me} service=ssh"))
            .count(),
        1,
        "{said}"
    );
    sh(&["kill", &pid]);
    let _ = d.wait();
}

/// One IPv6 network cannot lock out the others: knocks count per /64
/// (`prefix6`), so 600 addresses of one /64 knocking with real handshakes
/// fill no meter of `size = 100` (one element: the network), and
/// authorize at most 16 of their addresses at once (one more a minute);
/// a real knock from another network still opens, and nothing is logged
/// full. (With `prefix6 = 128`, each address counted alone, the same
/// flood filled the meter and the real knock failed.)
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_flood_from_one_ipv6_network_locks_nobody_out() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("{RATE}size    = 100\n"));
    n.up();
    let (mut d, pid, log) = common::daemon_logging_to_a_socket(&n);
    let flood = format!("fd00:{}:1::", n.n);
    flood_from(&n, &flood, 600, 3);
    let meter = n.elements("ssh_m1_6");
    assert_eq!(meter, vec![flood.clone()], "one element for the network");
    let flooded = n.elements("ssh_6");
    assert!(
        !flooded.is_empty() && flooded.len() <= 17,
        "{} addresses of the network authorized: {flooded:?}",
        flooded.len()
    );
    assert!(flooded.iter().all(|a| a.starts_with(&flood)));
    // A host of another network knocks, and gets in.
    ok(&n.knock(&[&n.srv_ip(true), "1234", "-n", "3"]));
    assert!(n.open(true), "locked out by another network's flood");
    assert!(n.elements("ssh_6").contains(&n.cli_ip(true)));
    let said = common::read_log(&log, 3, |s| {
        s.contains(&format!("authorized {}", n.cli_ip(true)))
    });
    assert!(
        said.contains(&format!("authorized {} service=ssh", n.cli_ip(true))),
        "{said}"
    );
    assert!(!said.contains("full"), "{said}");
    assert_eq!(
        said.matches("authorized ").count(),
        flooded.len() + 1,
        "{said}"
    );
    sh(&["kill", &pid]);
    let _ = d.wait();
}

/// Sources that each connect once to a knock port (too few to knock)
/// still take a meter entry each for the rate's window: more of them
/// than a meter holds would keep everybody else's knocks from counting.
/// Meters hold four times `size`: 150 IPv4 sources against `size = 50`
/// (a meter of 200) leave room, and a real knock from another address
/// opens. (With meters of `size`, the same 150 filled the meter and the
/// real knock failed.)
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_flood_of_ipv4_sources_leaves_the_meters_room() {
    need_root_and_tools!();
    let mut n = Net::new(&format!("{RATE}size    = 50\n"));
    n.up();
    let (mut d, pid, log) = common::daemon_logging_to_a_socket(&n);
    let flood = format!("198.19.{}.", n.n);
    flood_from(&n, &flood, 150, 1);
    assert_eq!(n.elements("ssh_m1_4").len(), 150, "one meter entry each");
    assert!(n.elements("ssh_4").is_empty(), "one connect knocks nothing");
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    assert!(n.open(false), "locked out by a flood of sources");
    assert_eq!(n.elements("ssh_4"), vec![n.cli_ip(false)]);
    let said = common::read_log(&log, 3, |s| s.contains("authorized"));
    assert!(
        said.contains(&format!("authorized {} service=ssh", n.cli_ip(false))),
        "{said}"
    );
    assert!(!said.contains("full"), "{said}");
    sh(&["kill", &pid]);
    let _ = d.kill();
    let _ = d.wait();
}

/// Real handshakes to the knock port from `count` addresses of a network
/// that lives in the client namespace (`net`: "198.19.N." or
/// "fd00:N:1::", any of its addresses local there, routed to it from the
/// server), `hits` from each.
fn flood_from(n: &Net, net: &str, count: u32, hits: u32) {
    let v6 = net.contains(':');
    let (fam, len) = if v6 { ("-6", "64") } else { ("-4", "24") };
    let prefix = format!("{net}{}/{len}", if v6 { "" } else { "0" });
    let via = n.cli_ip(v6);
    sh(&[
        "ip", "-n", &n.srv, fam, "route", "add", &prefix, "via", &via,
    ]);
    sh(&[
        "ip", "-n", &n.cli, fam, "route", "add", "local", &prefix, "dev", "lo",
    ]);
    let py = "import socket, sys\n\
              net, dst, count, hits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n\
              six = ':' in net\n\
              for i in range(1, count + 1):\n\
              \x20   for _ in range(hits):\n\
              \x20       s = socket.socket(socket.AF_INET6 if six else socket.AF_INET)\n\
              \x20       if six:\n\
              \x20           s.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND\n\
              \x20       else:\n\
              \x20           s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND\n\
              \x20       s.bind((net + (format(i, 'x') if six else str(i)), 0))\n\
              \x20       s.settimeout(1)\n\
              \x20       try:\n\
              \x20           s.connect((dst, 1234))\n\
              \x20       except OSError:\n\
              \x20           pass\n\
              \x20       s.close()\n";
    let (c, h) = (count.to_string(), hits.to_string());
    let o = ns(&n.cli, &["python3", "-c", py, net, &n.srv_ip(v6), &c, &h]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
