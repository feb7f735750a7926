//! Every tests/golden/NN-name/pfknock.toml renders byte for byte to the
//! pfknock.pf and pfknock.nft beside it, and its warnings match `warnings`
//! (none if absent). Where nft runs (root, nftables installed), every
//! pfknock.nft must also pass `nft -c` inside a scratch network namespace.
//! Every tests/bad/NN-name.toml fails with exactly the message in NN-name.err.
//!
//! After an intended change: `PFKNOCK_BLESS=1 cargo test --test golden`, then
//! review the diff of the expected files in the same commit.

use std::fs;
use std::path::{Path, PathBuf};

use pfknock::config::Config;

fn bless() -> bool {
    std::env::var_os("PFKNOCK_BLESS").is_some()
}

fn dirs(sub: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub);
    let mut v: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no cases in {}", root.display());
    v
}

/// Compare, or write when blessing; returns a description of a mismatch.
fn expect(path: &Path, got: &str) -> Option<String> {
    if bless() {
        if got.is_empty() {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, got).unwrap();
        }
        return None;
    }
    let want = fs::read_to_string(path).unwrap_or_default();
    (want != got).then(|| format!("{}:\n--- want\n{want}--- got\n{got}", path.display()))
}

/// A case with rotating services holds the secret (`secret`, read as the
/// text it is: git keeps no file modes) and the time to render (`at`).
fn rotate_at_fixed_time(dir: &Path, cfg: &mut Config) {
    if cfg.services.iter().all(|s| s.rotate.is_none()) {
        return;
    }
    let at: i64 = fs::read_to_string(dir.join("at"))
        .expect("a rotating case has a file `at`")
        .trim()
        .parse()
        .unwrap();
    let secret =
        pfknock::rotate::parse_secret(&fs::read_to_string(dir.join("secret")).unwrap()).unwrap();
    for s in &mut cfg.services {
        pfknock::rotate::fill(s, &secret, at);
    }
}

#[test]
fn golden_pf() {
    let mut failures = Vec::new();
    for dir in dirs("golden") {
        let src = fs::read_to_string(dir.join("pfknock.toml")).unwrap();
        let (mut cfg, warnings) = Config::parse(&src, Path::new("pfknock.toml"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        rotate_at_fixed_time(&dir, &mut cfg);
        let text = pfknock::render::pf::render(&cfg, "pfknock.toml");
        failures.extend(expect(&dir.join("pfknock.pf"), &text));
        let nft = if cfg.services.is_empty() {
            String::new()
        } else {
            pfknock::render::nft::render(&cfg, "pfknock.toml")
        };
        failures.extend(expect(&dir.join("pfknock.nft"), &nft));
        let w: String = warnings.iter().map(|w| format!("{w}\n")).collect();
        failures.extend(expect(&dir.join("warnings"), &w));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_configs() {
    let mut failures = Vec::new();
    let mut n = 0;
    for path in dirs("bad") {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let src = fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap();
        let got = match Config::parse(&src, Path::new(name)) {
            Ok(_) => format!("{} parsed without error\n", name.to_string_lossy()),
            Err(e) => format!("{e}\n"),
        };
        failures.extend(expect(&path.with_extension("err"), &got));
    }
    assert!(n > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// nft itself accepts every rendered table (`nft -c`: parse and check, load
/// nothing), run in a network namespace of its own.
#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn golden_nft_passes_nft_check() {
    let ok = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    assert!(ok && root, "this test needs root and nft (nftables)");
    let ns = format!("pfknock-check-{}", std::process::id());
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    assert!(run(&["netns", "add", &ns]));
    let mut failures = Vec::new();
    for dir in dirs("golden") {
        let f = dir.join("pfknock.nft");
        if !f.exists() {
            continue;
        }
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-c", "-f"])
            .arg(&f)
            .output()
            .unwrap();
        if !o.status.success() {
            failures.push(format!(
                "{}: {}",
                f.display(),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    run(&["netns", "del", &ns]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
