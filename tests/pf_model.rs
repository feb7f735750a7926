//! The shipped marshalling (`pf::marshal`, `pf::PfTables`) against the
//! kernel model (the `pfknock-pf-model` crate, model/), for every kernel row the model has (FreeBSD
//! 13.0 and 14, OpenBSD 7, macOS). pf does not run on Linux; the model
//! decodes the bytes with its own offsets and the kernels' rules as
//! docs/pf-kernel.md sets them out from the sources.

use std::net::IpAddr;

use pfknock::error::Error;
use pfknock::name::{AnchorName, Net, TableName};
use pfknock::pf::PfTables;
use pfknock::pf::abi::{self, Layout, freebsd, macos, openbsd};
use pfknock::pf::marshal::Device;
use pfknock::tables::{TableFlags, TableRef, Tables, move_hosts};
use pfknock_pf_model::{self as kmodel, Kernel, Model, Stamp};

const NOW: i64 = 1_800_000_000;
/// Each kernel row with the layout pfknock uses on that OS.
const OSES: [(&Kernel, &Layout); 4] = [
    (&kmodel::FREEBSD_13_0, &freebsd::LAYOUT),
    (&kmodel::FREEBSD_14, &freebsd::LAYOUT),
    (&kmodel::OPENBSD_7, &openbsd::LAYOUT),
    (&kmodel::MACOS, &macos::LAYOUT),
];

fn tref(anchor: &str, name: &str) -> TableRef {
    TableRef {
        anchor: if anchor.is_empty() {
            AnchorName::main()
        } else {
            AnchorName::new(anchor).unwrap()
        },
        name: TableName::new(name).unwrap(),
    }
}

fn net(s: &str) -> Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn kernel(k: &'static Kernel, l: &'static Layout) -> PfTables<Model> {
    let mut m = Model::new(k, NOW);
    m.define("pfknock", "ssh", false);
    PfTables::new(m, l)
}

fn model(t: &mut PfTables<Model>) -> &mut Model {
    &mut t.pf.dev
}

/// `n` distinct IPv4 hosts in 198.18.0.0/15 followed by IPv6 hosts in fd00::/8.
fn hosts(n4: u32, n6: u32) -> Vec<Net> {
    let v4 = (0..n4).map(|i| Net::host(IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 + i))));
    let v6 = (0..n6).map(|i| {
        Net::host(IpAddr::from(std::net::Ipv6Addr::from(
            0xfd00_u128 << 112 | i as u128,
        )))
    });
    v4.chain(v6).collect()
}

#[test]
fn empty_table_lists_nothing() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        assert_eq!(
            k.entries(&tref("pfknock", "ssh")).unwrap(),
            vec![],
            "{}",
            l.os
        );
        assert_eq!(
            model(&mut k).count(abi::N_GETASTATS),
            1,
            "a count query suffices"
        );
    }
}

#[test]
fn add_then_list_mixed_families() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        let addrs = [
            net("198.51.100.7"),
            net("2001:db8::1"),
            net("203.0.113.0/24"),
            net("2001:db8:1::/48"),
        ];
        assert_eq!(k.add(&t, &addrs).unwrap(), 4, "{}", l.os);
        let mut got: Vec<(Net, i64)> = k
            .entries(&t)
            .unwrap()
            .iter()
            .map(|e| (e.net, e.tzero))
            .collect();
        got.sort();
        let mut want: Vec<(Net, i64)> = addrs.iter().map(|a| (*a, NOW)).collect();
        want.sort();
        assert_eq!(got, want, "{}", l.os);
        // The kernel saw each family's own AF_INET6 value.
        let dump = model(&mut k).dump("pfknock", "ssh").unwrap();
        assert!(dump.contains(&(ip("2001:db8::1"), 128, NOW)));
        assert!(dump.contains(&(ip("203.0.113.0"), 24, NOW)));
    }
}

#[test]
fn re_adding_keeps_the_time_stamp() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        k.add(&t, &[net("198.51.100.7")]).unwrap();
        model(&mut k).now += 30;
        assert_eq!(k.add(&t, &[net("198.51.100.7")]).unwrap(), 0);
        assert_eq!(k.entries(&t).unwrap()[0].tzero, NOW, "{}", l.os);
    }
}

