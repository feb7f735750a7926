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
        assert!(knocks > 0, "{}", p.display());
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
