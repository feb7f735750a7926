//! Rotating knocks: the derivation against an independent implementation
//! (tests/rotation_reference.py, written from docs/rotation.md), the
//! secret's handling, and on nftables in namespaces what must open and
//! what must stay closed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::Duration;

use common::{BIN, Net, Scratch, daemon, daemon_logging_to_a_socket, ok, wait_for};

fn pfknock(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn secret(dir: &Path, name: &str, hex: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, format!("{hex}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p.to_str().unwrap().to_owned()
}

fn conf(dir: &Path, body: &str) -> String {
    let p = dir.join("r.toml");
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p.to_str().unwrap().to_owned()
}

fn ports_at(c: &str, service: &str, at: i64) -> String {
    let o = pfknock(&["-c", c, "ports", service, "--at", &at.to_string()]);
    ok(&o);
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// A small deterministic generator: the cases are the same every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn ports_match_the_independent_reference() {
    let dir = Scratch::new("rotate-ref");
    let mut g = Lcg(0x5eed);
    let mut checked = 0;
    for case in 0..40 {
        let len = 16 + g.next(48) as usize;
        let hex: String = (0..len).map(|_| format!("{:02x}", g.next(256))).collect();
        let count = 1 + g.next(8);
        let lo = 1024 + g.next(50000);
        // From the smallest range allowed (two ports per knock port) up.
        let hi = (lo + 2 * count - 1 + g.next(4000)).min(65535);
        let step = [5, 30, 60, 3600, 86400][g.next(5) as usize];
        let name = format!("svc_{case}");
        let key = secret(&dir, "k", &hex);
        let c = conf(
            &dir,
            &format!(
                "[[service]]\nname = \"{name}\"\nprotect = [22]\n\
                 rotate = {{ secret = \"{key}\", range = \"{lo}-{hi}\", ports = {count}, step = \"{step}s\" }}\n"
            ),
        );
        // Times on and around step boundaries, and far apart.
        let base = g.next(4_000_000_000) as i64;
        let b = base - base % step as i64;
        let times = [0, b - 1, b, b + 1, b + step as i64 - 1, base, 1 << 40];
        let mut args = vec![
            hex.clone(),
            name.clone(),
            lo.to_string(),
            hi.to_string(),
            count.to_string(),
            step.to_string(),
        ];
        args.extend(times.iter().map(i64::to_string));
        let r = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rotation_reference.py"))
            .args(&args)
            .output()
            .unwrap();
        ok(&r);
        let want: Vec<String> = String::from_utf8(r.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(want.len(), times.len());
        for (t, w) in times.iter().zip(&want) {
            assert_eq!(&ports_at(&c, &name, *t), w, "case {case} at {t}: {args:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 280);
}

#[test]
fn the_documented_example_holds() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rotation.md")).unwrap();
    let dir = Scratch::new("rotate-doc");
    let hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let key = secret(&dir, "k", &hex);
    let c = conf(
        &dir,
        &format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\n\
             rotate = {{ secret = \"{key}\", range = \"40000-49999\", ports = 2 }}\n"
        ),
    );
    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(now) = cells.get(1).and_then(|c| c.parse::<i64>().ok()) else {
            continue;
        };
        assert_eq!(cells[2].parse::<i64>().unwrap(), now / 30, "{line}");
        assert_eq!(ports_at(&c, "ssh", now), cells[3], "{line}");
        rows += 1;
    }
    assert!(rows >= 4, "the example table was read");
}

#[test]
fn keygen_writes_a_private_secret_and_never_writes_over_a_file() {
    let dir = Scratch::new("rotate-keygen");
    let a = dir.join("a.key");
    ok(&pfknock(&["keygen", a.to_str().unwrap()]));
    let m = fs::metadata(&a).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&a).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.trim().chars().all(|c| c.is_ascii_hexdigit()));
    // A second secret differs; an existing file or a link is never
    // written through.
    let b = dir.join("b.key");
    ok(&pfknock(&["keygen", b.to_str().unwrap()]));
    assert_ne!(fs::read_to_string(&b).unwrap(), text);
    let o = pfknock(&["keygen", a.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("a.key"));
    assert_eq!(fs::read_to_string(&a).unwrap(), text, "untouched");
    let target = dir.join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.join("link.key")).unwrap();
    assert!(
        !pfknock(&["keygen", dir.join("link.key").to_str().unwrap()])
            .status
            .success()
    );
    assert!(!target.exists(), "nothing written through the link");
}

#[test]
fn a_secret_others_can_read_or_a_bad_one_is_refused() {
    let dir = Scratch::new("rotate-perm");
    let key = secret(&dir, "k", &"ab".repeat(32));
    let c = conf(
        &dir,
        &format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\n\
             rotate = {{ secret = \"{key}\", range = \"40000-49999\" }}\n"
        ),
    );
    ok(&pfknock(&["-c", &c, "ports", "ssh"]));
    for mode in [0o640, 0o604, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
        for args in [
            vec!["-c", &c, "ports", "ssh"],
            vec!["-c", &c, "render"],
            vec!["-c", &c, "knock", "-s", "ssh", "127.0.0.1"],
        ] {
            let o = pfknock(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "mode {mode:o}: {args:?}");
            assert!(err.contains("refusing to use it"), "{args:?}: {err}");
        }
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    for bad in ["", "abc", "zz", &"ab".repeat(15)] {
        fs::write(&key, bad).unwrap();
        let o = pfknock(&["-c", &c, "ports", "ssh"]);
        assert!(!o.status.success(), "{bad:?}");
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("pfknock: "));
    }
    // A service with fixed knock ports has no step ports.
    let c2 = conf(
        &dir,
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n",
    );
    let o = pfknock(&["-c", &c2, "ports", "ssh"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("always 1234"));
}

// ---- nftables, in namespaces -------------------------------------------

const STEP: i64 = 5;

fn rotating_conf(key: &str) -> String {
    format!(
        "[[service]]\nname = \"ssh\"\nprotect = [PROTECTED]\nrate = \"2/5\"\nttl = \"10m\"\nwindow = \"30s\"\n\
         rotate = {{ secret = \"{key}\", range = \"40000-40999\", ports = 2, step = \"{STEP}s\" }}\n"
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sleep until `secs` seconds into a step (bounded: at most one step).
fn into_step(secs: f64) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let into = t % STEP as f64;
    let wait = if into <= secs {
        secs - into
    } else {
        STEP as f64 - into + secs
    };
    sleep(Duration::from_secs_f64(wait));
}

fn knock_ports(n: &Net, v6: bool, ports: &[&str]) {
    let ip = n.srv_ip(v6);
    let mut a = vec![ip.as_str(), "-n", "3"];
    a.extend_from_slice(ports);
    ok(&n.knock(&a));
}

/// A namespace pair whose config rotates with a secret of `byte`
/// repeated (written as ssh.key), and the secret's path.
fn rotating_net(byte: &str) -> (Net, String) {
    let n = Net::new("");
    let key = secret(&n.dir, "ssh.key", &byte.repeat(32));
    fs::write(
        n.conf(),
        rotating_conf(&key).replace("PROTECTED", &common::PROTECTED.to_string()),
    )
    .unwrap();
    (n, key)
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn only_this_steps_ports_from_the_right_secret_open_and_authorizations_survive_rotation() {
    need_root_and_tools!();
    let (mut n, _) = rotating_net("5a");
    let wrong = secret(&n.dir, "wrong.key", &"a5".repeat(32));
    let c = n.conf().to_str().unwrap().to_owned();
    n.up_echo();
    let (mut d, _pid) = daemon(&n);

    // A wrong secret computes other ports: they answer like every port of
    // the range, and open nothing.
    into_step(0.5);
    ok(&n.knock(&[
        &n.srv_ip(false),
        "-n",
        "3",
        "-s",
        "ssh",
        "--secret",
        &wrong,
        "--range",
        "40000-40999",
        "--count",
        "2",
        "--step",
        "5s",
    ]));
    assert!(!n.open(false), "a wrong secret opened the port");
    // Its ports are wrong ones: the client is held back for the rate's
    // window (5 s), after which the right knock counts.
    assert_eq!(n.elements("ssh_hold_4"), vec![n.cli_ip(false)]);
    wait_for("the hold to end", || n.elements("ssh_hold_4").is_empty());

    // The right one, from the client's copy of the config, opens IPv4.
    let recorded = ports_at(&c, "ssh", now());
    ok(&n.knock(&[&n.srv_ip(false), "-n", "3", "-s", "ssh", "-c", &c]));
    assert!(n.open(false), "the right knock did not open");
    assert!(!n.open(true), "IPv6 was not knocked");

    // Ten rotations: the loaded ports change, the authorization stays.
    let rec: Vec<&str> = recorded.split(' ').collect();
    let mut seen = vec![recorded.clone()];
    for i in 0..10 {
        let t0 = now() / STEP;
        wait_for("the next step", || now() / STEP > t0);
        into_step(1.5);
        let cur = ports_at(&c, "ssh", now());
        let rules = String::from_utf8_lossy(
            &common::ns(&n.srv, &["nft", "list", "table", "inet", "pfknock"]).stdout,
        )
        .into_owned();
        for p in cur.split(' ') {
            assert!(
                rules.contains(p),
                "rotation {i}: port {p} of {cur} not loaded:\n{rules}"
            );
        }
        assert!(n.open(false), "rotation {i}: the authorization was lost");
        seen.push(cur);
        if i == 1 {
            // Two steps after it was recorded, the knock replays over
            // IPv6 (not authorized) and opens nothing.
            knock_ports(&n, true, &rec);
            assert!(!n.open(true), "a knock replayed two steps later opened");
        }
    }
    seen.dedup();
    assert!(seen.len() >= 8, "the ports rotated: {seen:?}");

    // ssh's ProxyCommand mode knocks this step's ports and relays.
    let o = Command::new("ip")
        .args([
            "netns", "exec", &n.cli, BIN, "knock", "-n", "3", "-t", "1000", "-s", "ssh", "-c", &c,
        ])
        .args(["--proxy", &common::PROTECTED.to_string(), &n.srv_ip(true)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin
                .take()
                .unwrap()
                .write_all(b"through the rotating door\n")?;
            ch.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "through the rotating door\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&n.server(&["revoke", &n.srv_ip(true).replace("::1", "::2")]));
    assert!(!n.open(true), "revoked");

    // A knock in progress across a boundary: stage 1 with the ports of
    // one step, stage 2 after the next step has begun.
    into_step(STEP as f64 - 1.5);
    let p = ports_at(&c, "ssh", now());
    let p: Vec<&str> = p.split(' ').collect();
    knock_ports(&n, true, &p[..1]);
    let t0 = now() / STEP;
    wait_for("the next step", || now() / STEP > t0);
    sleep(Duration::from_millis(700));
    knock_ports(&n, true, &p[1..]);
    assert!(
        n.open(true),
        "a knock across a step boundary did not complete"
    );
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_step_that_cannot_load_keeps_the_ports_loaded_and_says_so() {
    need_root_and_tools!();
    let (mut n, key) = rotating_net("3c");
    n.up();
    let (mut d, _pid, log) = daemon_logging_to_a_socket(&n);
    log.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    // The steps' ports, in the chain of knocks.
    let rules = || {
        String::from_utf8_lossy(
            &common::ns(
                &n.srv,
                &["nft", "list", "chain", "inet", "pfknock", "knocks"],
            )
            .stdout,
        )
        .into_owned()
    };
    into_step(1.0);
    let before = rules();
    // Someone makes the secret readable by others: the next load (when
    // the steps loaded ahead run out) is refused, the loaded ports stay,
    // and the log says why.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let t0 = now() / STEP;
    let mut said = String::new();
    let ahead = pfknock::rotate::ahead(STEP as u64);
    for _ in 0..((ahead + 3) * STEP) {
        let mut buf = [0u8; 2048];
        if let Ok(k) = log.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..k]));
            said.push('\n');
        }
        if said.contains("rotate:") && now() / STEP > t0 {
            break;
        }
    }
    assert!(
        said.contains("rotate:") && said.contains("keeping the knock ports loaded"),
        "{said}"
    );
    assert_eq!(rules(), before, "the loaded ports changed");
    // A knock on the loaded (now previous) step's ports still counts.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let t1 = now() / STEP;
    wait_for("the next step", || now() / STEP > t1);
    wait_for("the new ports", || rules() != before);
    let cur = ports_at(n.conf().to_str().unwrap(), "ssh", now());
    for p in cur.split(' ') {
        assert!(rules().contains(p), "port {p} of {cur} not loaded");
    }
    let _ = d.kill();
    let _ = d.wait();
}

/// Knocks that start at 20 moments around step boundaries (just before,
/// at, and after each of four), each computing its ports from the secret
/// with a clock a second ahead of the server's: every one opens. The next
/// step's ports are in force before the boundary, whenever the daemon gets
/// to load them.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_knock_at_any_moment_of_a_step_opens() {
    need_root_and_tools!();
    let (mut n, _) = rotating_net("3c");
    let c = n.conf().to_str().unwrap().to_owned();
    let ctl = n.ctl().to_str().unwrap().to_owned();
    n.up_echo();
    let (mut d, _pid) = daemon(&n);
    let ip = n.cli_ip(false);
    let mut failed = Vec::new();
    for round in 0..4 {
        // The next boundary, at least a second away.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let b = ((t + 1.0) / STEP as f64).ceil() * STEP as f64;
        for off in [-0.4, 0.0, 0.4, 0.8, 1.2] {
            let at = b + off;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            if at > now {
                std::thread::sleep(std::time::Duration::from_secs_f64(at - now));
            }
            // A client whose clock is a second ahead of the server's: just
            // before a boundary it knocks the next step's ports.
            let ahead = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                + 1.0;
            let ports = ports_at(&c, "ssh", ahead as i64);
            let mut args = vec![n.srv_ip(false), "-n".into(), "3".into()];
            args.extend(ports.split(' ').map(str::to_owned));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let sent = std::time::Instant::now();
            let o = n.knock(&args);
            let took = sent.elapsed();
            let opened = o.status.success()
                && (0..10).any(|_| {
                    n.open(false) || {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        false
                    }
                });
            if !opened {
                // What the knock said, and what the kernel holds: enough to
                // tell a client error from a port out of its window or a
                // host held back.
                let table = common::ns(&n.srv, &["nft", "list", "table", "inet", "pfknock"]);
                failed.push(format!(
                    "round {round}, {off:+}s from the boundary: ports {ports} at {at:.3} \
                     (client {ahead:.3}), knock {:?} in {took:?}: {}\n{}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).trim(),
                    String::from_utf8_lossy(&table.stdout)
                ));
            }
            ok(&common::ns(
                &n.srv,
                &[common::BIN, "revoke", &ip, "-c", &c, "-S", &ctl],
            ));
            assert!(!n.open(false), "revoked");
        }
    }
    assert!(failed.is_empty(), "knocks that did not open: {failed:?}");
    let _ = d.kill();
    let _ = d.wait();
}

/// Near a boundary three steps are in force: the last, this one and the
/// next (from its lead). The last and the next may meet on a port, at
/// different stages. With a secret found (by the independent reference)
/// whose next step's second port is the last step's first, in a range of
/// 20 ports stepping every 20 s: during the lead, the next step's knock
/// (a client clock ahead), the last step's (a clock behind) and this
/// step's each open, each logged once and revoked; that port knocked
/// once counts a first stage and opens nothing, and a port of no step
/// holds the knocker and opens nothing.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_port_the_last_step_and_the_next_share_opens_for_either() {
    need_root_and_tools!();
    const STEP20: i64 = 20;
    const LEAD: i64 = 10;
    // The first boundary whose lead starts at least 8 s from now (the
    // daemon's start), and a secret whose ports meet there.
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let py = r#"
import sys, time
sys.path.insert(0, sys.argv[1])
import rotation_reference as r
step, lead = int(sys.argv[2]), int(sys.argv[3])
now = int(time.time())
b = ((now + 8 + lead) // step + 1) * step
for k in range(1, 100000):
    s = bytes.fromhex("%064x" % (k * 0x9E3779B97F4A7C15))
    p = lambda t: r.ports(s, "ssh", 40000, 40019, 2, step, t)
    if p(b)[1] == p(b - 2 * step)[0]:
        print(s.hex(), b)
        break
"#;
    let (step, lead) = (STEP20.to_string(), LEAD.to_string());
    let found = Command::new("python3")
        .args(["-c", py, reference.to_str().unwrap(), &step, &lead])
        .output()
        .unwrap();
    ok(&found);
    let found = String::from_utf8(found.stdout).unwrap();
    let (hex, b) = found
        .trim()
        .split_once(' ')
        .expect("a secret whose ports meet");
    let b: i64 = b.parse().unwrap();
    let mut n = Net::new("");
    let key = secret(&n.dir, "ssh.key", hex);
    fs::write(
        n.conf(),
        format!(
            "[[service]]\nname = \"ssh\"\nprotect = [{}]\nrate = \"2/5\"\nttl = \"10m\"\n\
             window = \"30s\"\nrotate = {{ secret = \"{key}\", range = \"40000-40019\", \
             ports = 2, step = \"{STEP20}s\" }}\n",
            common::PROTECTED
        ),
    )
    .unwrap();
    let c = n.conf().to_str().unwrap().to_owned();
    let ctl = n.ctl().to_str().unwrap().to_owned();
    n.up_echo();
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    // The ports as the shipped command computes them.
    let last = ports_at(&c, "ssh", b - 2 * STEP20);
    let this = ports_at(&c, "ssh", b - STEP20);
    let next = ports_at(&c, "ssh", b);
    let (l, x): (Vec<&str>, Vec<&str>) = (last.split(' ').collect(), next.split(' ').collect());
    assert_eq!(l[0], x[1], "last {last}, next {next}");
    let ip = n.cli_ip(false);
    // Into the lead, with most of it to go.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let from = (b - LEAD) as f64 + 0.3;
    assert!(t < from, "the daemon took too long to start");
    sleep(Duration::from_secs_f64(from - t));
    assert!(!n.open(false), "open before any knock");
    for (which, ports) in [("next", &next), ("last", &last), ("this", &this)] {
        let p: Vec<&str> = ports.split(' ').collect();
        knock_ports(&n, false, &p);
        assert!(
            n.open(false),
            "the {which} step's knock ({ports}) did not open"
        );
        assert_eq!(n.elements("ssh_4"), vec![ip.clone()], "{which}");
        let said = common::read_log(&log, 3, |s| s.contains("authorized"));
        assert_eq!(
            said.matches(&format!("authorized {ip} service=ssh"))
                .count(),
            1,
            "{which}: {said}"
        );
        let revoked = common::ns(&n.srv, &[common::BIN, "revoke", &ip, "-c", &c, "-S", &ctl]);
        ok(&revoked);
        assert!(
            String::from_utf8_lossy(&revoked.stderr)
                .contains("ssh in table inet pfknock: 1/1 addresses deleted."),
            "{which}: {revoked:?}"
        );
        assert!(n.elements("ssh_4").is_empty(), "{which}: revoked");
        let said = common::read_log(&log, 3, |s| s.contains("revoked"));
        assert_eq!(
            said.matches(&format!("revoked {ip} ")).count(),
            1,
            "{which}: {said}"
        );
    }
    // The shared port alone, from a fresh start (the knocks above left
    // their meters spent): a first stage, nothing opened. Knocked as
    // often again it would be the last step's first port and then the
    // next step's second, a sequence across steps, which counts as any
    // does while both are in force.
    for set in ["ssh_s1_4", "ssh_m1_4", "ssh_m2_4"] {
        ok(&common::ns(
            &n.srv,
            &["nft", "flush", "set", "inet", "pfknock", set],
        ));
    }
    knock_ports(&n, false, &[l[0]]);
    assert_eq!(n.elements("ssh_s1_4"), vec![ip.clone()]);
    assert!(n.elements("ssh_4").is_empty());
    // All of that in the lead: else the premise did not hold.
    assert!(now() < b, "the knocks ran past the boundary");
    // A port of the range no step in force has: held, nothing opened.
    let used: Vec<&str> = [&last, &this, &next]
        .iter()
        .flat_map(|p| p.split(' '))
        .collect();
    let wrong = (40000..=40019)
        .map(|p: u16| p.to_string())
        .find(|p| !used.contains(&p.as_str()))
        .unwrap();
    let _ = n.knock(&[&n.srv_ip(false), "-n", "3", &wrong]);
    assert_eq!(n.elements("ssh_hold_4"), vec![ip.clone()]);
    assert!(n.elements("ssh_4").is_empty() && n.elements("ssh_s1_4").is_empty());
    assert!(!n.open(false), "a wrong port opened");
    let said = common::read_log(&log, 1, |_| false);
    assert!(!said.contains("authorized"), "{said}");
    common::sh(&["kill", &pid]);
    let _ = d.wait();
}

#[test]
fn a_missing_secret_says_how_to_make_one() {
    let d = Scratch::new("rotate-nosecret");
    let missing = d.join("none.key");
    let c = conf(
        &d,
        &format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nrotate = {{ secret = \"{}\", range = \"40000-40999\" }}\n",
            missing.display()
        ),
    );
    let o = pfknock(&["-c", &c, "render"]);
    assert_eq!(o.status.code(), Some(78));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "rotate.secret: no such file: write one with pfknock keygen {}",
            missing.display()
        )),
        "{err}"
    );
}

/// Without the secret, a sweep of the whole range finds nothing: every
/// port answers alike, and a knock on a port that is not this step's (or
/// the last's, or the next's) resets the host's progress and holds it
/// back for the rate's window. Six sweeps of the 1,000-port range (6,000
/// connects, twice what opened two-stage ports when a wrong port reset
/// nothing) open nothing; the kernel's sets, `show` and the log agree.
/// After the hold, the client with the secret opens.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_sweep_of_the_range_opens_nothing() {
    need_root_and_tools!();
    let (mut n, _) = rotating_net("3c");
    let c = n.conf().to_str().unwrap().to_owned();
    n.up();
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    into_step(0.2);
    common::sweep(&n, false, "40000-40999", 6);
    assert!(!n.open(false), "a sweep opened the port");
    assert!(n.elements("ssh_4").is_empty());
    assert!(n.elements("ssh_s1_4").is_empty());
    assert_eq!(n.elements("ssh_hold_4"), vec![n.cli_ip(false)]);
    let shown = n.server(&["show"]);
    assert!(String::from_utf8_lossy(&shown.stderr).contains("nobody is authorized"));
    let said = common::read_log(&log, 1, |_| false);
    assert!(!said.contains("authorized"), "{said}");
    wait_for("the hold to end", || n.elements("ssh_hold_4").is_empty());
    ok(&n.knock(&[&n.srv_ip(false), "-n", "3", "-s", "ssh", "-c", &c]));
    assert!(n.open(false), "the knock with the secret did not open");
    let said = common::read_log(&log, 3, |s| s.contains("authorized"));
    assert!(
        said.contains(&format!("authorized {} service=ssh", n.cli_ip(false))),
        "{said}"
    );
    common::sh(&["kill", &pid]);
    let _ = d.wait();
}

/// The ports of a step loaded ahead (nftables loads `rotate::ahead` steps
/// at once) are in the ruleset before their window opens: knocked in the
/// right order three steps early they open nothing, count nothing and
/// hold the knocker like any wrong port; this step's ports then open.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_later_steps_ports_open_nothing_before_their_window() {
    need_root_and_tools!();
    let (mut n, _) = rotating_net("3d");
    let c = n.conf().to_str().unwrap().to_owned();
    n.up();
    let (mut d, pid, log) = daemon_logging_to_a_socket(&n);
    into_step(0.2);
    let later = ports_at(&c, "ssh", now() + 3 * STEP);
    let rules = String::from_utf8_lossy(
        &common::ns(&n.srv, &["nft", "list", "table", "inet", "pfknock"]).stdout,
    )
    .into_owned();
    for p in later.split(' ') {
        assert!(
            rules.contains(&format!("dport {p} ")),
            "port {p} not loaded ahead"
        );
    }
    let mut args = vec![n.srv_ip(false), "-n".into(), "3".into()];
    args.extend(later.split(' ').map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = n.knock(&args);
    assert!(!n.open(false), "a later step's ports opened");
    assert!(n.elements("ssh_4").is_empty());
    assert!(n.elements("ssh_s1_4").is_empty());
    assert_eq!(n.elements("ssh_hold_4"), vec![n.cli_ip(false)]);
    let shown = n.server(&["show"]);
    assert!(String::from_utf8_lossy(&shown.stderr).contains("nobody is authorized"));
    let said = common::read_log(&log, 1, |_| false);
    assert!(!said.contains("authorized"), "{said}");
    wait_for("the hold to end", || n.elements("ssh_hold_4").is_empty());
    ok(&n.knock(&[&n.srv_ip(false), "-n", "3", "-s", "ssh", "-c", &c]));
    assert!(n.open(false), "this step's ports did not open");
    let said = common::read_log(&log, 3, |s| s.contains("authorized"));
    assert!(
        said.contains(&format!("authorized {} service=ssh", n.cli_ip(false))),
        "{said}"
    );
    common::sh(&["kill", &pid]);
    let _ = d.wait();
}