#[test]
fn buffer_too_small_grows_and_retries() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        k.add(&t, &hosts(1000, 0)).unwrap();
        // 500 hosts knock between each count and read: more than the slack.
        model(&mut k).grow_on_short_read = 500;
        let got = k.entries(&t).unwrap();
        let calls = model(&mut k).count(abi::N_GETASTATS);
        assert!(calls >= 3, "{}: {calls} calls", l.os);
        assert_eq!(got.len(), 1000 + 500 * (calls - 1), "{}", l.os);
        let mut seen: Vec<Net> = got.iter().map(|e| e.net).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), got.len(), "no entry twice, none zeroed");
    }
}

#[test]
fn missing_table_reads_like_pfctl() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let e = k.entries(&tref("pfknock", "nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "table <nope> in anchor pfknock: DIOCRGETASTATS: table does not exist",
            "{}",
            l.os
        );
        // The anchor is part of the key: the same name elsewhere is missing.
        assert!(
            k.add(&tref("other", "ssh"), &[net("198.51.100.7")])
                .is_err()
        );
    }
}

#[test]
fn missing_anchor_reads_like_pfctl() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let e = k
            .table_stats(&AnchorName::new("nope").unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "table <> in anchor nope: DIOCRGETTSTATS: anchor or ruleset does not exist",
            "{}",
            l.os
        );
    }
}

#[test]
fn table_stats_of_one_anchor() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).define("pfknock", "ssh_renew", false);
        model(&mut k).define("", "other", false);
        k.add(&tref("pfknock", "ssh"), &hosts(3, 2)).unwrap();
        let mut st = k.table_stats(&AnchorName::new("pfknock").unwrap()).unwrap();
        st.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<(&str, &str, u64, bool)> = st
            .iter()
            .map(|s| (s.name.as_str(), s.anchor.as_str(), s.count, s.active))
            .collect();
        assert_eq!(
            got,
            [
                ("ssh", "pfknock", 5, true),
                ("ssh_renew", "pfknock", 0, true)
            ],
            "{}",
            l.os
        );
    }
}

#[test]
fn hundred_thousand_entries() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        let addrs = hosts(60_000, 40_000);
        assert_eq!(k.add(&t, &addrs).unwrap(), 100_000);
        let adds = model(&mut k).count(abi::N_ADDADDRS);
        if l.request_maxcount.is_some() {
            assert_eq!(adds, 2, "FreeBSD: two requests of at most 65535");
            // One read cannot carry more than request_maxcount entries: the
            // error says which sysctl to raise.
            let e = k.entries(&t).unwrap_err().to_string();
            assert!(
                e.contains("net.pf.request_maxcount=\"100000\" in /boot/loader.conf"),
                "{e}"
            );
            model(&mut k).maxcount = 200_000;
            k.pf.set_maxcount(200_000);
        } else {
            assert_eq!(adds, 1);
        }
        let got = k.entries(&t).unwrap();
        assert_eq!(got.len(), 100_000, "{}", l.os);
        assert_eq!(
            got.iter().filter(|e| e.net.addr().is_ipv6()).count(),
            40_000
        );
    }
}

#[test]
fn chunked_delete() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        let addrs = hosts(5000, 0);
        k.add(&t, &addrs).unwrap();
        model(&mut k).maxcount = 1000;
        k.pf.set_maxcount(1000);
        let before = model(&mut k).count(abi::N_DELADDRS);
        assert_eq!(k.delete(&t, &addrs[..4500]).unwrap(), 4500, "{}", l.os);
        assert_eq!(model(&mut k).count(abi::N_DELADDRS) - before, 5, "{}", l.os);
        assert_eq!(k.entries(&t).unwrap().len(), 500);
    }
}

