//! show, expire, allow, revoke and flush: the shipped command code over the
//! shipped marshalling, against the kernel model (docs/pf-kernel.md).

use std::net::IpAddr;
use std::path::Path;

use pfknock::cmd::{self, Select};
use pfknock::config::{Config, owned_tables};
use pfknock::name::{Net, Secs};
use pfknock::pf::PfTables;
use pfknock::pf::abi::{Layout, freebsd, macos, openbsd};
use pfknock::tables::{TableRef, Tables};
use pfknock_pf_model::{self as model, Model};

const NOW: i64 = 1_800_000_000;
const OSES: [&Layout; 3] = [&freebsd::LAYOUT, &openbsd::LAYOUT, &macos::LAYOUT];

const CONF: &str = r#"
[[service]]
name    = "ssh"
protect = [22]
knock   = [7001, 7002]
ttl     = "60s"
window  = "10s"
allow   = ["198.51.100.0/29"]

[[service]]
name    = "imap"
protect = [993]
knock   = [2345]
ttl     = "5m"

[[expire]]
table = "portknock_ssh"
ttl   = "60s"
"#;

fn cfg() -> Config {
    Config::parse(CONF, Path::new("t.toml")).unwrap().0
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Net {
    s.parse().unwrap()
}

/// The kernel after `pfknock load`: the anchor's tables exist, plus the
/// hand-written table and one pfknock must never touch.
fn kernel(l: &'static Layout) -> PfTables<Model> {
    let mut m = Model::new(model::newest(l.os), NOW);
    for t in [
        "ssh",
        "ssh_s1",
        "ssh_renew",
        "ssh_hold",
        "imap",
        "imap_renew",
    ] {
        m.define("pfknock", t, false);
    }
    m.define_const("pfknock", "ssh_allow", &[ip("198.51.100.0")]);
    m.define("", "portknock_ssh", false);
    m.define("", "bruteforce", false);
    m.overload("", "bruteforce", ip("203.0.113.66"));
    PfTables::new(m, l)
}

fn m(k: &mut PfTables<Model>) -> &mut Model {
    &mut k.pf.dev
}

#[test]
fn show_lists_who_is_authorized() {
    for l in OSES {
        let c = cfg();
        let mut k = kernel(l);
        m(&mut k).overload("pfknock", "ssh", ip("192.0.2.10"));
        m(&mut k).now += 15;
        m(&mut k).overload("pfknock", "imap", ip("2001:db8::5"));
        m(&mut k).overload("pfknock", "ssh_s1", ip("192.0.2.11"));
        m(&mut k).now += 5;
        let rows = cmd::show(&c, &mut k, None, false, NOW + 20).unwrap();
        let got: Vec<(&str, Option<&str>, u64, Option<u64>)> = rows
            .iter()
            .map(|r| (r.address.as_str(), r.service.as_deref(), r.age, r.left))
            .collect();
        assert_eq!(
            got,
            [
                ("192.0.2.10", Some("ssh"), 20, Some(40)),
                ("2001:db8::5", Some("imap"), 5, Some(295))
            ],
            "{}",
            l.os
        );
        let text = cmd::format_rows(&rows);
        // macOS keeps counters on every table; the BSDs only with `counters`.
        let n = if l.tflag_counters.is_none() { "0" } else { "-" };
        assert_eq!(
            text,
            format!(
                "ADDRESS      SERVICE  TABLE         AGE  LEFT   PACKETS  BYTES\n\
                 192.0.2.10   ssh      pfknock/ssh   20s  40s    {n}        {n}\n\
                 2001:db8::5  imap     pfknock/imap  5s   4m55s  {n}        {n}\n"
            ),
            "{}",
            l.os
        );
        // --json, written row by row, reads as serde's pretty list does.
        let mut json = Vec::new();
        cmd::write_json(&mut json, rows.iter().cloned()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            format!("{}\n", serde_json::to_string_pretty(&rows).unwrap()),
            "{}",
            l.os
        );
        let mut none = Vec::new();
        cmd::write_json(&mut none, std::iter::empty()).unwrap();
        assert_eq!(none, b"[]\n");
        let all = cmd::show(&c, &mut k, Some("ssh"), true, NOW + 20).unwrap();
        let kinds: Vec<(&str, &str)> = all.iter().map(|r| (r.table.as_str(), r.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("ssh", "authorized"),
                ("ssh_s1", "stage"),
                ("ssh_allow", "allow")
            ]
        );
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["address"], "192.0.2.10");
        assert_eq!(json[0]["left"], 40);
        assert_eq!(json[0]["packets"].is_null(), l.tflag_counters.is_some());
    }
}

