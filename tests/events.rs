//! The Linux daemon learns from the kernel (nfnetlink_log for knocks,
//! nf_tables notifications for changes, one lookup per due element), in
//! network namespaces: every event logged once and rightly, nothing run on
//! a timer, and nothing lost across reloads or a deleted table.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Net, daemon_env, ns, ok, wait_for};

const CONF: &str = r#"
[[service]]
name    = "ssh"
protect = [PROTECTED]
knock   = [1234]
rate    = "2/5"
ttl     = "TTL"
"#;

/// Every line the daemon logged within `secs`, or until `until` holds.
fn read_log(log: &UnixDatagram, secs: u64, until: impl Fn(&str) -> bool) -> String {
    log.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut said = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !until(&said) {
        if let Ok(k) = log.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..k]));
            said.push('\n');
        }
    }
    said
}

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
    let said = read_log(&log, 5, |s| s.contains("started"));
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
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    let said = read_log(&log, 3, |s| s.contains("renewed"));
    assert!(
        said.contains(&format!("renewed {ip} service=ssh")),
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
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_deleted_table_comes_back_with_its_authorizations() {
    need_root_and_tools!();
    let mut n = Net::new(&CONF.replace("TTL", "10m"));
    n.up();
    let (mut d, _pid, log, _) = counted_daemon(&n);
    read_log(&log, 5, |s| s.contains("started"));
    ok(&n.knock(&[&n.srv_ip(false), "1234", "-n", "3"]));
    read_log(&log, 3, |s| s.contains("authorized"));
    assert!(n.open(false));
    ok(&ns(&n.srv, &["nft", "delete", "table", "inet", "pfknock"]));
    let said = read_log(&log, 5, |s| s.contains("restored"));
    assert!(said.contains("restored 1 authorizations"), "{said}");
    assert!(said.contains("by nft["), "{said}");
    wait_for("the port open again", || n.open(false));
    let set = String::from_utf8_lossy(
        &ns(&n.srv, &["nft", "list", "set", "inet", "pfknock", "ssh_4"]).stdout,
    )
    .into_owned();
    assert!(
        set.contains(&n.cli_ip(false)) && set.contains("expires 9m"),
        "{set}"
    );
    // Closed still for everybody else.
    assert!(!n.open(true));
    let _ = d.kill();
    let _ = d.wait();
}