#[test]
fn freebsd_refuses_oversized_requests() {
    // The cap is the ioctl layer's, not marshal's: a request above it is EINVAL.
    let l = &freebsd::LAYOUT;
    let mut m = Model::new(&kmodel::FREEBSD_14, NOW);
    m.define("pfknock", "ssh", false);
    let mut pf = pfknock::pf::marshal::Pf::new(m, l);
    pf.set_maxcount(usize::MAX);
    let e = pf
        .add_addrs(&tref("pfknock", "ssh"), &hosts(70_000, 0))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Table {
                errno: libc::EINVAL,
                op: "DIOCRADDADDRS",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn feedback_codes() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        k.add(&t, &[net("198.51.100.1"), net("198.51.100.2")])
            .unwrap();
        model(&mut k).negate("pfknock", "ssh", ip("198.51.100.2"));
        let (n, fb) =
            k.pf.add_addrs(
                &t,
                &[
                    net("198.51.100.1"),
                    net("198.51.100.2"),
                    net("198.51.100.3"),
                    net("198.51.100.3"),
                ],
            )
            .unwrap();
        assert_eq!(n, 1);
        // A repeated address is sent once; feedback is by address, in the
        // caller's order, whatever order the kernel wrote it in.
        assert_eq!(
            fb,
            [
                (net("198.51.100.1"), abi::PFR_FB_NONE),
                (net("198.51.100.2"), abi::PFR_FB_CONFLICT),
                (net("198.51.100.3"), abi::PFR_FB_ADDED),
            ],
            "{} {}",
            kr.os,
            kr.version
        );
        let (n, fb) =
            k.pf.del_addrs(
                &t,
                &[
                    net("198.51.100.1"),
                    net("198.51.100.1"),
                    net("198.51.100.9"),
                    net("198.51.100.2"),
                ],
            )
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            fb,
            [
                (net("198.51.100.1"), abi::PFR_FB_DELETED),
                (net("198.51.100.9"), abi::PFR_FB_NONE),
                (net("198.51.100.2"), abi::PFR_FB_CONFLICT),
            ],
            "{} {}",
            kr.os,
            kr.version
        );
    }
}

#[test]
fn clear_astats_time_stamp_per_os() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        k.add(&t, &[net("198.51.100.7")]).unwrap();
        model(&mut k).now += 100;
        let (n, fb) =
            k.pf.clr_astats(&t, &[net("198.51.100.7"), net("198.51.100.8")])
                .unwrap();
        assert_eq!(
            (n, fb),
            (
                1,
                vec![
                    (net("198.51.100.7"), abi::PFR_FB_CLEARED),
                    (net("198.51.100.8"), abi::PFR_FB_NONE)
                ]
            )
        );
        let tz = k.entries(&t).unwrap()[0].tzero;
        let want = match kr.clrastats {
            Stamp::Now => NOW + 100,
            Stamp::Zero => 0,
        };
        assert_eq!(tz, want, "{} {}", kr.os, kr.version);
    }
}

#[test]
fn renew_gives_a_fresh_time_stamp_on_every_os() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        let t = tref("pfknock", "ssh");
        k.add(&t, &[net("198.51.100.7"), net("2001:db8::7")])
            .unwrap();
        model(&mut k).now += 50;
        assert_eq!(
            k.renew(&t, &[net("198.51.100.7"), net("198.51.100.99")])
                .unwrap(),
            1,
            "{}",
            l.os
        );
        let mut got: Vec<(Net, i64)> = k
            .entries(&t)
            .unwrap()
            .iter()
            .map(|e| (e.net, e.tzero))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [(net("198.51.100.7"), NOW + 50), (net("2001:db8::7"), NOW)],
            "{}",
            l.os
        );
        // Renewing never adds an address that was not there.
        assert!(!got.iter().any(|(n, _)| *n == net("198.51.100.99")));
        // CLRASTATS first, its stamp read back; delete + add only where
        // the kernel stamped 0.
        let m = model(&mut k);
        let calls = (
            m.count(abi::N_CLRASTATS),
            m.count(abi::N_DELADDRS),
            m.count(abi::N_ADDADDRS),
        );
        match kr.clrastats {
            Stamp::Now => assert_eq!(calls, (1, 0, 1), "{} {}", kr.os, kr.version),
            Stamp::Zero => assert_eq!(calls, (1, 1, 2), "{} {}", kr.os, kr.version),
        }
        // Learnt once: a second renewal goes straight to what works.
        m.now += 10;
        k.renew(&t, &[net("198.51.100.7")]).unwrap();
        let m = model(&mut k);
        let again = (
            m.count(abi::N_CLRASTATS),
            m.count(abi::N_DELADDRS),
            m.count(abi::N_GETASTATS),
        );
        match kr.clrastats {
            Stamp::Now => assert_eq!(again, (2, 0, 2), "{} {}", kr.os, kr.version),
            Stamp::Zero => assert_eq!(again, (1, 2, 2), "{} {}", kr.os, kr.version),
        }
        let tz: Vec<i64> = k
            .entries(&t)
            .unwrap()
            .iter()
            .filter(|e| e.net == net("198.51.100.7"))
            .map(|e| e.tzero)
            .collect();
        assert_eq!(tz, [NOW + 60], "{} {}", kr.os, kr.version);
    }
}