#[test]
fn show_unknown_service_and_unloaded_anchor() {
    let c = cfg();
    let mut k = PfTables::new(Model::new(&model::OPENBSD_7, NOW), &openbsd::LAYOUT);
    let e = cmd::show(&c, &mut k, Some("smtp"), false, NOW)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "no service \"smtp\" in the config (services: ssh, imap)");
    let e = cmd::show(&c, &mut k, None, false, NOW)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "table <ssh> in anchor pfknock: DIOCRGETASTATS: table does not exist (is the anchor loaded? pfknock load)"
    );
}

#[test]
fn expire_to_the_second_and_never_the_allow_list() {
    for l in OSES {
        let c = cfg();
        let mut k = kernel(l);
        m(&mut k).overload("pfknock", "ssh", ip("192.0.2.10"));
        m(&mut k).overload("pfknock", "ssh", ip("198.51.100.3")); // allow-listed
        m(&mut k).now += 1;
        m(&mut k).overload("pfknock", "ssh", ip("192.0.2.20"));
        // At 60s nothing goes: pfctl's rule is strictly older.
        let r = cmd::expire(&c, &mut k, &Select::Service("ssh"), None, false, NOW + 60).unwrap();
        assert_eq!(
            r[0].count_line(&r[0].table.to_string()),
            "<ssh> in anchor pfknock: 0/3 addresses expired.",
            "{}",
            l.os
        );
        let r = cmd::expire(&c, &mut k, &Select::Service("ssh"), None, true, NOW + 61).unwrap();
        assert_eq!(
            r[0].count_line(&r[0].table.to_string()),
            "<ssh> in anchor pfknock: 1/3 addresses expired (dummy)."
        );
        assert_eq!(
            m(&mut k).dump("pfknock", "ssh").unwrap().len(),
            3,
            "dry run changes nothing"
        );
        let r = cmd::expire(&c, &mut k, &Select::Service("ssh"), None, false, NOW + 61).unwrap();
        assert_eq!(
            r[0].expired.iter().map(|x| x.net).collect::<Vec<_>>(),
            [net("192.0.2.10")]
        );
        assert_eq!(
            r[0].count_line(&r[0].table.to_string()),
            "<ssh> in anchor pfknock: 1/3 addresses expired."
        );
        let left: Vec<IpAddr> = m(&mut k)
            .dump("pfknock", "ssh")
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(left, [ip("192.0.2.20"), ip("198.51.100.3")]);
        // --older-than overrides the ttl; the allow list still holds.
        let r = cmd::expire(
            &c,
            &mut k,
            &Select::Service("ssh"),
            Some(Secs(0)),
            false,
            NOW + 61,
        )
        .unwrap();
        assert_eq!(r[0].deleted, 1);
        assert_eq!(
            m(&mut k).dump("pfknock", "ssh").unwrap()[0].0,
            ip("198.51.100.3")
        );
    }
}

