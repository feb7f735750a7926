//! What `check` accepts, nftables loads: random valid configs rendered to
//! nftables and checked by `nft -c` in a scratch network namespace (root
//! only; elsewhere it says it was skipped).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pfknock::config::Config;
use pfknock::render;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};

fn net() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            any::<u32>(),
            prop::sample::select(vec![0u8, 1, 12, 24, 29, 32, 32, 32])
        )
            .prop_map(|(a, p)| {
                let m = if p == 0 {
                    0
                } else {
                    a & (u32::MAX << (32 - p))
                };
                format!("{}/{p}", std::net::Ipv4Addr::from(m))
            }),
        (
            any::<u128>(),
            prop::sample::select(vec![0u8, 1, 8, 48, 64, 127, 128])
        )
            .prop_map(|(a, p)| {
                let m = if p == 0 {
                    0
                } else {
                    a & (u128::MAX << (128 - p))
                };
                format!("{}/{p}", std::net::Ipv6Addr::from(m))
            }),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "1s", "59s", "10m", "1h30m", "2d", "520w", "5200w", "100w3d",
    ])
    .prop_map(str::to_owned)
}

fn service(i: usize) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["ssh", "_x", "a-b", "Web9", "s_m1", "t_s1"]),
        0usize..=4,
        (1u32..=300, 1u32..=604800),
        duration(),
        duration(),
        prop::collection::vec(net(), 0..4),
        prop::collection::vec(net(), 0..4),
        prop::sample::select(vec!["any", "inet", "inet6"]),
        prop::sample::select(vec!["age", "idle"]),
        prop::sample::select(vec!["\"tcp\"", "\"udp\"", "[\"tcp\", \"udp\"]"]),
        (any::<bool>(), any::<bool>(), 1u64..=16_777_216, 1u8..=128),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            move |(
                name,
                knocks,
                (n, s),
                ttl,
                window,
                from,
                allow,
                fam,
                exp,
                proto,
                (renew, on, size, prefix6),
                (shared, close),
            )| {
                let fits = |x: &String| match fam {
                    "inet" => !x.contains(':'),
                    "inet6" => x.contains(':'),
                    _ => true,
                };
                let from: Vec<String> = from.into_iter().filter(fits).collect();
                let allow: Vec<String> = allow.into_iter().filter(fits).collect();
                let knock: Vec<String> = (0..knocks)
                    .map(|k| (1000 + 10 * i + k).to_string())
                    .collect();
                let q = |v: &[String]| {
                    v.iter()
                        .map(|x| format!("\"{x}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                // A port every service may protect (a warning): the rules
                // all services share then hold it more than once.
                let also = if shared { ", 2222" } else { "" };
                let mut t = format!(
                    "[[service]]\nname = \"{name}{i}\"\nprotect = [{}, \"{}-{}\"{also}]\n\
                     rate = \"{n}/{s}\"\nttl = \"{ttl}\"\nexpire = \"{exp}\"\nfamily = \"{fam}\"\n\
                     proto = {proto}\nrenew = {renew}\nsize = {size}\nprefix6 = {prefix6}\n",
                    2000 + i,
                    3000 + 10 * i,
                    3005 + 10 * i,
                );
                // No knock port: signed knocks only.
                if knock.is_empty() {
                    t.push_str(&format!(
                        "spa = {{ port = {}, keys = \"/etc/k\" }}\n",
                        6000 + i
                    ));
                } else {
                    t.push_str(&format!("knock = [{}]\n", knock.join(", ")));
                }
                if close {
                    t.push_str(&format!("close = {}\n", 1009 + 10 * i));
                }
                if knocks > 1 {
                    t.push_str(&format!("window = \"{window}\"\n"));
                }
                if !from.is_empty() {
                    t.push_str(&format!("from = [{}]\n", q(&from)));
                }
                if !allow.is_empty() {
                    t.push_str(&format!("allow = [{}]\n", q(&allow)));
                }
                if on {
                    t.push_str("on = \"eth0\"\n");
                }
                t
            },
        )
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn nft_accepts_every_config_check_accepts() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        panic!("this test needs root");
    }
    let ns = Ns(format!("pfk-nc-{}", std::process::id()));
    if !Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: cannot make a network namespace");
        return;
    }
    let strategy = (service(0), prop::option::of(service(1)))
        .prop_map(|(a, b)| a + "\n" + &b.unwrap_or_default());
    let mut runner = TestRunner::new(PtConfig {
        cases: 300,
        ..PtConfig::default()
    });
    let (loaded, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&strategy, |text| {
            let cfg = match Config::parse(&text, Path::new("p.toml")) {
                Ok((cfg, _)) => cfg,
                Err(e) => {
                    if std::env::var_os("SHOW_REFUSED").is_some() {
                        eprintln!("refused: {e}");
                    }
                    refused.set(refused.get() + 1);
                    return Ok(());
                }
            };
            // The table, and the closed one `unload` leaves.
            for out in [
                render::nft::render(&cfg, "p.toml"),
                render::nft::render_closed(&cfg, "p.toml"),
            ] {
                let mut c = Command::new("ip")
                    .args(["netns", "exec", &ns.0, "nft", "-c", "-f", "-"])
                    .stdin(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                c.stdin.take().unwrap().write_all(out.as_bytes()).unwrap();
                let o = c.wait_with_output().unwrap();
                prop_assert!(
                    o.status.success(),
                    "nft -c refused what check accepted:\n{}\n{}\n{}",
                    text,
                    String::from_utf8_lossy(&o.stderr),
                    out
                );
            }
            loaded.set(loaded.get() + 1);
            Ok(())
        })
        .unwrap();
    let (loaded, refused) = (loaded.get(), refused.get());
    eprintln!("{loaded} configs accepted by check and by nft -c, {refused} refused by check");
    assert!(
        loaded > 100,
        "the generator must mostly make valid configs ({loaded})"
    );
}