#[test]
fn counters_only_with_the_counters_flag() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).define("pfknock", "idle", true);
        for name in ["ssh", "idle"] {
            let t = tref("pfknock", name);
            k.add(&t, &[net("198.51.100.7")]).unwrap();
            model(&mut k).traffic("pfknock", name, ip("198.51.100.7"), 3, 180);
            let e = k.entries(&t).unwrap()[0];
            let counts = name == "idle" || l.tflag_counters.is_none();
            assert_eq!(e.counted, counts, "{} {name}", l.os);
            assert_eq!(
                (e.packets, e.bytes),
                if counts { (3, 180) } else { (0, 0) },
                "{} {name}",
                l.os
            );
            assert_eq!(e.tzero, NOW, "tzero is reported without counters too");
        }
    }
}

#[test]
fn const_tables_refuse_changes() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).define_const("pfknock", "ssh_allow", &[ip("198.51.100.7")]);
        let e = k
            .add(&tref("pfknock", "ssh_allow"), &[net("198.51.100.8")])
            .unwrap_err();
        assert!(
            e.to_string().ends_with(
                "DIOCRADDADDRS: operation not permitted (table is const, or securelevel)"
            ),
            "{e}"
        );
        assert!(
            k.delete(&tref("pfknock", "ssh_allow"), &[net("198.51.100.7")])
                .is_err()
        );
    }
}

#[test]
fn create_tables_and_anchor() {
    for (kr, l) in OSES {
        let mut m = Model::new(kr, NOW);
        m.define("", "unrelated", false);
        let mut k = PfTables::new(m, l);
        let f = TableFlags {
            persist: true,
            counters: true,
        };
        let n = k
            .create(&[
                (tref("pf/knock", "ssh"), f),
                (
                    tref("pf/knock", "ssh_s1"),
                    TableFlags {
                        persist: true,
                        counters: false,
                    },
                ),
            ])
            .unwrap();
        assert_eq!(n, 2, "{}", l.os);
        assert_eq!(
            k.create(&[(tref("pf/knock", "ssh"), f)]).unwrap(),
            0,
            "exists already"
        );
        let flags = model(&mut k).table_flags("pf/knock", "ssh").unwrap();
        assert_eq!(flags & abi::PFR_TFLAG_PERSIST, abi::PFR_TFLAG_PERSIST);
        assert_eq!(
            flags & abi::PFR_TFLAG_COUNTERS != 0,
            l.tflag_counters.is_some(),
            "{}",
            l.os
        );
        assert_eq!(
            k.table_stats(&AnchorName::new("pf/knock").unwrap())
                .unwrap()
                .len(),
            2
        );
    }
}

