//! The names' and values' parsers and printers.
use super::*;

#[test]
fn table_names() {
    assert!(TableName::new("portknock_ssh").is_ok());
    assert!(TableName::new(&"a".repeat(31)).is_ok());
    assert!(
        TableName::new(&"a".repeat(32))
            .unwrap_err()
            .contains("32 bytes")
    );
    assert!(TableName::new("a b").unwrap_err().contains("' '"));
    assert!(TableName::new("x>").is_err());
    assert!(TableName::new("").is_err());
}

#[test]
fn anchors() {
    assert!(AnchorName::new("pfknock").is_ok());
    assert!(AnchorName::new("outer/inner").is_ok());
    assert!(AnchorName::new("_pf").is_err());
    assert!(AnchorName::new("/x").is_err());
    assert!(AnchorName::new("a\"b").is_err());
    assert!(AnchorName::new("a//b").is_err());
}

#[test]
fn durations() {
    let p = |s: &str| s.parse::<Secs>().map(|d| d.0);
    assert_eq!(p("60s"), Ok(60));
    assert_eq!(p("10m"), Ok(600));
    assert_eq!(p("1h30m"), Ok(5400));
    assert_eq!(p("1h 30m"), Ok(5400));
    assert_eq!(p("2d"), Ok(172800));
    assert_eq!(p("0s"), Ok(0));
    assert!(p("60").unwrap_err().contains("needs a unit"));
    assert!(
        p("1M").is_err(),
        "no month unit: m and M are too easy to confuse"
    );
    assert!(p("s").is_err());
    assert!(p("").is_err());
    assert!(p("99999999999999999999s").is_err());
    assert_eq!(Secs(5400).to_string(), "1h30m");
    assert_eq!(Secs(61).to_string(), "1m1s");
    assert_eq!(Secs(0).to_string(), "0s");
}

#[test]
fn rates() {
    let r: Rate = "5/15".parse().unwrap();
    assert_eq!((r.conns, r.secs), (5, 15));
    assert!("5".parse::<Rate>().unwrap_err().contains("expected N/S"));
    assert!("0/15".parse::<Rate>().is_err());
    assert!("5/0".parse::<Rate>().is_err());
    assert!("+5/15".parse::<Rate>().is_err());
    assert!("5/ 15".parse::<Rate>().is_err());
}

#[test]
fn ports() {
    assert!(Port::new(0).is_err());
    assert!(Port::new(65536).is_err());
    assert_eq!(
        "6000-6010".parse::<PortRange>().unwrap().to_string(),
        "6000:6010"
    );
    assert_eq!("22".parse::<PortRange>().unwrap().to_string(), "22");
    assert!("10-5".parse::<PortRange>().is_err());
}

#[test]
fn nets() {
    let n: Net = "198.51.100.0/24".parse().unwrap();
    assert!(n.contains("198.51.100.7".parse().unwrap()));
    assert!(!n.contains("198.51.101.7".parse().unwrap()));
    assert!(!n.contains("2001:db8::1".parse().unwrap()));
    assert!(
        "198.51.100.7/24"
            .parse::<Net>()
            .unwrap_err()
            .contains("host bits")
    );
    assert!("198.51.100.0/33".parse::<Net>().is_err());
    assert!("2001:db8::/32".parse::<Net>().is_ok());
    assert!("example.org".parse::<Net>().is_err());
    assert_eq!(
        "198.51.100.7/32".parse::<Net>().unwrap().to_string(),
        "198.51.100.7"
    );
    let any: Net = "0.0.0.0/0".parse().unwrap();
    assert!(any.contains("203.0.113.1".parse().unwrap()));
}

/// A prefix longer than the family's (none parses, but a kernel could
/// report one) makes no arithmetic panic: the whole width is the network.
#[test]
fn an_overlong_prefix_panics_nothing() {
    let v4 = Net {
        addr: "198.51.100.7".parse().unwrap(),
        prefix: 200,
    };
    assert!(v4.contains("198.51.100.7".parse().unwrap()));
    assert_eq!(v4.range().0, v4.range().1);
    let v6 = Net {
        addr: "2001:db8::1".parse().unwrap(),
        prefix: 255,
    };
    assert!(v6.contains("2001:db8::1".parse().unwrap()));
    assert_eq!(v6.range().0, v6.range().1);
}

/// Net's invariant holds for what comes from a kernel too: `Net::new`
/// refuses a prefix longer than the family's and host bits.
#[test]
fn a_net_from_raw_parts_is_checked() {
    let v4: IpAddr = "198.51.100.0".parse().unwrap();
    assert_eq!(Net::new(v4, 24), Some("198.51.100.0/24".parse().unwrap()));
    assert_eq!(Net::new(v4, 33), None, "longer than IPv4's 32");
    assert_eq!(
        Net::new("198.51.100.7".parse().unwrap(), 24),
        None,
        "host bits"
    );
    assert_eq!(Net::new("2001:db8::".parse().unwrap(), 129), None);
    assert_eq!(
        Net::new("2001:db8::1".parse().unwrap(), 128),
        Some(Net::host("2001:db8::1".parse().unwrap()))
    );
}

#[test]
fn addresses_no_connection_comes_from() {
    let why = |s: &str| s.parse::<Net>().unwrap().never_a_source();
    let says = |s: &str, w: &str| {
        let got = why(s).unwrap_or_else(|| panic!("{s}: taken"));
        assert!(got.contains(w), "{s}: {got}");
    };
    says("::ffff:198.18.7.2", "give 198.18.7.2");
    says("::ffff:198.18.0.0/112", "give 198.18.0.0/16");
    says("::ffff:0:0/96", "give 0.0.0.0/0");
    says("224.0.0.1", "multicast");
    says("239.255.0.0/16", "multicast");
    says("224.0.0.0/4", "multicast");
    says("ff02::1", "multicast");
    says("ff00::/8", "multicast");
    says("255.255.255.255", "broadcast");
    says("0.0.0.0", "unspecified");
    says("::", "unspecified");
    // What some packet can come from, or a network reaching past the
    // ranges, is taken.
    for s in [
        "198.18.7.2",
        "fd00::1",
        "::1",
        "127.0.0.1",
        "0.0.0.0/0",
        "::/0",
        "0.0.0.0/8",
        "::fffe:0:0/95",
        "::fffe:ffff:ffff",
        "::1:0:0:0",
        "192.0.0.0/3",
        "223.255.255.255",
        "240.0.0.1",
        "255.255.255.254",
        "fe00::/7",
        "feff::1",
        "::ffff:0:1:0",
    ] {
        assert_eq!(why(s), None, "{s}");
    }
}
