//! No two objects of one rendered ruleset share a name, on pf and on
//! nftables: random services whose names are built from the very suffixes
//! pfknock derives (`_s1`, `_m1`, `_allow`, `_renew`, `_4`, `_6`), checked
//! on the rendered text itself, not on the allocator that made it.

use std::collections::BTreeSet;
use std::path::Path;

use pfknock::config::Config;
use pfknock::render;
use proptest::prelude::*;

fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "a_s1", "a_s2", "a_m1", "a_m2", "a_m1_4", "a_allow", "a_renew", "a_4", "a_6",
        "a_s1_m1",
    ])
    .prop_map(str::to_owned)
}

fn service() -> impl Strategy<Value = (String, Option<String>, usize, bool)> {
    (
        piece(),
        prop::option::of(piece()),
        1usize..=3,
        any::<bool>(),
    )
}

/// Declared names: `table <X>` in pf text, `set X {` in nft text.
fn declared(text: &str, pf: bool) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if pf {
                l.strip_prefix("table <").and_then(|r| r.split('>').next())
            } else {
                l.strip_prefix("set ").and_then(|r| r.split(' ').next())
            }
        })
        .map(str::to_owned)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn rendered_names_are_unique(svcs in prop::collection::vec(service(), 1..=3)) {
        let mut text = String::new();
        for (i, (name, table, knocks, allow)) in svcs.iter().enumerate() {
            let knock: Vec<String> = (0..*knocks).map(|k| (1000 + 10 * i + k).to_string()).collect();
            text.push_str(&format!(
                "[[service]]\nname = \"{name}\"\nprotect = [{}]\nknock = [{}]\n",
                2000 + i,
                knock.join(", ")
            ));
            if let Some(t) = table {
                text.push_str(&format!("table = \"{t}\"\n"));
            }
            if *allow {
                text.push_str("allow = [\"198.18.0.7\", \"fd00::7\"]\n");
            }
        }
        match Config::parse(&text, Path::new("p.toml")) {
            Ok((cfg, _)) => {
                for (pf, out) in [
                    (true, render::pf::render(&cfg, "p.toml")),
                    (false, render::nft::render(&cfg, "p.toml")),
                ] {
                    let names = declared(&out, pf);
                    let set: BTreeSet<&String> = names.iter().collect();
                    prop_assert_eq!(set.len(), names.len(), "a name twice in\n{}", out);
                }
            }
            Err(e) => {
                let m = e.to_string();
                // The only refusals these configs can earn.
                prop_assert!(
                    m.contains("is also") || m.contains("duplicate service"),
                    "unexpected refusal: {}", m
                );
            }
        }
    }
}

/// The generator reaches both branches: clashing configs exist among
/// them, and the allocator refuses one named in the issue.
#[test]
fn the_known_clash_is_refused() {
    let text = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1, 2]\n\
                [[service]]\nname = \"x\"\ntable = \"ssh_s1\"\nprotect = [23]\nknock = [3]\n";
    let e = Config::parse(text, Path::new("p.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "p.toml:7: service.table: pf table ssh_s1 (authorized hosts) is also service \"ssh\"'s stage 1: choose another table name"
    );
}
