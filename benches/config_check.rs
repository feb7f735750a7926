//! Config checks stay near-linear: parse and check a config whose allow list
//! has 10k, 100k and 1M entries (distinct /32s and /64s, shuffled), and
//! one with 1k to 10k services (each its own knock port and table), and
//! print the time of each. Targets: 1M entries under 2 s, 10k services
//! under 1 s.
//!
//!     cargo bench --bench config_check

use std::path::Path;
use std::time::Instant;

use pfknock::config::Config;

fn text(n: usize) -> String {
    let mut t =
        String::from("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nallow = [\n");
    // A fixed permutation: i * 2654435761 mod 2^32 visits distinct values.
    for i in 0..n as u64 {
        let x = (i.wrapping_mul(2_654_435_761) & 0xffff_ffff) as u32;
        if i % 4 == 0 {
            t.push_str(&format!("\"fd00:{:x}:{:x}::/64\",\n", x >> 16, x & 0xffff));
        } else {
            t.push_str(&format!("\"{}\",\n", std::net::Ipv4Addr::from(x)));
        }
    }
    t.push_str("]\n");
    t
}

/// `n` services, each with its own protected port, knock port, close
/// port and table. (Services that all protect one port are quadratic by
/// nature: each pair is warned of.)
fn services(n: usize) -> String {
    let mut t = String::new();
    for i in 0..n {
        t.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nprotect = [{}]\nknock = [{}]\nclose = {}\n",
            1 + i,
            20_000 + i,
            40_000 + i
        ));
    }
    t
}

fn main() {
    for n in [1_000, 2_000, 5_000, 10_000] {
        let src = services(n);
        let t = Instant::now();
        let (cfg, _) = Config::parse(&src, Path::new("bench.toml")).expect("a valid config");
        let took = t.elapsed();
        assert_eq!(cfg.services.len(), n);
        println!(
            "{n:>9} services: parse and check {:>7.1} ms ({:.1} us a service)",
            took.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1e6 / n as f64
        );
    }
    for n in [10_000, 100_000, 1_000_000] {
        let src = text(n);
        let t = Instant::now();
        let (cfg, _) = Config::parse(&src, Path::new("bench.toml")).expect("a valid config");
        let took = t.elapsed();
        assert_eq!(cfg.services[0].allow.len(), n);
        println!(
            "{n:>9} allow entries: parse and check {:>7.1} ms ({:.2} us an entry, {} MB of text)",
            took.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1e6 / n as f64,
            src.len() / 1_000_000
        );
    }
}