/// The model's own rules, on hand-made requests marshal would never send.
#[test]
fn model_checks_like_the_kernel() {
    for (kr, l) in OSES {
        let mut m = Model::new(kr, NOW);
        m.define("pfknock", "ssh", false);
        let mut ioc = vec![0u8; l.ioc_size];
        ioc[l.io_table + l.t_name..l.io_table + l.t_name + 3].copy_from_slice(b"ssh");
        ioc[l.io_table + l.t_anchor..l.io_table + l.t_anchor + 7].copy_from_slice(b"pfknock");
        let set = |ioc: &mut Vec<u8>, esize: i32, size: i32, flags: i32| {
            ioc[l.io_esize..l.io_esize + 4].copy_from_slice(&esize.to_ne_bytes());
            ioc[l.io_size..l.io_size + 4].copy_from_slice(&size.to_ne_bytes());
            ioc[l.io_flags..l.io_flags + 4].copy_from_slice(&flags.to_ne_bytes());
        };
        let req = l.request(abi::N_ADDADDRS);
        let mut addr = vec![0u8; l.addr_size];
        addr[l.a_addr..l.a_addr + 4].copy_from_slice(&[198, 51, 100, 7]);
        addr[l.a_af] = abi::AF_INET;
        addr[l.a_net] = 24; // host bits past /24
        set(&mut ioc, l.addr_size as i32, 1, 0);
        assert_eq!(
            m.ioctl(req, &mut ioc, &mut addr),
            Err(libc::EINVAL),
            "{} host bits",
            l.os
        );
        addr[l.a_net] = 32;
        addr[l.a_fback] = abi::PFR_FB_ADDED;
        assert_eq!(
            m.ioctl(req, &mut ioc, &mut addr),
            Err(libc::EINVAL),
            "{} fback must be 0",
            l.os
        );
        addr[l.a_fback] = 0;
        set(&mut ioc, l.addr_size as i32 + 4, 1, 0);
        assert_eq!(
            m.ioctl(req, &mut ioc, &mut addr),
            Err(libc::ENODEV),
            "{} esize",
            l.os
        );
        set(&mut ioc, l.addr_size as i32, 1, abi::PFR_FLAG_ALLRSETS);
        assert_eq!(
            m.ioctl(req, &mut ioc, &mut addr),
            Err(libc::EINVAL),
            "{} flag not admitted",
            l.os
        );
        set(
            &mut ioc,
            l.addr_size as i32,
            1,
            abi::PFR_FLAG_DUMMY | abi::PFR_FLAG_FEEDBACK,
        );
        assert_eq!(m.ioctl(req, &mut ioc, &mut addr), Ok(()));
        assert_eq!(
            addr[l.a_fback],
            abi::PFR_FB_ADDED,
            "DUMMY still gives feedback"
        );
        assert!(
            m.dump("pfknock", "ssh").unwrap().is_empty(),
            "DUMMY changes nothing"
        );
        // The request number carries the struct size: 1100 bytes is not ours.
        assert_eq!(
            m.ioctl(abi::iowr(1100, abi::N_ADDADDRS), &mut ioc, &mut addr),
            Err(libc::ENOTTY)
        );
        // A name with bytes after its NUL is invalid.
        ioc[l.io_table + l.t_name + 10] = b'x';
        addr[l.a_fback] = 0;
        set(&mut ioc, l.addr_size as i32, 1, 0);
        assert_eq!(
            m.ioctl(req, &mut ioc, &mut addr),
            Err(libc::EINVAL),
            "{} name padding",
            l.os
        );
    }
}

#[test]
fn a_short_read_leaves_what_the_kernel_had() {
    for (kr, l) in OSES {
        let mut m = Model::new(kr, NOW);
        m.define("pfknock", "ssh", false);
        m.overload("pfknock", "ssh", ip("198.51.100.7"));
        m.overload("pfknock", "ssh", ip("198.51.100.8"));
        let mut ioc = vec![0u8; l.ioc_size];
        ioc[l.io_table + l.t_name..l.io_table + l.t_name + 3].copy_from_slice(b"ssh");
        ioc[l.io_table + l.t_anchor..l.io_table + l.t_anchor + 7].copy_from_slice(b"pfknock");
        ioc[l.io_esize..l.io_esize + 4].copy_from_slice(&(l.astats_size as i32).to_ne_bytes());
        ioc[l.io_size..l.io_size + 4].copy_from_slice(&1i32.to_ne_bytes());
        let mut buf = vec![0xAAu8; l.astats_size];
        assert_eq!(
            m.ioctl(l.request(abi::N_GETASTATS), &mut ioc, &mut buf),
            Ok(())
        );
        assert_eq!(
            i32::from_ne_bytes(ioc[l.io_size..l.io_size + 4].try_into().unwrap()),
            2
        );
        // FreeBSD copies out an unzeroed kernel buffer (no M_ZERO): the
        // caller must not read a short answer, and marshal does not.
        let untouched = buf.iter().all(|&b| b == 0xAA);
        assert_eq!(
            untouched, !kr.short_read_garbage,
            "{} {}",
            kr.os, kr.version
        );
    }
}

