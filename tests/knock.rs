//! `pfknock knock`, the built binary, against listeners on loopback that
//! record every accepted connection: counts, order, source ports, verify
//! and the ProxyCommand mode.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// A listener that reports (its port, the peer's address) per connection.
fn listener(addr: &str, tx: Sender<(u16, SocketAddr)>) -> u16 {
    let l = TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            if tx.send((port, s.peer_addr().unwrap())).is_err() {
                break;
            }
        }
    });
    port
}

fn pfknock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args(args)
        .output()
        .unwrap()
}

fn drain(rx: &Receiver<(u16, SocketAddr)>) -> Vec<(u16, SocketAddr)> {
    let mut v = Vec::new();
    while let Ok(x) = rx.recv_timeout(Duration::from_millis(300)) {
        v.push(x);
    }
    v
}

#[test]
fn knocks_each_port_in_order_from_fresh_source_ports() {
    let (tx, rx) = mpsc::channel();
    let ports: Vec<u16> = (0..3)
        .map(|_| listener("127.0.0.1:0", tx.clone()))
        .collect();
    let p: Vec<String> = ports.iter().map(u16::to_string).collect();
    let o = pfknock(&[
        "knock",
        "127.0.0.1",
        &p[0],
        &p[1],
        &p[2],
        "-n",
        "4",
        "-g",
        "50",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "knocked 127.0.0.1 on {}, {}, {} (4 connections each)\n\
             not verified: --verify PORT checks that the port opened\n",
            p[0], p[1], p[2]
        )
    );
    let got = drain(&rx);
    let order: Vec<u16> = got.iter().map(|(p, _)| *p).collect();
    let want: Vec<u16> = ports.iter().flat_map(|p| [*p; 4]).collect();
    assert_eq!(order, want, "4 connects per port, port after port");
    let mut src: Vec<u16> = got.iter().map(|(_, a)| a.port()).collect();
    src.sort();
    src.dedup();
    assert_eq!(src.len(), 12, "every connect from its own source port");
}