#[test]
fn expire_stage_tables_by_window_and_hand_written_tables() {
    let c = cfg();
    let mut k = kernel(&freebsd::LAYOUT);
    m(&mut k).overload("pfknock", "ssh_s1", ip("192.0.2.1"));
    m(&mut k).overload("", "portknock_ssh", ip("192.0.2.2"));
    let r = cmd::expire(&c, &mut k, &Select::All, None, false, NOW + 11).unwrap();
    let lines: Vec<String> = r
        .iter()
        .map(|r| r.count_line(&r.table.to_string()))
        .collect();
    assert_eq!(
        lines,
        [
            "<ssh> in anchor pfknock: 0/0 addresses expired.",
            "<ssh_s1> in anchor pfknock: 1/1 addresses expired.",
            "<imap> in anchor pfknock: 0/0 addresses expired.",
            "<ssh_hold> in anchor pfknock: 0/0 addresses expired.",
            "<portknock_ssh>: 0/1 addresses expired.",
        ]
    );
    let r = cmd::expire(&c, &mut k, &Select::All, None, false, NOW + 61).unwrap();
    assert_eq!(r[4].deleted, 1);
    // The renewal and allow tables are not expired, and nothing unnamed is.
    let e = cmd::expire_targets(
        &c,
        &Select::Table(pfknock::tables::TableRef::new(
            &c.anchor,
            &pfknock::name::TableName::new("ssh_renew").unwrap(),
        )),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "<ssh_renew> in anchor pfknock is the renew table of service ssh: pfknock does not expire it"
    );
    let e = cmd::expire_targets(
        &c,
        &Select::Table(pfknock::tables::TableRef::new(
            &pfknock::name::AnchorName::main(),
            &pfknock::name::TableName::new("bruteforce").unwrap(),
        )),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "<bruteforce> is not a table of the config");
    assert_eq!(m(&mut k).dump("", "bruteforce").unwrap().len(), 1);
}

