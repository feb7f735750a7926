//! The manuals are the contract: every subcommand is in pfknock(8)'s
//! SYNOPSIS and DESCRIPTION, every config key in pfknock.toml(5); and
//! every benchmark in benches/README.md.

use std::fs;
use std::path::Path;

use clap::CommandFactory;
use pfknock::config::Config;

fn man(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)).unwrap()
}

fn section<'a>(page: &'a str, sh: &str) -> &'a str {
    let start = page
        .find(&format!(".Sh {sh}\n"))
        .unwrap_or_else(|| panic!("no .Sh {sh}"));
    let rest = &page[start + 4..];
    &rest[..rest.find("\n.Sh ").map_or(rest.len(), |i| i + 1)]
}

#[test]
fn every_subcommand_is_in_pfknock_8() {
    let page = man("pfknock.8");
    let synopsis = section(&page, "SYNOPSIS");
    let description = section(&page, "DESCRIPTION");
    let cmd = pfknock::cli::Cli::command();
    let mut n = 0;
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        // A hidden one (`spa-listen`) is the daemon's own, named in
        // SIGNED KNOCKS.
        if name == "help" || sub.is_hide_set() {
            assert!(
                name == "help" || page.contains(&format!("Cm {name}")),
                "{name}"
            );
            continue;
        }
        n += 1;
        let line = format!(".Cm {name}\n");
        assert!(synopsis.contains(&line), "pfknock.8 SYNOPSIS lacks {name}");
        assert!(
            description.contains(&format!(".It Cm {name}")),
            "pfknock.8 DESCRIPTION lacks .It Cm {name}"
        );
        for arg in sub.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long == "config" || long == "help" || long == "version" {
                    continue;
                }
                assert!(
                    page.contains(&format!("Fl -{long}"))
                        || arg
                            .get_short()
                            .is_some_and(|s| page.contains(&format!("Fl {s}"))),
                    "pfknock.8 lacks option --{long} of {name}"
                );
            }
        }
    }
    assert!(n >= 4);
}

/// The keys a table accepts, read from the parser's own refusal of an
/// unknown key, so the list can never drift from the code.
fn keys(prefix: &str, table: &str) -> Vec<String> {
    let src = format!("{prefix}{table}zzz_unknown = 1\n");
    let err = Config::parse(&src, Path::new("k.toml"))
        .unwrap_err()
        .to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    list.split(", ")
        .map(|k| k.trim().trim_matches('`').to_owned())
        .collect()
}

#[test]
fn every_config_key_is_in_pfknock_toml_5() {
    let page = man("pfknock.toml.5");
    let svc = "[[service]]\nname=\"s\"\nprotect=[22]\nknock=[1]\n";
    let sets = [
        ("top level", keys("", "")),
        ("[[service]]", keys("", svc)),
        ("[[expire]]", keys("[[expire]]\ntable=\"t\"\n", "")),
        (
            "rotate",
            keys(
                "[[service]]\nname=\"s\"\nprotect=[22]\n[service.rotate]\n",
                "secret=\"k\"\nrange=\"40000-49999\"\n",
            ),
        ),
        (
            "spa",
            keys(
                "[[service]]\nname=\"s\"\nprotect=[22]\n[service.spa]\n",
                "port=62201\nkeys=\"k\"\n",
            ),
        ),
    ];
    for (what, ks) in sets {
        assert!(ks.len() >= 2, "{what}: {ks:?}");
        for k in ks {
            assert!(
                page.contains(&format!(".It Ic {k} Ns")) || page.contains(&format!(".Ic [[{k}]]")),
                "pfknock.toml.5 lacks {what} key {k}"
            );
        }
    }
}

/// benches/README.md is the index of the benchmarks: every script in
/// benches/ and every `cargo bench` target is in it, and it names none
/// that is not there.
#[test]
fn every_bench_is_in_benches_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let index = fs::read_to_string(root.join("benches/README.md")).unwrap();
    let cargo = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut n = 0;
    for e in fs::read_dir(root.join("benches")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".rs") {
            let named = format!("--bench {stem}`");
            if cargo.contains(&format!("name = \"{stem}\"")) {
                assert!(
                    index.contains(&named),
                    "benches/README.md: no `cargo bench {named}"
                );
                n += 1;
            }
        } else if name.ends_with(".sh") {
            assert!(
                index.contains(&format!("`{name}")),
                "benches/README.md: no {name}"
            );
            n += 1;
        }
    }
    assert!(n >= 15, "only {n} benches found");
    // Each script it names is there.
    for word in index.split(|c: char| c == '`' || c.is_whitespace()) {
        if let Some(script) = word.strip_suffix(".sh")
            && !script.contains('/')
        {
            assert!(
                root.join("benches").join(word).exists(),
                "benches/README.md names {word}, which is not in benches/"
            );
        }
    }
}
