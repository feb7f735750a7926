//! Fuzzing from config text to rendered rules: random configs, half of them
//! then mutated byte by byte, with hostile strings (newlines, quotes,
//! braces, `flush ruleset`, escape sequences, long values) in every value
//! and in the config's path. No input may panic, and every line that
//! either renderer prints must match the grammar of the rules pfknock
//! renders (below), so nothing from a config can add a rule, a statement
//! or a line of its own.
//!
//! `cargo test --test fuzz_render` runs 3000 cases. The long runs are
//! `PFKNOCK_FUZZ_CASES=5000000 PFKNOCK_FUZZ_SEED=N cargo test --release
//! --test fuzz_render -- --nocapture`, one per core with its own seed.

use std::path::Path;

use pfknock::config::Config;
use pfknock::render;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
use regex::Regex;

/// Hostile and ordinary values for any field.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "ssh", "a_m1", "_x", "x-y", "gate/knock", "1234", "22", "5/15", "60s", "1h30m",
            "520w", "idle", "age", "any", "inet", "inet6", "tcp", "udp", "vtnet0", "ena0.5",
            "198.51.100.7", "10.0.0.0/8", "2001:db8::/32", "::/0", "0.0.0.0/0", "local7",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "a\nflush ruleset", "}\ntable inet x {", "\"; drop", "\u{1b}[2J", "x\\", "a b",
            "<ssh>", "{ any }", "ssh # c", "\u{0}", "é", "-lead", "1e9", "999999999999",
            "4000001/1", "0/0", "1/604801", "65536", "0", "-1", "ff::/129",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,40}",
        1 => "\\PC{0,12}",
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn toml_str(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// A value as TOML: mostly a string, sometimes a number, list or bool.
fn tvalue() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => value().prop_map(|v| toml_str(&v)),
        2 => (0i64..70000).prop_map(|n| n.to_string()),
        2 => prop::collection::vec(prop_oneof![
            value().prop_map(|v| toml_str(&v)),
            (0i64..70000).prop_map(|n| n.to_string())
        ], 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => any::<bool>().prop_map(|b| b.to_string()),
    ]
}