#[test]
fn idle_tables_need_the_daemon_or_older_than() {
    let (c, _) = Config::parse(
        "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nexpire=\"idle\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let mut k = PfTables::new(Model::new(&model::OPENBSD_7, NOW), &openbsd::LAYOUT);
    k.pf.dev.define("pfknock", "ssh", true);
    let e = cmd::expire(&c, &mut k, &Select::All, None, false, NOW).unwrap_err();
    assert!(
        e.to_string()
            .contains("only the daemon (pfknock run) measures"),
        "{e}"
    );
    assert!(cmd::expire(&c, &mut k, &Select::All, Some(Secs(60)), false, NOW).is_ok());
}

#[test]
fn allow_adds_then_renews() {
    for l in OSES {
        let c = cfg();
        let mut k = kernel(l);
        assert_eq!(
            cmd::allow(&c, &mut k, net("192.0.2.7"), Some("imap")).unwrap(),
            ("imap".into(), true)
        );
        m(&mut k).now += 100;
        assert_eq!(
            cmd::allow(&c, &mut k, net("192.0.2.7"), Some("imap")).unwrap(),
            ("imap".into(), false)
        );
        assert_eq!(
            m(&mut k).dump("pfknock", "imap").unwrap(),
            [(ip("192.0.2.7"), 32, NOW + 100)],
            "{}",
            l.os
        );
        let e = cmd::allow(&c, &mut k, net("192.0.2.7"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the config has several services (ssh, imap): name one"
        );
    }
}

#[test]
fn revoke_clears_every_dynamic_table_and_refuses_the_allow_list() {
    for l in OSES {
        let c = cfg();
        let mut k = kernel(l);
        for t in ["ssh", "ssh_s1", "ssh_renew", "imap"] {
            m(&mut k).overload("pfknock", t, ip("192.0.2.9"));
        }
        m(&mut k).now = NOW + 42;
        let done = cmd::revoke(&c, &mut k, net("192.0.2.9"), Some("ssh"), NOW + 42).unwrap();
        let n: Vec<(String, usize)> = done
            .iter()
            .map(|r| (r.table.name.to_string(), r.deleted))
            .collect();
        // The authorization's age and ttl, for the log line, in the
        // intake (a knock not moved yet) as in the authorized table.
        for r in &done[..2] {
            assert_eq!(
                (r.age, r.ttl.map(|t| t.0)),
                (Some(42), Some(60)),
                "{}",
                l.os
            );
        }
        assert!(
            done[2..].iter().all(|r| r.age.is_none()),
            "stages have no age"
        );
        // The intake first: the daemon's move (add, then delete from the
        // intake) cannot bring the host back (tests/pf_model.rs).
        assert_eq!(
            n,
            [
                ("ssh_renew".into(), 1),
                ("ssh".into(), 1),
                ("ssh_s1".into(), 1),
            ]
        );
        assert_eq!(
            m(&mut k).dump("pfknock", "imap").unwrap().len(),
            1,
            "other services untouched"
        );
        cmd::revoke(&c, &mut k, net("192.0.2.9"), None, NOW).unwrap();
        assert!(
            m(&mut k).dump("pfknock", "imap").unwrap().is_empty(),
            "{}",
            l.os
        );

        m(&mut k).overload("pfknock", "ssh", ip("198.51.100.4"));
        let e = cmd::revoke(&c, &mut k, net("198.51.100.4"), None, NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "198.51.100.4 is on the allow list of service ssh: remove it from the config to revoke it"
        );
        assert_eq!(
            m(&mut k).dump("pfknock", "ssh").unwrap().len(),
            1,
            "refused before any change"
        );

        // A network is an entry of its own on pf, as with pfctl -T delete:
        // its revoke takes that entry, and the hosts within it stay.
        m(&mut k).overload("pfknock", "ssh", ip("192.0.2.20"));
        let name = pfknock::name::TableName::new("ssh").unwrap();
        let (ssh, lan) = (TableRef::new(&c.anchor, &name), net("192.0.2.0/24"));
        let gone = |d: Vec<cmd::Revoked>| d.iter().map(|r| r.deleted).sum::<usize>();
        assert_eq!(gone(cmd::revoke(&c, &mut k, lan, None, NOW).unwrap()), 0);
        k.add(&ssh, &[lan]).unwrap();
        assert_eq!(gone(cmd::revoke(&c, &mut k, lan, None, NOW).unwrap()), 1);
        let left: Vec<Net> = k.entries(&ssh).unwrap().iter().map(|e| e.net).collect();
        assert!(
            left.contains(&net("192.0.2.20")) && !left.contains(&lan),
            "{}",
            l.os
        );
    }
}

#[test]
fn flush_empties_dynamic_tables_only() {
    let c = cfg();
    let mut k = kernel(&openbsd::LAYOUT);
    m(&mut k).overload("pfknock", "ssh", ip("192.0.2.1"));
    m(&mut k).overload("pfknock", "ssh_s1", ip("192.0.2.2"));
    m(&mut k).overload("pfknock", "imap", ip("192.0.2.3"));
    let done = cmd::flush(&c, &mut k, Some("ssh")).unwrap();
    assert_eq!(done.iter().map(|f| f.deleted).sum::<usize>(), 2);
    assert_eq!(
        m(&mut k).dump("pfknock", "ssh_allow").unwrap().len(),
        1,
        "const allow table stays"
    );
    assert_eq!(m(&mut k).dump("pfknock", "imap").unwrap().len(), 1);
}

/// pf's intake (`ssh_renew`) holds the knocks the daemon has not moved
/// yet, and every knock made while none runs: `show` lists them as
/// authorized (each host once), `expire` expires them by the service's
/// ttl, and `flush` says each it ends, as for the authorized table.
#[test]
fn the_intake_is_shown_expired_and_flushed_as_authorizations() {
    for l in OSES {
        let c = cfg();
        let mut k = kernel(l);
        // .1 authorized and knocked again, .2 knocked while no daemon ran.
        m(&mut k).overload("pfknock", "ssh", ip("192.0.2.1"));
        m(&mut k).now += 30;
        m(&mut k).overload("pfknock", "ssh_renew", ip("192.0.2.1"));
        m(&mut k).overload("pfknock", "ssh_renew", ip("192.0.2.2"));
        let rows = cmd::show(&c, &mut k, Some("ssh"), false, NOW + 40).unwrap();
        let got: Vec<(&str, &str, &str, u64, Option<u64>)> = (rows.iter())
            .map(|r| (r.address.as_str(), r.table.as_str(), r.kind, r.age, r.left))
            .collect();
        assert_eq!(
            got,
            [
                ("192.0.2.1", "ssh", "authorized", 40, Some(20)),
                ("192.0.2.2", "ssh_renew", "authorized", 10, Some(50)),
            ],
            "{}",
            l.os
        );
        // With -a, the intake as it is.
        let rows = cmd::show(&c, &mut k, Some("ssh"), true, NOW + 40).unwrap();
        let renew: Vec<&str> = (rows.iter())
            .filter(|r| r.kind == "renew")
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(renew, ["192.0.2.1", "192.0.2.2"], "{}", l.os);
        // 61 s after the knocks: the intake's hosts expire, as the
        // authorized one did 30 s before; nothing else is touched.
        let r = cmd::expire(&c, &mut k, &Select::Service("ssh"), None, false, NOW + 91).unwrap();
        let gone: Vec<(String, Vec<String>)> = (r.iter())
            .filter(|x| !x.expired.is_empty())
            .map(|x| {
                let nets = x.expired.iter().map(|e| e.net.to_string()).collect();
                (x.table.name.to_string(), nets)
            })
            .collect();
        assert_eq!(
            gone,
            [
                (
                    "ssh_renew".into(),
                    vec!["192.0.2.1".into(), "192.0.2.2".into()]
                ),
                ("ssh".into(), vec!["192.0.2.1".into()]),
            ],
            "{}",
            l.os
        );
        assert!(m(&mut k).dump("pfknock", "ssh_renew").unwrap().is_empty());
        // Flush: a line for each authorization the intake held.
        m(&mut k).now = NOW + 91;
        m(&mut k).overload("pfknock", "ssh_renew", ip("192.0.2.3"));
        let mut d = pfknock::verbs::Done::default();
        pfknock::verbs::flush(&c, &mut k, Some("ssh"), NOW + 95, "root", &mut d).unwrap();
        assert_eq!(
            d.audit,
            ["flushed 192.0.2.3 service=ssh table=ssh_renew anchor=pfknock age=4s ttl=1m by root"],
            "{}",
            l.os
        );
        // Revoke of a knock still in the intake: said with its age and
        // ttl, and gone from every table.
        m(&mut k).overload("pfknock", "ssh_renew", ip("192.0.2.4"));
        let mut d = pfknock::verbs::Done::default();
        let four = net("192.0.2.4");
        pfknock::verbs::revoke(&c, &mut k, four, Some("ssh"), NOW + 96, "root", &mut d).unwrap();
        assert_eq!(
            d.audit,
            ["revoked 192.0.2.4 service=ssh table=ssh_renew anchor=pfknock age=5s ttl=1m by root"],
            "{}",
            l.os
        );
        assert_eq!(
            d.stderr,
            ["<ssh_renew> in anchor pfknock: 1/1 addresses deleted."],
            "{}",
            l.os
        );
        assert!(m(&mut k).dump("pfknock", "ssh_renew").unwrap().is_empty());
        assert!(m(&mut k).dump("pfknock", "ssh").unwrap().is_empty());
    }
}

/// Whatever the commands do, they name only tables of the config.
#[test]
fn commands_touch_only_tables_the_config_names() {
    let c = cfg();
    let owned: Vec<(String, String)> = owned_tables(&c)
        .into_iter()
        .map(|(a, t)| (a.as_str().to_owned(), t.to_string()))
        .collect();
    let mut k = kernel(&freebsd::LAYOUT);
    m(&mut k).overload("pfknock", "ssh", ip("192.0.2.1"));
    cmd::show(&c, &mut k, None, true, NOW).unwrap();
    cmd::expire(&c, &mut k, &Select::All, Some(Secs(0)), false, NOW + 5).unwrap();
    cmd::allow(&c, &mut k, net("192.0.2.5"), Some("ssh")).unwrap();
    cmd::revoke(&c, &mut k, net("192.0.2.5"), None, NOW).unwrap();
    cmd::flush(&c, &mut k, None).unwrap();
    let touched = m(&mut k).touched.clone();
    assert!(touched.len() >= 7, "{touched:?}");
    for t in &touched {
        assert!(
            owned.contains(t),
            "touched {t:?}, which the config does not name"
        );
    }
    assert_eq!(
        m(&mut k).dump("", "bruteforce").unwrap(),
        [(ip("203.0.113.66"), 32, NOW)]
    );
}

/// The config's own table names and anchors, so that the property below
/// draws the tables it must accept as often as those it must refuse (and
/// the near misses between: its names in another anchor, and the reverse).
fn own_names() -> Vec<String> {
    owned_tables(&cfg())
        .into_iter()
        .map(|(_, t)| t.to_string())
        .collect()
}
fn own_anchors() -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = owned_tables(&cfg())
        .into_iter()
        .map(|(a, _)| (!a.is_main()).then(|| a.to_string()))
        .collect();
    v.dedup();
    v
}

proptest::proptest! {
    /// Whatever table name and anchor a command line gives, expire refuses
    /// it unless the config names that very table, and then touches
    /// nothing but it.
    #[test]
    fn expire_refuses_every_table_the_config_does_not_name(
        name in proptest::prop_oneof![
            proptest::sample::select(own_names()),
            "[A-Za-z0-9_-]{1,31}",
        ],
        anchor in proptest::prop_oneof![
            proptest::sample::select(own_anchors()),
            proptest::option::of("[a-z][a-z0-9_-]{0,15}"),
        ],
    ) {
        let c = cfg();
        let t = pfknock::tables::TableRef::new(
            &anchor.as_deref().map_or(pfknock::name::AnchorName::main(), |a| pfknock::name::AnchorName::new(a).unwrap()),
            &pfknock::name::TableName::new(&name).unwrap(),
        );
        let owned = owned_tables(&c).contains(&(t.anchor.clone(), t.name.clone()));
        let mut k = kernel(&openbsd::LAYOUT);
        let r = cmd::expire(&c, &mut k, &Select::Table(t.clone()), Some(Secs(0)), false, NOW);
        let touched = m(&mut k).touched.clone();
        if owned {
            for (a, n) in &touched {
                proptest::prop_assert_eq!((a.as_str(), n.as_str()), (t.anchor.as_str(), t.name.as_str()));
            }
        } else {
            proptest::prop_assert!(r.is_err());
            proptest::prop_assert!(touched.is_empty());
        }
    }
}

#[test]
fn the_property_above_draws_both_kinds() {
    // Owned: some (name, anchor) pairs of the config itself.
    let owned = owned_tables(&cfg());
    assert!(owned.len() >= 3, "{owned:?}");
    assert!(own_anchors().len() >= 2, "tables in more than one anchor");
}

/// An anchor loaded by a pfknock without holds has no `<ssh_hold>`: show
/// and expire go on without it (nobody is held), and say nothing of it.
#[test]
fn an_anchor_without_a_hold_table_is_shown_and_expired() {
    let c = cfg();
    let mut m = Model::new(model::newest("FreeBSD"), NOW);
    for t in ["ssh", "ssh_s1", "ssh_renew", "imap", "imap_renew"] {
        m.define("pfknock", t, false);
    }
    m.define_const("pfknock", "ssh_allow", &[ip("198.51.100.0")]);
    m.define("", "portknock_ssh", false);
    m.overload("pfknock", "ssh", ip("192.0.2.1"));
    let mut k = PfTables::new(m, &freebsd::LAYOUT);
    let rows = cmd::show(&c, &mut k, None, true, NOW + 5).unwrap();
    assert!(rows.iter().all(|r| r.kind != "hold"));
    assert_eq!(rows.iter().filter(|r| r.kind == "authorized").count(), 1);
    let r = cmd::expire(&c, &mut k, &Select::All, None, false, NOW + 5).unwrap();
    assert!(r.iter().all(|x| x.table.name.as_str() != "ssh_hold"));
    // Another table missing is still an error that says what to do.
    let mut m = Model::new(model::newest("FreeBSD"), NOW);
    m.define("pfknock", "ssh_hold", false);
    let mut k = PfTables::new(m, &freebsd::LAYOUT);
    let e = cmd::show(&c, &mut k, None, false, NOW).unwrap_err();
    assert!(e.to_string().contains("pfknock load"), "{e}");
}