#[test]
fn openbsd_counts_lazily_and_forgets_on_clear() {
    // OpenBSD allocates an entry's counters on its first counted packet and
    // frees them on CLRASTATS: NOCOUNT before and after. FreeBSD keeps
    // them from insertion in a `counters` table; macOS always counts.
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).define("pfknock", "idle", true);
        let t = tref("pfknock", "idle");
        k.add(&t, &[net("198.51.100.7")]).unwrap();
        let e = k.entries(&t).unwrap()[0];
        assert_eq!(e.counted, !kr.lazy_counters, "{} {}", kr.os, kr.version);
        assert_eq!(e.tzero, NOW);
        model(&mut k).traffic("pfknock", "idle", ip("198.51.100.7"), 2, 120);
        let e = k.entries(&t).unwrap()[0];
        assert!(e.counted && e.packets == 2, "{} {}", kr.os, kr.version);
        k.pf.clr_astats(&t, &[net("198.51.100.7")]).unwrap();
        let e = k.entries(&t).unwrap()[0];
        assert_eq!(e.counted, !kr.lazy_counters, "{} {}", kr.os, kr.version);
        assert_eq!(e.packets, 0);
    }
}

#[test]
fn gettstats_is_not_capped_by_request_maxcount() {
    let mut m = Model::new(&kmodel::FREEBSD_14, NOW);
    for n in ["a", "b", "c", "d"] {
        m.define("pfknock", n, false);
    }
    m.maxcount = 2;
    let mut k = PfTables::new(m, &freebsd::LAYOUT);
    k.pf.set_maxcount(2);
    let st = k.table_stats(&AnchorName::new("pfknock").unwrap()).unwrap();
    assert_eq!(st.len(), 4, "four tables, though the cap is 2");
    // Address requests are capped: five hosts go in three requests.
    let before = model(&mut k).count(abi::N_ADDADDRS);
    assert_eq!(k.add(&tref("pfknock", "a"), &hosts(5, 0)).unwrap(), 5);
    assert_eq!(model(&mut k).count(abi::N_ADDADDRS) - before, 3);
}

#[test]
fn an_esize_mismatch_is_reported_as_such() {
    let mut k = kernel(&kmodel::FREEBSD_14, &freebsd::LAYOUT);
    model(&mut k).fail_next = Some((abi::N_GETASTATS, libc::ENODEV));
    let e = k.entries(&tref("pfknock", "ssh")).unwrap_err().to_string();
    assert!(
        e.contains("pfrio_esize") && !e.contains("not loaded"),
        "{e}"
    );
    // And the model itself answers ENODEV to a wrong esize (OpenBSD's 52-byte
    // pfr_addr sent to FreeBSD's 20-byte one).
    let mut m = Model::new(&kmodel::FREEBSD_14, NOW);
    m.define("pfknock", "ssh", false);
    let mut pf = pfknock::pf::marshal::Pf::new(m, &openbsd::LAYOUT);
    let e = pf.add_addrs(&tref("pfknock", "ssh"), &[net("198.51.100.7")]);
    assert!(e.is_err(), "a foreign layout must not be accepted");
}

