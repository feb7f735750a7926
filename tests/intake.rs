//! `tables::move_hosts`, the daemon's move of a knock from pf's intake
//! (`T_renew`) into the authorized table, through the shipped marshalling
//! (`pf::PfTables`) against the kernel model of every OS, with a revoke
//! (a deletion from the intake, then from the authorized table, as
//! `pfknock revoke` and `flush` do them) coming between any two of its
//! requests: the host must end in neither table, whenever it came.

use std::net::IpAddr;

use pfknock::name::{AnchorName, Net, TableName};
use pfknock::pf::PfTables;
use pfknock::pf::abi::{Layout, freebsd, macos, openbsd};
use pfknock::pf::marshal::Device;
use pfknock::tables::{TableRef, move_hosts};
use pfknock_pf_model::{self as kmodel, Kernel, Model};

const NOW: i64 = 1_800_000_000;
const OSES: [(&Kernel, &Layout); 4] = [
    (&kmodel::FREEBSD_13_0, &freebsd::LAYOUT),
    (&kmodel::FREEBSD_14, &freebsd::LAYOUT),
    (&kmodel::OPENBSD_7, &openbsd::LAYOUT),
    (&kmodel::MACOS, &macos::LAYOUT),
];

fn tref(name: &str) -> TableRef {
    TableRef {
        anchor: AnchorName::new("pfknock").unwrap(),
        name: TableName::new(name).unwrap(),
    }
}

/// The model, with deletions another process makes before the tested
/// code's request number `n` (counted from 0): (n, table, host).
struct Racing {
    m: Model,
    calls: usize,
    deletes: Vec<(usize, &'static str, IpAddr)>,
}

impl Device for Racing {
    fn ioctl(&mut self, request: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32> {
        for (_, t, a) in self.deletes.iter().filter(|(n, ..)| *n == self.calls) {
            self.m.remove("pfknock", t, *a);
        }
        self.calls += 1;
        self.m.ioctl(request, ioc, buf)
    }
}

fn kernel(
    k: &'static Kernel,
    l: &'static Layout,
    deletes: Vec<(usize, &'static str, IpAddr)>,
) -> PfTables<Racing> {
    let mut m = Model::new(k, NOW);
    m.define("pfknock", "ssh", false);
    m.define("pfknock", "ssh_renew", false);
    PfTables::new(
        Racing {
            m,
            calls: 0,
            deletes,
        },
        l,
    )
}

fn held(t: &PfTables<Racing>, name: &str) -> Vec<String> {
    let mut v: Vec<String> = (t.pf.dev.m.dump("pfknock", name).unwrap().iter())
        .map(|(a, ..)| a.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_move_alone_leaves_the_hosts_in_the_authorized_table_only() {
    for (k, l) in OSES {
        let mut t = kernel(k, l, Vec::new());
        let hosts: Vec<Net> = ["198.18.0.1", "198.18.0.2", "fd00::3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        for h in &hosts {
            t.pf.dev.m.overload("pfknock", "ssh_renew", h.addr());
        }
        let kept = move_hosts(&mut t, &tref("ssh_renew"), &tref("ssh"), &hosts).unwrap();
        assert_eq!(kept, hosts, "{}", k.os);
        assert_eq!(held(&t, "ssh"), ["198.18.0.1", "198.18.0.2", "fd00::3"]);
        assert!(held(&t, "ssh_renew").is_empty());
        // Two requests, whatever the number of hosts: one add, one delete.
        assert_eq!(t.pf.dev.calls, 2, "{}", k.os);
    }
}

#[test]
fn a_revoke_at_any_point_of_a_move_leaves_the_host_out() {
    let h: IpAddr = "198.18.0.9".parse().unwrap();
    let other: IpAddr = "198.18.0.10".parse().unwrap();
    // The move makes its add (request 0), its delete (1) and, where it
    // takes a host back, one more (2); a revoke deletes from the intake
    // before request `a` and from the authorized table before request `b`
    // (3: after the move).
    for (k, l) in OSES {
        for a in 0..=3 {
            for b in a..=3 {
                let mut t = kernel(k, l, vec![(a, "ssh_renew", h), (b, "ssh", h)]);
                t.pf.dev.m.overload("pfknock", "ssh_renew", h);
                t.pf.dev.m.overload("pfknock", "ssh_renew", other);
                let both = [Net::host(h), Net::host(other)];
                let kept = move_hosts(&mut t, &tref("ssh_renew"), &tref("ssh"), &both).unwrap();
                // What is left after the revoke's own deletions, as the
                // test plays them after the move.
                for (n, table, x) in [(a, "ssh_renew", h), (b, "ssh", h)] {
                    if n >= t.pf.dev.calls {
                        t.pf.dev.m.remove("pfknock", table, x);
                    }
                }
                let case = format!("{} {}: revoke at {a}, {b}", k.os, k.version);
                assert_eq!(held(&t, "ssh"), ["198.18.0.10"], "{case}");
                assert!(held(&t, "ssh_renew").is_empty(), "{case}");
                // The host the revoke found in the intake before the
                // delete was never kept; the other always was.
                assert!(kept.contains(&Net::host(other)), "{case}");
                assert_eq!(kept.contains(&Net::host(h)), a >= 2, "{case}");
            }
        }
    }
}

#[test]
fn a_host_already_authorized_is_not_taken_back_when_the_intake_lost_it() {
    // Only what the move itself added is taken back: a host someone had
    // put in the authorized table stays there.
    let h: IpAddr = "198.18.0.9".parse().unwrap();
    for (k, l) in OSES {
        let mut t = kernel(k, l, vec![(0, "ssh_renew", h)]);
        t.pf.dev.m.overload("pfknock", "ssh", h);
        t.pf.dev.m.overload("pfknock", "ssh_renew", h);
        let kept = move_hosts(&mut t, &tref("ssh_renew"), &tref("ssh"), &[Net::host(h)]).unwrap();
        assert!(kept.is_empty(), "{}", k.os);
        assert_eq!(held(&t, "ssh"), ["198.18.0.9"], "{}", k.os);
    }
}

#[test]
fn a_full_pool_fails_the_move_and_changes_nothing() {
    let h: IpAddr = "198.18.0.9".parse().unwrap();
    for (k, l) in OSES {
        let mut t = kernel(k, l, Vec::new());
        t.pf.dev.m.overload("pfknock", "ssh_renew", h);
        t.pf.dev.m.table_entries_limit = 1;
        let e = move_hosts(&mut t, &tref("ssh_renew"), &tref("ssh"), &[Net::host(h)]);
        assert!(e.is_err(), "{}", k.os);
        assert_eq!(held(&t, "ssh_renew"), ["198.18.0.9"], "{}", k.os);
        assert!(held(&t, "ssh").is_empty(), "{}", k.os);
    }
}
