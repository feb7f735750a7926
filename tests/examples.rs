//! Every shipped example config parses, checks clean and renders.

use std::fs;
use std::path::Path;

use pfknock::config::Config;

#[test]
fn examples_load_and_render() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        // A rotating example names a secret that `pfknock keygen` writes
        // on the server; here a test secret stands in for it.
        let (mut cfg, warnings) = Config::read(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty(), "{}: {warnings:?}", p.display());
        for s in &mut cfg.services {
            if let Some(r) = &s.rotate {
                (s.knock, s.knock_prev) = pfknock::rotate::ports_now(&[9; 32], &s.name, r, 1 << 31);
            }
        }
        let text = pfknock::render::pf::render(&cfg, &p.display().to_string());
        let knocks = text
            .lines()
            .filter(|l| l.contains("synproxy state (max-src-conn-rate"))
            .count();
        // A service of signed knocks alone has no knock rule: its port
        // passes to the listener instead.
        let signed = text
            .lines()
            .filter(|l| l.contains("proto udp") && l.contains("max-src-states"))
            .count();
        let want = cfg.services.iter().filter(|s| s.spa.is_some()).count();
        assert_eq!(signed, want, "{}", p.display());
        assert!(knocks > 0 || signed > 0, "{}", p.display());
    }
    assert!(n >= 3, "examples/ holds {n} configs");
}

/// The main rulesets shipped beside the configs call the anchor they name.
#[test]
fn example_pf_conf_calls_the_anchor() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["pf.conf", "aws-nat.pf.conf"] {
        let t = fs::read_to_string(dir.join(f)).unwrap();
        assert!(t.lines().any(|l| l.trim() == "anchor \"pfknock\""), "{f}");
    }
}

/// The rotating example, installed as a config: `render` fails with the
/// hint to run `keygen` on the path beside it, and after that one step it
/// checks and renders, on this system's backend.
#[test]
fn the_rotating_example_works_after_keygen() {
    let bin = env!("CARGO_BIN_EXE_pfknock");
    let dir = std::env::temp_dir().join(format!("pfknock-example-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("pfknock.toml");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rotate.toml");
    fs::copy(src, &conf).unwrap();
    fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let c = conf.to_str().unwrap();
    let key = dir.join("pfknock-ssh.key");
    let o = run(&["render", "-c", c]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("write one with pfknock keygen {}", key.display())),
        "{err}"
    );
    let o = run(&["keygen", key.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let o = run(&["render", "-c", c]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    if cfg!(target_os = "linux") {
        assert!(text.contains("table inet pfknock"), "{text}");
    } else {
        assert!(text.contains("synproxy state"), "{text}");
    }
    let _ = fs::remove_dir_all(&dir);
}