/// A plausible value for a service key (the generator's good side).
fn good(key: &'static str) -> BoxedStrategy<String> {
    let q = |v: Vec<&'static str>| {
        prop::sample::select(v)
            .prop_map(|x| format!("\"{x}\""))
            .boxed()
    };
    match key {
        "table" => q(vec!["t", "ssh_m1", "x-y", "_a", "portknock_ssh", "a_s1"]),
        "proto" => prop::sample::select(vec!["\"tcp\"", "\"udp\"", "[\"tcp\", \"udp\"]"])
            .prop_map(str::to_owned)
            .boxed(),
        "rate" => (1u32..300, 1u32..700_000)
            .prop_map(|(n, s)| format!("\"{n}/{s}\""))
            .boxed(),
        "ttl" | "window" => q(vec!["1s", "90s", "10m", "1h30m", "2d", "520w", "5200w"]),
        "expire" => q(vec!["age", "idle"]),
        "from" | "allow" => prop::collection::vec(
            prop::sample::select(vec![
                "198.51.100.7",
                "10.0.0.0/8",
                "192.0.2.0/24",
                "2001:db8::/32",
                "fd00::1",
                "::/0",
                "0.0.0.0/1",
                "128.0.0.0/1",
            ]),
            1..4,
        )
        .prop_map(|v| {
            format!(
                "[{}]",
                v.iter()
                    .map(|x| format!("\"{x}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .boxed(),
        "on" => q(vec!["vtnet0", "ena0", "egress", "em0.5"]),
        "to" => prop_oneof![
            q(vec!["self", "any"]),
            prop::collection::vec(
                prop::sample::select(vec!["10.0.1.10", "10.0.2.0/24", "fd00::5", "192.0.2.0/28"]),
                1..3
            )
            .prop_map(|v| format!(
                "[{}]",
                v.iter()
                    .map(|x| format!("\"{x}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ]
        .boxed(),
        "family" => q(vec!["any", "inet", "inet6"]),
        "log" | "block" | "renew" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        "size" => (1u64..20_000_000).prop_map(|n| n.to_string()).boxed(),
        "prefix6" => (0u32..140).prop_map(|n| n.to_string()).boxed(),
        "close" => (0u32..70_000).prop_map(|n| n.to_string()).boxed(),
        "spa" => (0u32..70_000)
            .prop_map(|n| format!("{{ port = {n}, keys = \"/etc/k\" }}"))
            .boxed(),
        _ => tvalue().boxed(),
    }
}

const SERVICE_KEYS: &[&str] = &[
    "table", "proto", "rate", "ttl", "expire", "window", "from", "allow", "on", "to", "family",
    "log", "block", "renew", "size", "prefix6", "close", "spa",
];

fn service() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => prop::sample::select(vec!["ssh", "web", "a_m1", "_x", "x-y"]).prop_map(str::to_owned), 1 => value()],
        prop::collection::vec(1u16..=65535, 1..4),
        // No knock key: a service of signed knocks only, if it has `spa`.
        prop::collection::vec(1u16..=65535, 0..4),
        prop::collection::vec(
            prop::sample::select(SERVICE_KEYS.to_vec()).prop_flat_map(|k| {
                (Just(k), prop_oneof![5 => good(k), 1 => tvalue().boxed()])
            }),
            0..7,
        ),
    )
        .prop_map(|(name, protect, knock, extra)| {
            let mut t = format!(
                "[[service]]\nname = {}\nprotect = [{}]\n",
                toml_str(&name),
                protect.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            );
            if !knock.is_empty() {
                t.push_str(&format!(
                    "knock = [{}]\n",
                    knock.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            let mut seen = Vec::new();
            for (k, v) in extra {
                if !seen.contains(&k) {
                    seen.push(k);
                    t.push_str(&format!("{k} = {v}\n"));
                }
            }
            t
        })
}

fn config() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop_oneof![3 => prop::sample::select(vec!["knock", "gate/knock", "pfknock"]).prop_map(str::to_owned), 1 => value()]),
        prop::option::of(prop::sample::select(vec!["\"1s\"", "\"2m\"", "\"1h\"", "\"0s\""])),
        prop::collection::vec(service(), 1..3),
        prop::collection::vec((value(), prop::option::of(value()), value()), 0..2),
    )
        .prop_map(|(anchor, poll, services, expires)| {
            let mut t = String::new();
            if let Some(a) = anchor {
                t.push_str(&format!("anchor = {}\n", toml_str(&a)));
            }
            if let Some(p) = poll {
                t.push_str(&format!("poll = {p}\n"));
            }
            for s in services {
                t.push_str(&s);
            }
            for (table, anchor, ttl) in expires {
                t.push_str(&format!("[[expire]]\ntable = {}\n", toml_str(&table)));
                if let Some(a) = anchor {
                    t.push_str(&format!("anchor = {}\n", toml_str(&a)));
                }
                t.push_str(&format!("ttl = {}\n", toml_str(&ttl)));
            }
            t
        })
}

/// The config, maybe mutated: bytes replaced, inserted or removed.
fn input() -> impl Strategy<Value = (String, String)> {
    (
        config(),
        prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ],
        prop_oneof![
            3 => Just("pfknock.toml".to_owned()),
            1 => value().prop_map(|v| format!("/etc/{v}.toml")),
        ],
    )
        .prop_map(|(text, muts, path)| {
            let mut b = text.into_bytes();
            for (i, byte, op) in muts {
                if b.is_empty() {
                    break;
                }
                let at = i.index(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            (String::from_utf8_lossy(&b).into_owned(), path)
        })
}

/// The grammar: one regex for each kind of line each renderer prints.
struct Grammar {
    pf: Vec<Regex>,
    nft: Vec<Regex>,
}

fn grammar() -> Grammar {
    // Named pieces, written {NAME} in the patterns below, expanded until
    // none is left.
    let pieces: &[(&str, &str)] = &[
        ("{ID}", r"[A-Za-z_][A-Za-z0-9_-]{0,30}"),
        ("{TBL}", r"[A-Za-z0-9_-]{1,31}"),
        (
            "{ANCH}",
            r"[A-Za-z0-9-][A-Za-z0-9_-]*(?:/[A-Za-z0-9-][A-Za-z0-9_-]*)*",
        ),
        ("{NETS}", r"{NET}(?:, {NET})*"),
        ("{NET}", r"[0-9a-fA-F:.]+(?:/[0-9]{1,3})?"),
        ("{PORTS}", r"(?:{PR}|\{ {PR}(?:, {PR})* \})"),
        ("{NPORTS}", r"(?:{NPR}|\{ {NPR}(?:, {NPR})* \})"),
        ("{NPR}", r"{PORT}(?:-{PORT})?"),
        ("{PR}", r"{PORT}(?::{PORT})?"),
        ("{PORT}", r"[0-9]{1,5}"),
        ("{NDUR}", r"(?:[0-9]+(?:d|h|ms|m|s))+"),
        ("{DUR}", r"(?:[0-9]+[dhms])+"),
        ("{RATE}", r"[0-9]+/[0-9]+"),
        ("{IF}", r"[A-Za-z][A-Za-z0-9_.]{0,14}"),
        // Printable, every backslash escaping something: no control
        // character, and no backslash at the end of a comment line.
        ("{SAFE}", r"(?:[^\x00-\x1f\x7f\\]|\\[^\x00-\x1f\x7f])*"),
        ("{SET}", r"[A-Za-z_][A-Za-z0-9_-]*_[46]"),
        ("{PROTO}", r"(?:tcp|udp|\{ tcp, udp \})"),
        ("{FAM}", r"(?: inet6?)?"),
        (
            "{SYNPROXY}",
            r"synproxy mss 1460 wscale 7 timestamp sack-perm",
        ),
        ("{SYN}", r"tcp flags & \(fin \| syn \| rst \| ack\) == syn"),
        ("{ACK}", r"tcp flags & \(fin \| syn \| rst \| ack\) == ack"),
        (
            "{DPORT}",
            r"(?:(?:tcp|udp) dport {NPORTS}|meta l4proto \{ tcp, udp \} th dport {NPORTS})",
        ),
        ("{IP}", r"ip6?"),
        // A knock's key: the address, or its IPv6 network (`prefix6`).
        ("{KEY}", r"(?:ip saddr|ip6 saddr(?: & [0-9a-f:]+)?)"),
        ("{TO}", r"(?:any|\(self\)|{NET}|\{ {NETS} \})"),
        ("{DADDR}", r"(?:{IP} daddr (?:{NET}|\{ {NETS} \}) )?"),
    ];
    let re = |s: &str| {
        let mut t = s.to_owned();
        for _ in 0..4 {
            for (k, v) in pieces {
                t = t.replace(k, v);
            }
        }
        assert!(
            !t.contains("{ID}") && !t.contains("{PORT}"),
            "unexpanded: {t}"
        );
        Regex::new(&format!("^{t}$")).unwrap()
    };
    let service = r"# service {ID}: (?:knock {PORT}(?: then {PORT})*(?:, close {PORT})?, rate {RATE}|signed knocks on udp {PORT}(?:, close {PORT})?), ttl {DUR} \((?:age|idle)\)";
    Grammar {
        pf: vec![
            re(r#"# pfknock [0-9.]+: anchor "{ANCH}" from {SAFE}"#),
            re(r#"# load with: pfctl -a {ANCH} -f -   \(pf.conf needs: anchor "{ANCH}"\)"#),
            re(""),
            re(service),
            re(r"# expire only: <{TBL}> in (?:main ruleset|{ANCH}), (?:age|idle) {DUR}"),
            re(r"# closed to every other host, whatever pf.conf passes after the anchor"),
            re(r"table <{ID}> persist(?: counters)?"),
            re(r"table <{ID}> const \{ {NETS} \}"),
            re(
                r"pass in(?: log)? quick(?: on {IF}| on ! lo0){FAM} proto tcp from (?:any|<{ID}>|{NET}|\{ {NETS} \}) to (?:any|\(self\)) port {PORTS} synproxy state(?: \(max-src-conn-rate {RATE}, overload <{ID}>\))?",
            ),
            re(
                r"pass in(?: log)? quick(?: on {IF})?{FAM} proto {PROTO} from \{ <{ID}>, <{ID}>(?:, <{ID}>)? \} to {TO} port {PORTS}(?: synproxy state)?",
            ),
            re(r"block in quick(?: on {IF})?{FAM} proto {PROTO} from any to {TO} port {PORTS}"),
            // Signed knocks: the listener's port.
            re(
                r"pass in quick(?: on {IF})?{FAM} proto udp from (?:any|{NET}|\{ {NETS} \}) to (?:any|\(self\)) port {PORT} keep state \(max-src-states [0-9]+\)",
            ),
            // Held hosts' knocks (a wrong knock's hold).
            re(
                r"block in quick(?: on {IF})?{FAM} proto tcp from <{ID}> to (?:any|\(self\)) port {PORTS}",
            ),
            re(
                r"block in quick(?: on {IF})? inet6 proto tcp from fe80::/10 to (?:any|\(self\)) port {PORTS}",
            ),
        ],
        nft: vec![
            re(r"# pfknock [0-9.]+: table inet pfknock from {SAFE}"),
            re(r"# load with: pfknock load \(nft -f, one transaction\)"),
            re(r"# \[\[expire\]\] tables are pf tables: nothing to render for nftables"),
            re(r"table inet pfknock \{"),
            re(&format!("\t{service}")),
            re(
                r#"\tset {SET} \{ type ipv[46]_addr; size [0-9]+; flags dynamic, timeout;(?: counter;)? timeout {NDUR}; comment "{ID}: (?:authorized|stage [0-9]+|meter [0-9]+, rate {RATE}|meter close, rate {RATE}|held back after a wrong knock|per network|signed knocks per source, 10/second burst 20 packets)"; \}"#,
            ),
            re(
                r#"\tset {SET} \{ type ipv[46]_addr; flags interval; elements = \{ {NETS} \}; comment "{ID}: allow"; \}"#,
            ),
            // The connections kept at load, of all services.
            re(r"\t# all services"),
            re(
                r#"\tset kept\.[46] \{ type ipv[46]_addr \. inet_service \. inet_service; comment "connections open at load"; \}"#,
            ),
            re(
                r#"\t\t(?:iifname "{IF}" )?tcp dport {NPORTS} {IP} saddr \. tcp sport \. tcp dport @kept\.[46] ct label set 127 accept"#,
            ),
            re(r"\tchain (?:prerouting|input|output|forward|knocks|signed|protect) \{"),
            // What jumps to the chains of knocks, signed knocks and
            // protected ports.
            re(r#"\t\tiifname "lo" tcp dport {NPORTS} jump knocks"#),
            re(r"\t\tudp dport {NPORTS} jump signed"),
            re(r"\t\tmeta l4proto \{ tcp, udp \} th dport {NPORTS} jump protect"),
            re(
                r"\t\ttype filter hook (?:prerouting priority raw|(?:input|output|forward) priority filter - 1); policy accept;",
            ),
            re(
                r"\t\tfib daddr type local tcp dport {NPORTS} fib saddr type != local meta skuid >= 0 drop",
            ),
            re(r"\t\}"),
            re(r"\}"),
            re(
                r#"\t\t(?:iifname != "lo"|iifname "{IF}") fib daddr type local tcp dport {NPORTS} {SYN} notrack"#,
            ),
            re(
                r#"\t\tiifname "lo" tcp dport {PORT} {SYN} (?:meta time >= [0-9]+ meta time < [0-9]+ )?ct state new fib saddr type != local (?:ip6 saddr != fe80::/10 )?(?:{KEY} (?:@{SET}|{NET}|\{ {NETS} \}) )?(?:{KEY} != @{SET} )?update @{SET} \{ {KEY} limit rate over [0-9]+/(?:second|minute|hour|day|week) burst [0-9]+ packets \} (?:update @{SET} \{ {KEY} limit rate 1/minute burst [0-9]+ packets \} )?(?:add|update) @{SET} \{ {KEY} \}(?: log group [0-9]+ prefix "pfknock {ID}: ")?"#,
            ),
            re(
                r#"\t\tiifname "lo" tcp dport {PORT} {SYN} (?:meta time >= [0-9]+ meta time < [0-9]+ )?ct state new fib saddr type != local (?:ip6 saddr != fe80::/10 )?(?:{KEY} (?:@{SET}|{NET}|\{ {NETS} \}) )?(?:{KEY} != @{SET} )?{KEY} != @{SET} limit rate 1/second log group [0-9]+ prefix "pfknock meter {SET} full: ""#,
            ),
            // A close knock: out of the authorized set, progress reset.
            re(
                r#"\t\tiifname "lo" tcp dport {PORT} {SYN} ct state new fib saddr type != local (?:{KEY} (?:{NET}|\{ {NETS} \}) )?update @{SET} \{ {KEY} limit rate over [0-9]+/(?:second|minute|hour|day|week) burst [0-9]+ packets \} delete @{SET} \{ {IP} saddr \}(?: delete @{SET} \{ {KEY} \})* log group [0-9]+ prefix "pfknock close {ID}: ""#,
            ),
            // A knock on a right port ends here; one on a wrong port
            // resets the host's progress and holds it back.
            re(
                r#"\t\tiifname "lo" tcp dport {PORT} {SYN} (?:meta time >= [0-9]+ meta time < [0-9]+ )?ct state new fib saddr type != local (?:ip6 saddr != fe80::/10 )?(?:{KEY} (?:@{SET}|{NET}|\{ {NETS} \}) )?accept"#,
            ),
            re(
                r#"\t\tiifname "lo" tcp dport (?:{PORT}|{PORT}-{PORT}|\{ {PORT}(?:, {PORT})* \}) {SYN} ct state new fib saddr type != local update @{SET} \{ {KEY} \}(?: delete @{SET} \{ {KEY} \})+"#,
            ),
            re(r#"\t\tiifname "lo" accept"#),
            re(
                r#"\t\t(?:iifname "{IF}" )?tcp dport {NPORTS} (?:{SYN}|{ACK} ct state invalid,untracked,new) {SYNPROXY}"#,
            ),
            re(
                r#"\t\t(?:iifname "{IF}" )?tcp dport {NPORTS} (?:ct state invalid,untracked,new )?reject with tcp reset"#,
            ),
            // Signed knocks: from `from` only, a source's datagrams past
            // the limit dropped, and the family left out.
            re(
                r#"\t\t(?:iifname "{IF}" )?(?:meta nfproto ipv[46] )?udp dport {PORT} (?:{IP} saddr != (?:{NET}|\{ {NETS} \}) |update @{SET} \{ {KEY} limit rate over 10/second burst 20 packets \} )?drop"#,
            ),
            re(
                r#"\t\t(?:iifname "{IF}" )?{DADDR}{DPORT} {IP} saddr @{SET} ct label set 127 accept"#,
            ),
            // The guard table: closed to what pfknock's did not vouch for.
            re(r"# closed to connections table inet pfknock did not let through, while it is gone"),
            re(r"table inet pfknock_guard \{"),
            re(r"\t\ttype filter hook (?:input|forward) priority filter; policy accept;"),
            re(r"\t\tct label 127 accept"),
            re(r#"\t\t(?:iifname "{IF}" )?{DADDR}{DPORT} ct state new,invalid,untracked drop"#),
            re(
                r#"\t\t(?:iifname "{IF}" )?{DADDR}(?:tcp dport {PORTS} {IP} saddr @{SET} ct state established ct status assured ct expiration > 10m tcp flags & \(syn \| rst\) == 0|udp dport {PORTS} {IP} saddr @{SET} ct state established ct status assured) update @{SET} \{ {IP} saddr \} accept"#,
            ),
            re(
                r#"\t\t(?:iifname "{IF}" )?{DADDR}{DPORT} (?:ct state established,related accept|drop)"#,
            ),
        ],
    }
}

fn check(g: &Grammar, text: &str, path: &str) -> Result<bool, TestCaseError> {
    let Ok((cfg, _)) = Config::parse(text, Path::new(path)) else {
        return Ok(false);
    };
    for (rules, out) in [
        (&g.pf, render::pf::render(&cfg, path)),
        (&g.nft, render::nft::render(&cfg, path)),
    ] {
        for line in out.lines() {
            prop_assert!(
                rules.iter().any(|r| r.is_match(line)),
                "a line outside the grammar:\n{:?}\nfrom config {:?} at {:?}",
                line,
                text,
                path
            );
        }
    }
    Ok(true)
}

#[test]
fn rendered_rules_keep_their_grammar_whatever_the_config() {
    let cases: u32 = std::env::var("PFKNOCK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("PFKNOCK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(
        PtConfig {
            cases,
            failure_persistence: None,
            ..PtConfig::default()
        },
        rng,
    );
    let g = grammar();
    let valid = std::cell::Cell::new(0u64);
    runner
        .run(&input(), |(text, path)| {
            if check(&g, &text, &path)? {
                valid.set(valid.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "{cases} inputs, {} valid configs rendered and checked",
        valid.get()
    );
    assert!(
        valid.get() > cases as u64 / 50,
        "the generator must reach the renderers"
    );
}

/// Inputs the fuzzer found, kept as they were found.
#[test]
fn regressions() {
    let g = grammar();
    for (text, path) in [
        // A path with a newline and a rule, and one ending in a backslash
        // (pf.conf would continue the comment into the next line).
        (
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n",
            "/tmp/x\nflush ruleset\n#",
        ),
        (
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n",
            "/etc/pf\\",
        ),
    ] {
        assert!(check(&g, text, path).unwrap(), "{text:?}");
    }
    // Found by the long run: a service name of digits, with a table of its
    // own, reached the comments and the log prefix. Refused now.
    let t = "[[service]]\nname = \"1234\"\nprotect = [1]\nknock = [2]\ntable = \"t\"\n";
    assert!(!check(&g, t, "pfknock.toml").unwrap(), "refused");
}
