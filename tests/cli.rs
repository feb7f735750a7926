//! Runs the built binary: exit codes, check, render, load, usage.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> common::Scratch {
    common::Scratch::new(&format!("cli-{name}"))
}

/// The binary with its tools from tests/bin (the fake pfctl) when `fake` is
/// set, else from a directory that has none; `PFKNOCK_TOOL_DIR` replaces the
/// system directories.
fn pfknock(args: &[&str], fake: bool, env: &[(&str, &Path)]) -> Output {
    // The stand-in pfctl, or a directory with no tools at all.
    let tools = if fake {
        root().join("tests/bin")
    } else {
        root().join("tests/bad")
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_pfknock"));
    c.args(args)
        .env("PFKNOCK_TOOL_DIR", tools)
        .env_remove("PFCTL_FAIL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

#[test]
fn render_prints_the_anchor() {
    let o = pfknock(
        &["render", "--pf", "-c", &example("pfknock.toml")],
        false,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(
        "pass in log quick on ! lo0 proto tcp from any to (self) port 1234 synproxy state \
         (max-src-conn-rate 5/15, overload <ssh_renew>)\n"
    ));
    assert!(
        out.contains("pass in log quick proto tcp from { <ssh>, <ssh_renew> } to (self) port 22\n")
    );
}

/// Each system's own firewall by default: nftables on Linux, pf elsewhere.
#[test]
fn render_speaks_this_systems_firewall_by_default() {
    let o = pfknock(&["render", "-c", &example("pfknock.toml")], false, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let native = stdout(&o);
    let nft = stdout(&pfknock(
        &["render", "--nft", "-c", &example("pfknock.toml")],
        false,
        &[],
    ));
    let pf = stdout(&pfknock(
        &["render", "--pf", "-c", &example("pfknock.toml")],
        false,
        &[],
    ));
    assert_ne!(nft, pf);
    if cfg!(target_os = "linux") {
        assert_eq!(native, nft);
    } else {
        assert_eq!(native, pf);
    }
    let both = pfknock(
        &["render", "--pf", "--nft", "-c", &example("pfknock.toml")],
        false,
        &[],
    );
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn global_option_before_or_after_the_verb() {
    let a = pfknock(&["-c", &example("pfknock.toml"), "render"], false, &[]);
    let b = pfknock(
        &["render", "--config", &example("pfknock.toml")],
        false,
        &[],
    );
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(stdout(&a), stdout(&b));
}

/// No firewall at all: nothing here could load the config, and check says
/// so instead of "ok" (a unit's ExecStartPre would pass otherwise).
#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
#[test]
fn check_without_a_firewall_fails_and_says_why() {
    let o = pfknock(&["check", "-c", &example("sequence.toml")], false, &[]);
    // sysexits' EX_UNAVAILABLE, apart from a refused config (78) and a
    // failed tool (1).
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(
        err.starts_with("pfknock: pf is not available on this system, and nft(8) is not in ")
            && err.contains("nothing on this system could load the config"),
        "{err}"
    );
}

/// A pf ruleset that calls the anchor, and pf enabled, for the fake pfctl.
fn pf_state(d: &Path, enabled: bool, referenced: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let rules = d.join("rules");
    let info = d.join("info");
    fs::write(
        &rules,
        if referenced {
            "block drop all\nanchor \"pfknock\" all\n"
        } else {
            "block drop all\n"
        },
    )
    .unwrap();
    fs::write(
        &info,
        if enabled {
            "Status: Enabled for 0 days 00:01:02\n"
        } else {
            "Status: Disabled\n"
        },
    )
    .unwrap();
    (rules, info)
}

#[test]
fn check_warns_when_pf_is_disabled_or_the_anchor_is_not_called() {
    let d = scratch("check-pf");
    let (rules, info) = pf_state(&d, true, true);
    let env = [
        ("PFCTL_RULES", rules.as_path()),
        ("PFCTL_INFO", info.as_path()),
    ];
    let o = pfknock(&["check", "-c", &example("pfknock.toml")], true, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let (rules, info) = pf_state(&d, false, false);
    let env = [
        ("PFCTL_RULES", rules.as_path()),
        ("PFCTL_INFO", info.as_path()),
    ];
    let o = pfknock(&["check", "-c", &example("pfknock.toml")], true, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("pfknock: warning: pf is disabled"), "{err}");
    assert!(
        err.contains("pfknock: warning: the main ruleset has no anchor \"pfknock\" rule"),
        "{err}"
    );
    // A quick pass of the protected port before the anchor line: named,
    // with its text.
    let rules = d.join("rules-pass");
    fs::write(
        &rules,
        "block drop all\npass in quick proto tcp from any to any port = 22 flags S/SA keep state\n\
         anchor \"pfknock\" all\n",
    )
    .unwrap();
    let env = [
        ("PFCTL_RULES", rules.as_path()),
        ("PFCTL_INFO", info.as_path()),
    ];
    let o = pfknock(&["check", "-c", &example("pfknock.toml")], true, &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "passes a protected port before the anchor \"pfknock\" line, so that knocking is \
             not needed: pass in quick proto tcp from any to any port = 22"
        ),
        "{}",
        stderr(&o)
    );
    // What pfctl would not tell (not root): said, not skipped.
    let o = pfknock(&["check", "-c", &example("pfknock.toml")], true, &[]);
    assert!(
        stderr(&o).contains("pfknock: not checked: whether pf is enabled"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_hands_the_anchor_to_pfctl_n() {
    let d = scratch("check");
    let log = d.join("log");
    let o = pfknock(
        &["check", "-c", &example("pfknock.toml")],
        true,
        &[("PFCTL_LOG", &log)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rec = fs::read_to_string(&log).unwrap();
    assert!(
        rec.starts_with("argv: -n -a pfknock -f -\nstdin:\n# pfknock "),
        "{rec}"
    );
    assert!(rec.contains("overload <ssh_renew>)"));
    // It loads nothing: every other pfctl run only reads (-s).
    for argv in rec.lines().filter(|l| l.starts_with("argv:")).skip(1) {
        assert!(argv.starts_with("argv: -s "), "{rec}");
    }
}

#[test]
fn check_fails_when_pfctl_rejects() {
    let d = scratch("reject");
    let o = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args(["check", "-c", &example("pfknock.toml")])
        .env("PFKNOCK_TOOL_DIR", root().join("tests/bin"))
        .env("PFCTL_FAIL", "1")
        .env("PFCTL_STDERR", "stdin:3: syntax error")
        .env("PFCTL_LOG", d.join("log"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "pfknock: pfctl -n -a pfknock -f -: stdin:3: syntax error\n"
    );
}

#[test]
fn bad_config_exits_78_with_file_line_key() {
    let d = scratch("bad");
    let f = d.join("bad.toml");
    fs::write(
        &f,
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nrate = \"5\"\n",
    )
    .unwrap();
    for verb in ["check", "render", "load"] {
        let o = pfknock(&[verb, "-c", f.to_str().unwrap()], true, &[]);
        assert_eq!(o.status.code(), Some(78), "{verb}");
        assert_eq!(
            stderr(&o),
            format!(
                "pfknock: {}:5: service.rate: expected N/S, got \"5\"\n",
                f.display()
            )
        );
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn missing_config_exits_78() {
    let o = pfknock(&["check", "-c", "/nonexistent/pfknock.toml"], false, &[]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(
        stderr(&o),
        "pfknock: /nonexistent/pfknock.toml: No such file or directory\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(pfknock(&["frobnicate"], false, &[]).status.code(), Some(2));
    assert_eq!(pfknock(&[], false, &[]).status.code(), Some(2));
    assert_eq!(
        pfknock(&["render", "--bogus"], false, &[]).status.code(),
        Some(2)
    );
    assert_eq!(pfknock(&["--version"], false, &[]).status.code(), Some(0));
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let d = scratch("warn");
    let f = d.join("w.toml");
    fs::write(
        &f,
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nwindow = \"5s\"\n",
    )
    .unwrap();
    let (rules, info) = pf_state(&d, true, true);
    let env = [
        ("PFCTL_RULES", rules.as_path()),
        ("PFCTL_INFO", info.as_path()),
    ];
    let o = pfknock(&["check", "-c", f.to_str().unwrap()], true, &env);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o),
        format!(
            "pfknock: {}:5: service.window: warning: has no effect on a single knock port\n",
            f.display()
        )
    );
}

#[test]
fn load_replaces_only_the_anchor_and_warns_when_unreferenced() {
    let d = scratch("load");
    let log = d.join("log");
    let rules = d.join("rules");
    fs::write(
        &rules,
        "block drop all\npass out all flags S/SA keep state\n",
    )
    .unwrap();
    let o = pfknock(
        &["load", "-c", &example("pfknock.toml")],
        true,
        &[("PFCTL_LOG", &log), ("PFCTL_RULES", &rules)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rec = fs::read_to_string(&log).unwrap();
    let argvs: Vec<&str> = rec.lines().filter(|l| l.starts_with("argv:")).collect();
    // The load, then reads of the main ruleset (is the anchor called; does
    // a pass before it open a protected port?).
    assert_eq!(
        argvs,
        ["argv: -a pfknock -f -", "argv: -s rules", "argv: -s rules"]
    );
    assert!(
        stderr(&o).contains("no anchor \"pfknock\" rule"),
        "{}",
        stderr(&o)
    );

    fs::write(&rules, "block drop all\nanchor \"pfknock\" all\n").unwrap();
    let o = pfknock(
        &["load", "-c", &example("pfknock.toml")],
        true,
        &[("PFCTL_LOG", &log), ("PFCTL_RULES", &rules)],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stderr(&o), "");
}

#[test]
fn unload_flushes_the_anchor_only() {
    let d = scratch("unload");
    let log = d.join("log");
    let o = pfknock(
        &["unload", "-c", &example("pfknock.toml")],
        true,
        &[("PFCTL_LOG", &log)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rec = fs::read_to_string(&log).unwrap();
    assert_eq!(
        rec,
        "argv: -a pfknock -F rules\nargv: -a pfknock -F Tables\n"
    );
}

#[test]
fn load_without_pfctl_says_so() {
    let o = pfknock(&["load", "-c", &example("pfknock.toml")], false, &[]);
    assert_eq!(o.status.code(), Some(69), "EX_UNAVAILABLE");
    assert_eq!(
        stderr(&o),
        format!(
            "pfknock: pf is not available on this system, and nft(8) is not in {}\n",
            root().join("tests/bad").display()
        )
    );
}

#[test]
fn table_verbs_check_their_input_before_the_kernel() {
    let ex = example("pfknock.toml");
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["allow", "192.0.2.300"],
            2,
            "pfknock: \"192.0.2.300\" is not an IPv4 or IPv6 address\n",
        ),
        (
            &["revoke", "192.0.2.1/24"],
            2,
            "pfknock: \"192.0.2.1/24\" has host bits set past the /24 prefix\n",
        ),
        (
            &["show", "smtp"],
            2,
            "pfknock: no service \"smtp\" in the config (services: ssh)\n",
        ),
        (
            &["expire", "--table", "bruteforce"],
            2,
            "pfknock: <bruteforce>: not a table of the config\n",
        ),
        (
            &["expire", "--table", "ssh_renew"],
            2,
            "pfknock: <ssh_renew> in anchor pfknock is the renew table of service ssh: pfknock does not expire it\n",
        ),
        (&["expire", "--older-than", "5"], 2, ""),
    ];
    for (args, code, err) in cases {
        let mut a = args.to_vec();
        a.extend(["-c", &ex]);
        let o = pfknock(&a, false, &[]);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        if !err.is_empty() {
            assert_eq!(stderr(&o), err, "{args:?}");
        }
    }
}

#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
#[test]
fn table_verbs_without_pf_say_so() {
    let ex = example("pfknock.toml");
    for args in [
        &["show"][..],
        &["expire"],
        &["allow", "192.0.2.1"],
        &["revoke", "192.0.2.1"],
        &["flush"],
    ] {
        let mut a = args.to_vec();
        a.extend(["-c", &ex]);
        let o = pfknock(&a, false, &[]);
        assert_eq!(o.status.code(), Some(69), "EX_UNAVAILABLE: {args:?}");
        assert_eq!(
            stderr(&o),
            format!(
                "pfknock: pf is not available on this system, and nft(8) is not in {}\n",
                root().join("tests/bad").display()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn run_check_only_and_the_config_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = scratch("run");
    let f = d.join("pfknock.toml");
    fs::copy(example("pfknock.toml"), &f).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let o = pfknock(&["run", "-n", "-c", f.to_str().unwrap()], true, &[]);
    if fs::metadata(&f).unwrap().uid() == 0 {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{}: ok\n", f.display()));
    } else {
        assert_eq!(o.status.code(), Some(78));
    }
    fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
    let o = pfknock(&["run", "-n", "-c", f.to_str().unwrap()], false, &[]);
    assert_eq!(o.status.code(), Some(78));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "pfknock: {}: writable by someone other than root (owner uid ",
            f.display()
        )),
        "{e}"
    );
    assert!(e.ends_with(", mode 0666): refusing to use it\n"), "{e}");
}

#[test]
fn only_a_regular_file_of_bounded_size_is_read() {
    // /dev/zero would grow without end, a FIFO would block for ever.
    let t = std::time::Instant::now();
    let o = pfknock(&["check", "-c", "/dev/zero"], false, &[]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(stderr(&o), "pfknock: /dev/zero: not a regular file\n");
    let d = scratch("fifo");
    let fifo = d.join("pfknock.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let o = pfknock(&["check", "-c", fifo.to_str().unwrap()], false, &[]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).ends_with(": not a regular file\n"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Standard input: refused in words.
    let o = pfknock(&["check", "-c", "-"], false, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("-c -: a config from standard input cannot be checked"),
        "{}",
        stderr(&o)
    );
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn as_root_a_config_in_a_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("opendir");
    if pfknock_is_root(&d) {
        let open = d.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let f = open.join("pfknock.toml");
        fs::copy(example("pfknock.toml"), &f).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let o = pfknock(&["check", "-c", f.to_str().unwrap()], false, &[]);
        assert_eq!(o.status.code(), Some(78));
        assert!(
            stderr(&o).contains(&format!(
                "directory {} is writable by someone other than root",
                open.display()
            )),
            "{}",
            stderr(&o)
        );
        // Sticky, as /tmp is: nobody else can replace root's file there.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let (rules, info) = pf_state(&d, true, true);
        let env = [
            ("PFCTL_RULES", rules.as_path()),
            ("PFCTL_INFO", info.as_path()),
        ];
        let o = pfknock(&["check", "-c", f.to_str().unwrap()], true, &env);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    } else {
        panic!("this test needs root");
    }
}

/// Are the tests running as root (their scratch files are root's)?
fn pfknock_is_root(d: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(d).unwrap().uid() == 0
}

#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
#[test]
fn run_without_pf_says_so() {
    let d = scratch("run-nopf");
    let f = d.join("pfknock.toml");
    fs::copy(example("pfknock.toml"), &f).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    if fs::metadata(&f).unwrap().uid() != 0 {
        return; // refused earlier for its owner; covered above
    }
    let o = pfknock(&["run", "-f", "-c", f.to_str().unwrap()], false, &[]);
    assert_eq!(o.status.code(), Some(69), "EX_UNAVAILABLE");
    assert_eq!(
        stderr(&o),
        format!(
            "pfknock: pf is not available on this system, and nft(8) is not in {}\n",
            root().join("tests/bad").display()
        )
    );
}

#[test]
fn a_second_daemon_is_refused_by_the_pidfile() {
    let d = scratch("pid");
    let p = d.join("pfknock.pid");
    fs::write(&p, "99999\n").unwrap();
    let first = pfknock::daemon::Pidfile::create(&p).unwrap();
    // A dead daemon's pid is gone at once; this one's is written when it
    // serves.
    assert_eq!(fs::read_to_string(&p).unwrap(), "");
    let second = || {
        pfknock::daemon::Pidfile::create(&p)
            .err()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        second(),
        format!(
            "{}: locked: pfknock is already running (still starting)",
            p.display()
        )
    );
    first.write_pid().unwrap();
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        format!("{}\n", std::process::id())
    );
    assert_eq!(
        second(),
        format!(
            "{}: locked: pfknock is already running (pid {})",
            p.display(),
            std::process::id()
        )
    );
    drop(first);
    assert!(!p.exists(), "removed on exit");
    drop(pfknock::daemon::Pidfile::create(&p).unwrap());
}

#[test]
fn a_full_stdout_is_an_error_in_words_not_a_panic() {
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args(["render", "-c", &example("pfknock.toml")])
        .env("RUST_BACKTRACE", "1")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "pfknock: stdout: No space left on device\n");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // `pfknock render | head -1`: the pipe's reader exits after one line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // the reader is gone before anything is written
    let o = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args(["render", "-c", &example("pfknock.toml")])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "", "nothing said about a broken pipe");
    assert_eq!(o.status.code(), Some(141), "the status of a SIGPIPE death");
}

#[test]
fn errors_never_echo_control_characters_or_megabytes() {
    let d = scratch("echo");
    let cases = [
        "[[service]]\nname = \"a\\u001b[31mred\"\nprotect = [22]\nknock = [1]\n".to_owned(),
        format!(
            "[[service]]\nname = \"{}\"\nprotect = [22]\nknock = [1]\n",
            "y".repeat(1 << 20)
        ),
        format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1]\n{} = 1\n",
            "x".repeat(1 << 20)
        ),
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1]\nrate = \"5\\n/15\"\n".to_owned(),
    ];
    for (i, text) in cases.iter().enumerate() {
        let f = d.join(format!("{i}.toml"));
        fs::write(&f, text).unwrap();
        let o = pfknock(&["check", "-c", f.to_str().unwrap()], false, &[]);
        assert_eq!(o.status.code(), Some(78), "case {i}");
        let e = stderr(&o);
        assert!(e.len() < 1000, "case {i}: {} bytes", e.len());
        assert_eq!(e.matches('\n').count(), 1, "case {i}: one line: {e:?}");
        assert!(!e.bytes().any(|b| b == 0x1b), "case {i}: {e:?}");
    }
}