#[test]
fn ports_and_hits_from_a_service() {
    let (tx, rx) = mpsc::channel();
    let a = listener("127.0.0.1:0", tx.clone());
    let b = listener("127.0.0.1:0", tx);
    let dir = common::Scratch::new("knock");
    let conf = dir.join("client.toml");
    std::fs::write(
        &conf,
        format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [{a}, {b}]\nrate = \"2/5\"\n"
        ),
    )
    .unwrap();
    let o = pfknock(&[
        "knock",
        "-c",
        conf.to_str().unwrap(),
        "--service",
        "ssh",
        "-q",
        "127.0.0.1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stderr.is_empty(), "-q");
    let order: Vec<u16> = drain(&rx).iter().map(|(p, _)| *p).collect();
    assert_eq!(order, [a, a, a, b, b, b], "rate 2/5: three connects each");
}

#[test]
fn close_knocks_the_services_close_port_with_its_hits() {
    let (tx, rx) = mpsc::channel();
    let a = listener("127.0.0.1:0", tx.clone());
    let c = listener("127.0.0.1:0", tx);
    let dir = common::Scratch::new("knock-close");
    let conf = dir.join("client.toml");
    let svc = |close: &str| {
        format!(
            "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [{a}]\n{close}rate = \"2/5\"\n"
        )
    };
    std::fs::write(&conf, svc(&format!("close = {c}\n"))).unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "knock",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            "ssh",
            "--close",
        ];
        v.extend_from_slice(extra);
        v.push("127.0.0.1");
        pfknock(&v)
    };
    let o = args(&["-q"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let order: Vec<u16> = drain(&rx).iter().map(|(p, _)| *p).collect();
    assert_eq!(order, [c, c, c], "the close port alone, three connects");
    // Not with --verify: a close knock closes.
    let o = args(&["--verify", "22"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(drain(&rx).is_empty(), "nothing knocked");
    // A service without a close port.
    std::fs::write(&conf, svc("")).unwrap();
    let o = args(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "pfknock: --close: service ssh has no close port\n"
    );
    assert!(drain(&rx).is_empty(), "nothing knocked");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_refused_knock_says_what_it_means() {
    let p = free_port().to_string();
    let start = Instant::now();
    let o = pfknock(&["knock", "127.0.0.1", &p, "-n", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "pfknock: 127.0.0.1:{p}: connection refused: not a pf knock port \
             (pf's synproxy would complete the handshake even with nothing listening)\n"
        )
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn verify_knocks_again_until_the_port_opens() {
    let (tx, rx) = mpsc::channel();
    let k = listener("127.0.0.1:0", tx);
    let target = free_port();
    // The protected port opens 700 ms later, as a deferred overload insert
    // on FreeBSD would open it.
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        let l = TcpListener::bind(("127.0.0.1", target)).unwrap();
        let _ = l.accept();
    });
    let o = pfknock(&[
        "knock",
        "127.0.0.1",
        &k.to_string(),
        "-n",
        "3",
        "--verify",
        &target.to_string(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // One line per knock and its outcome.
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        format!("knocked 127.0.0.1 on {k} (3 connections each)")
    );
    assert_eq!(
        lines[1],
        format!("127.0.0.1:{target}: closed; knocking {k} again (try 2 of 6)")
    );
    assert_eq!(*lines.last().unwrap(), format!("127.0.0.1:{target}: open"));
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| l.contains(": closed; knocking ")),
        "{err}"
    );
    let n = drain(&rx).len();
    assert!(
        n >= 6 && n.is_multiple_of(3),
        "the knock was repeated whole: {n} connects"
    );
    opener.join().unwrap();
}

#[test]
fn verify_gives_up_with_a_clear_error() {
    let (tx, _rx) = mpsc::channel();
    let k = listener("127.0.0.1:0", tx);
    let target = free_port();
    let o = pfknock(&[
        "knock",
        "127.0.0.1",
        &k.to_string(),
        "-n",
        "1",
        "--verify",
        &target.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let mut want = format!("knocked 127.0.0.1 on {k} (1 connection each)\n");
    for t in 2..=6 {
        want += &format!("127.0.0.1:{target}: closed; knocking {k} again (try {t} of 6)\n");
    }
    want += &format!(
        "pfknock: 127.0.0.1:{target}: still closed after knocking 6 time(s): connection refused\n"
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), want);
}

#[test]
fn one_address_family() {
    let Ok(l6) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    let p = l6.local_addr().unwrap().port().to_string();
    drop(l6);
    let (tx, rx) = mpsc::channel();
    let p6 = listener(&format!("[::1]:{p}"), tx);
    let o = pfknock(&["knock", "-6", "-q", "::1", &p6.to_string(), "-n", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(drain(&rx).iter().all(|(_, a)| a.is_ipv6()));
    let o = pfknock(&["knock", "-4", "::1", &p]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "pfknock: ::1: no IPv4 address\n"
    );
}

#[test]
fn usage_errors() {
    assert_eq!(
        pfknock(&["knock", "127.0.0.1"]).status.code(),
        Some(2),
        "no ports"
    );
    assert_eq!(
        pfknock(&["knock", "127.0.0.1", "0"]).status.code(),
        Some(2),
        "port 0"
    );
    assert_eq!(
        pfknock(&["knock", "127.0.0.1", "70000"]).status.code(),
        Some(2)
    );
    assert_eq!(
        pfknock(&["knock", "-4", "-6", "127.0.0.1", "1"])
            .status
            .code(),
        Some(2)
    );
    let o = pfknock(&["knock", "127.0.0.1"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "pfknock: no knock ports: give them, or --service\n"
    );
}

#[test]
fn proxy_mode_relays_an_ssh_like_session() {
    let (tx, rx) = mpsc::channel();
    let k = listener("127.0.0.1:0", tx);
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = echo.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args([
            "knock",
            "--proxy",
            &ep.to_string(),
            "127.0.0.1",
            &k.to_string(),
            "-n",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SSH-2.0-test\r\nsecond line\n").unwrap();
    drop(stdin); // EOF: the proxy half-closes, the echo server closes
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"SSH-2.0-test\r\nsecond line\n");
    assert!(
        o.stderr.is_empty(),
        "nothing but the session on the terminal"
    );
    assert_eq!(drain(&rx).len(), 2, "knocked before connecting");
}

/// A server that accepts and then says nothing, never closing.
fn silent_server() -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_secs(15));
        drop(s);
    });
    (port, h)
}

#[test]
fn proxy_gives_up_on_a_silent_server() {
    let (tx, _rx) = mpsc::channel();
    let k = listener("127.0.0.1:0", tx);
    // ssh's side stays open, nothing moves: --idle ends it, in error.
    let (p, _h) = silent_server();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args([
            "knock",
            "--proxy",
            &p.to_string(),
            "--idle",
            "1",
            "127.0.0.1",
            &k.to_string(),
            "-n",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let o = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing sent either way for 1 s"));

    // ssh's side closes and the server stays silent: out after the grace.
    let (p, _h) = silent_server();
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_pfknock"))
        .args([
            "knock",
            "--proxy",
            &p.to_string(),
            "127.0.0.1",
            &k.to_string(),
            "-n",
            "1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );
}

/// ssh closes its side while the server keeps sending: the proxy ends
/// `CLOSE_GRACE` later all the same, not never.
#[test]
fn proxy_ends_after_ssh_closes_even_if_the_server_keeps_talking() {
    let chatty = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = chatty.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = chatty.accept().unwrap();
        // Bounded: at most a minute of chatter.
        for _ in 0..6000 {
            if s.write_all(b"banner\n").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let s = std::net::TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    // stdin at EOF at once, as when ssh has gone.
    pfknock::knock::relay(s, std::io::empty(), std::io::sink(), Duration::ZERO).unwrap();
    let took = t.elapsed();
    assert!(
        took >= pfknock::knock::CLOSE_GRACE
            && took < pfknock::knock::CLOSE_GRACE + Duration::from_secs(3),
        "{took:?}"
    );
}
