//! The manuals are the contract: every subcommand is in pfknock(8)'s
//! SYNOPSIS and DESCRIPTION, every config key in pfknock.toml(5).

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
