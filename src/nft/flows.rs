//! The TCP connections to protected ports that are open when the table is
//! loaded (`/proc/net/tcp`, `tcp6`), kept by the sets `kept.4` and `kept.6`.
#![forbid(unsafe_code)]

/// /proc/net/tcp and tcp6 of this network namespace, each with whether it
/// is tcp6: the TCP sockets open now. Read once a load, for all its kept
/// sets: each read walks the kernel's whole table of established sockets,
/// which all namespaces share, whatever this one holds (measured here,
/// 24 GiB of RAM: about 6 ms a read; read once a kept set, two a service,
/// it took 1.1 s of a 1.2 s load of 50 services).
pub(super) fn proc_tcp() -> [(String, bool); 2] {
    [("/proc/net/tcp", false), ("/proc/net/tcp6", true)]
        .map(|(file, six)| (std::fs::read_to_string(file).unwrap_or_default(), six))
}

/// The TCP connections to this host's `ports` that are established in
/// `texts` (`proc_tcp`), as `peer . peer port . our port` elements of a
/// kept set of one family (an IPv4 peer of an IPv6 socket counts as
/// IPv4): each connection
/// once, in the order the kernel lists them (a busy server has tens of
/// thousands; a set tells a repeat, not a scan of what came before).
pub(super) fn flows_of(
    texts: &[(String, bool)],
    ports: &[crate::name::PortRange],
    v6: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (text, six) in texts {
        for c in parse_proc_tcp(text, *six) {
            let peer = match c.peer {
                std::net::IpAddr::V6(a) => a
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(a), std::net::IpAddr::V4),
                a => a,
            };
            let ours = ports
                .iter()
                .any(|r| r.lo.get() <= c.port && c.port <= r.hi.get());
            if c.established
                && ours
                && peer.is_ipv6() == v6
                && seen.insert((peer, c.peer_port, c.port))
            {
                out.push(format!("{peer} . {} . {}", c.peer_port, c.port));
            }
        }
    }
    out
}

/// One socket of /proc/net/tcp{,6}.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ProcTcp {
    pub(super) port: u16,
    pub(super) peer: std::net::IpAddr,
    pub(super) peer_port: u16,
    pub(super) established: bool,
}

/// The sockets of a /proc/net/tcp (or tcp6) text: `sl local rem st ...`,
/// addresses in hex as the kernel's 32-bit words in host order, ports in
/// hex; state 01 is ESTABLISHED (include/net/tcp_states.h). Lines that do
/// not read are skipped.
pub(super) fn parse_proc_tcp(text: &str, v6: bool) -> Vec<ProcTcp> {
    fn endpoint(s: &str, v6: bool) -> Option<(std::net::IpAddr, u16)> {
        let (a, p) = s.split_once(':')?;
        let port = u16::from_str_radix(p, 16).ok()?;
        let words: Vec<u32> = (0..a.len() / 8)
            .map(|i| u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok())
            .collect::<Option<_>>()?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let ip = match (v6, bytes.len()) {
            (false, 4) => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            (true, 16) => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
            _ => return None,
        };
        Some((ip, port))
    }
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (_, port) = endpoint(f.get(1)?, v6)?;
            let (peer, peer_port) = endpoint(f.get(2)?, v6)?;
            Some(ProcTcp {
                port,
                peer,
                peer_port,
                established: *f.get(3)? == "01",
            })
        })
        .collect()
}