#[test]
fn counters_never_flip_on_a_populated_live_table() {
    use pfknock::config::Config;
    let conf = |mode: &str| {
        Config::parse(
            &format!(
                "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nexpire = \"{mode}\"\n"
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
        .0
    };
    let (age, idle) = (conf("age"), conf("idle"));
    let anchor = AnchorName::new("pfknock").unwrap();
    for (kr, l) in OSES {
        if l.tflag_counters.is_none() {
            continue; // macOS: idle is refused at check time instead
        }
        let mut k = kernel(kr, l);
        // ssh's auth table loaded as `persist` (age), one authorization in it.
        let auth = age.services[0]
            .tables()
            .into_iter()
            .find(|(_, r)| *r == pfknock::config::Role::Auth)
            .unwrap()
            .0;
        model(&mut k).define("pfknock", auth.as_str(), false);
        k.add(&tref("pfknock", auth.as_str()), &[net("198.51.100.7")])
            .unwrap();
        let live = k.table_stats(&anchor).unwrap();
        assert!(pfknock::backend::check_counter_flips(&age, &live).is_ok());
        let e = pfknock::backend::check_counter_flips(&idle, &live).unwrap_err();
        assert!(
            e.to_string().contains("cannot turn on counters"),
            "{} {}: {e}",
            kr.os,
            kr.version
        );
        // What the guard prevents: on FreeBSD 13.0 loading it anyway is a
        // kernel panic.
        model(&mut k).define("pfknock", auth.as_str(), true);
        assert_eq!(
            model(&mut k).panicked.is_some(),
            kr.counters_flip_crashes,
            "{} {}",
            kr.os,
            kr.version
        );
        // An empty table may change: nothing is kept.
        let mut k = kernel(kr, l);
        model(&mut k).define("pfknock", auth.as_str(), false);
        let live = k.table_stats(&anchor).unwrap();
        assert!(pfknock::backend::check_counter_flips(&idle, &live).is_ok());
    }
}

#[test]
fn anchor_components_fit_pf_anchor_name_size() {
    let ok = "a".repeat(abi::ANCHOR_NAME_SIZE - 1);
    assert!(AnchorName::new(&format!("pfknock/{ok}")).is_ok());
    let long = "a".repeat(abi::ANCHOR_NAME_SIZE);
    let e = AnchorName::new(&format!("pfknock/{long}")).unwrap_err();
    assert!(e.contains("PF_ANCHOR_NAME_SIZE"), "{e}");
}

#[test]
fn every_counter_slot_is_summed() {
    // Entry counters in both directions, table counters in every
    // [dir][op] slot, XPASS (the last op) included.
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).define("pfknock", "idle", true);
        let t = tref("pfknock", "idle");
        k.add(&t, &[net("198.51.100.7")]).unwrap();
        let m = model(&mut k);
        m.traffic_dir("pfknock", "idle", ip("198.51.100.7"), 3, 300, false);
        m.traffic_dir("pfknock", "idle", ip("198.51.100.7"), 4, 400, true);
        m.xpass("pfknock", "idle", 5);
        let e = k.entries(&t).unwrap()[0];
        assert_eq!((e.packets, e.bytes), (7, 700), "{} {}", kr.os, kr.version);
        let st = k.table_stats(&AnchorName::new("pfknock").unwrap()).unwrap();
        let idle = st.iter().find(|s| s.name == "idle").unwrap();
        assert_eq!(idle.packets, 12, "{} {}", kr.os, kr.version);
    }
}

#[test]
fn a_referenced_but_undefined_table_is_not_active() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).reference_only("pfknock", "ghost");
        let st = k.table_stats(&AnchorName::new("pfknock").unwrap()).unwrap();
        let g = st.iter().find(|s| s.name == "ghost").unwrap();
        assert!(!g.active, "{} {}", kr.os, kr.version);
        assert!(st.iter().find(|s| s.name == "ssh").unwrap().active);
    }
}

#[test]
fn only_the_missing_anchor_errno_means_a_missing_anchor() {
    for (kr, l) in OSES {
        let mut k = kernel(kr, l);
        model(&mut k).fail_next = Some((abi::N_GETTSTATS, libc::EACCES));
        let e = k
            .table_stats(&AnchorName::new("pfknock").unwrap())
            .unwrap_err();
        assert!(
            !e.outcome().is_some_and(|o| o.is_missing()),
            "{} {}: {e}",
            kr.os,
            kr.version
        );
        let e = k
            .table_stats(&AnchorName::new("nosuch").unwrap())
            .unwrap_err();
        assert!(e.outcome().is_some_and(|o| o.is_missing()), "{e}");
    }
}

#[test]
fn a_table_of_exactly_request_maxcount_entries_can_be_read() {
    let mut m = Model::new(&kmodel::FREEBSD_14, NOW);
    m.define("pfknock", "ssh", false);
    m.maxcount = 100;
    let mut k = PfTables::new(m, &freebsd::LAYOUT);
    k.pf.set_maxcount(100);
    let t = tref("pfknock", "ssh");
    k.add(&t, &hosts(100, 0)).unwrap();
    assert_eq!(k.entries(&t).unwrap().len(), 100);
    k.add(&t, &hosts(101, 0)).unwrap();
    let e = k.entries(&t).unwrap_err().to_string();
    assert!(e.contains("request_maxcount"), "{e}");
}

// ---- the daemon's move out of pf's intake -----------------------------------
//
// `tables::move_hosts` moves a knock from the intake (`T_renew`) into the
// authorized table. A revoke (a deletion from the intake, then from the
// authorized table, as `pfknock revoke` and `flush` do them) may come
// between any two of its requests: the host must end in neither table,
// whenever it came.

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

/// A revoke that deletes `h` from the intake before request `a` and from
/// `<ssh>` before request `b` of a move: its deletions that the move's
/// requests did not reach (`racing` played the others), played after it.
fn revoked_after(t: &mut PfTables<Racing>, (a, b): (usize, usize), h: IpAddr) {
    for (n, table) in [(a, "ssh_renew"), (b, "ssh")] {
        if n >= t.pf.dev.calls {
            t.pf.dev.m.remove("pfknock", table, h);
        }
    }
}

fn racing(
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
        let mut t = racing(k, l, Vec::new());
        let hosts: Vec<Net> = ["198.18.0.1", "198.18.0.2", "fd00::3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        for h in &hosts {
            t.pf.dev.m.overload("pfknock", "ssh_renew", h.addr());
        }
        let kept = move_hosts(
            &mut t,
            &tref("pfknock", "ssh_renew"),
            &tref("pfknock", "ssh"),
            &hosts,
        )
        .unwrap();
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
                let mut t = racing(k, l, vec![(a, "ssh_renew", h), (b, "ssh", h)]);
                t.pf.dev.m.overload("pfknock", "ssh_renew", h);
                t.pf.dev.m.overload("pfknock", "ssh_renew", other);
                let both = [Net::host(h), Net::host(other)];
                let kept = move_hosts(
                    &mut t,
                    &tref("pfknock", "ssh_renew"),
                    &tref("pfknock", "ssh"),
                    &both,
                )
                .unwrap();
                // What is left after the revoke's own deletions, as the
                // test plays them after the move.
                revoked_after(&mut t, (a, b), h);
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

/// The daemon moves a host that knocked again out of the intake too (it
/// is in the authorized table already, unless someone deleted it there
/// by hand): a revoke at any point of that move still leaves it out, and
/// the other host that knocked again stays in.
#[test]
fn a_revoke_at_any_point_of_a_renewal_move_leaves_the_host_out() {
    let h: IpAddr = "198.18.0.9".parse().unwrap();
    let other: IpAddr = "198.18.0.10".parse().unwrap();
    for (k, l) in OSES {
        for a in 0..=3 {
            for b in a..=3 {
                let mut t = racing(k, l, vec![(a, "ssh_renew", h), (b, "ssh", h)]);
                for x in [h, other] {
                    t.pf.dev.m.overload("pfknock", "ssh", x);
                    t.pf.dev.m.overload("pfknock", "ssh_renew", x);
                }
                let kept = move_hosts(
                    &mut t,
                    &tref("pfknock", "ssh_renew"),
                    &tref("pfknock", "ssh"),
                    &[Net::host(h), Net::host(other)],
                )
                .unwrap();
                revoked_after(&mut t, (a, b), h);
                let case = format!("{} {}: revoke at {a}, {b}", k.os, k.version);
                assert_eq!(held(&t, "ssh"), ["198.18.0.10"], "{case}");
                assert!(held(&t, "ssh_renew").is_empty(), "{case}");
                // Neither was added: both were there, or the one the
                // revoke took out of it was taken back.
                assert!(kept.is_empty(), "{case}");
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
        let mut t = racing(k, l, vec![(0, "ssh_renew", h)]);
        t.pf.dev.m.overload("pfknock", "ssh", h);
        t.pf.dev.m.overload("pfknock", "ssh_renew", h);
        let kept = move_hosts(
            &mut t,
            &tref("pfknock", "ssh_renew"),
            &tref("pfknock", "ssh"),
            &[Net::host(h)],
        )
        .unwrap();
        assert!(kept.is_empty(), "{}", k.os);
        assert_eq!(held(&t, "ssh"), ["198.18.0.9"], "{}", k.os);
    }
}

#[test]
fn a_full_pool_fails_the_move_and_changes_nothing() {
    let h: IpAddr = "198.18.0.9".parse().unwrap();
    for (k, l) in OSES {
        let mut t = racing(k, l, Vec::new());
        t.pf.dev.m.overload("pfknock", "ssh_renew", h);
        t.pf.dev.m.table_entries_limit = 1;
        let e = move_hosts(
            &mut t,
            &tref("pfknock", "ssh_renew"),
            &tref("pfknock", "ssh"),
            &[Net::host(h)],
        );
        assert!(e.is_err(), "{}", k.os);
        assert_eq!(held(&t, "ssh_renew"), ["198.18.0.9"], "{}", k.os);
        assert!(held(&t, "ssh").is_empty(), "{}", k.os);
    }
}
