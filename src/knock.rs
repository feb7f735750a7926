//! The client: knock the way pf counts knocks. pf's overload counts only
//! connections whose handshake completes (through synproxy), and trips on
//! the (N+1)-th within the rate's window, so a knock is N+1 full TCP
//! connects per port, in order; a SYN-only knocker never opens anything.
//! No kernel access, no privileges.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result, io_words};
use crate::name::{Af, Family};

#[derive(Clone, Debug)]
pub struct Opts {
    pub host: String,
    pub ports: Vec<u16>,
    /// Connections per knock port.
    pub hits: u32,
    /// Pause after each connection.
    pub delay: Duration,
    /// Pause between knock ports: FreeBSD inserts overload entries from a
    /// deferred task, so the next stage's rule may not see the host at once.
    pub gap: Duration,
    /// Limit of every single connect.
    pub timeout: Duration,
    pub family: Family,
    /// Probe this port after knocking, repeating the last knock with
    /// back-off until it opens.
    pub verify: Option<u16>,
    /// How many times the last knock is repeated before giving up.
    pub retries: u32,
    /// Rotating knocks: the ports of the moment, asked again before every
    /// repeat, so that a knock that met a step boundary is made anew with
    /// the new step's ports.
    pub ports_now: Option<PortSource>,
    /// Say on stderr what each knock did as it goes: the ports knocked,
    /// and each repeat while the verified port stays closed.
    pub report: bool,
    /// A signed knock (`--spa`): one datagram to the one port instead of
    /// connections, a fresh one for each repeat.
    pub signed: Option<Signed>,
}

/// What a signed knock carries besides the time and a nonce.
#[derive(Clone)]
pub struct Signed {
    pub key: std::sync::Arc<ed25519_dalek::SigningKey>,
    pub service: String,
    pub action: crate::spa::Action,
    /// Ask for "the address this arrives from" (a client behind NAT)
    /// instead of this host's own.
    pub nat: bool,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signed({}, {:?}, nat={})",
            self.service, self.action, self.nat
        )
    }
}

/// Send one signed knock to `addr`: this host's address as the socket
/// toward `addr` has it (or "the sender's"), now, a fresh nonce.
fn send_signed(addr: SocketAddr, s: &Signed) -> Result<()> {
    use crate::spa::{Knock, Target, key_id};
    let fail = |what: &str, e: io::Error| {
        Error::Other(format!(
            "{}: cannot {what}: {}",
            fmt_addr(addr),
            lower(&io_words(&e))
        ))
    };
    let any: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = std::net::UdpSocket::bind(any).map_err(|e| fail("open a UDP socket", e))?;
    sock.connect(addr).map_err(|e| fail("send", e))?;
    let me = sock.local_addr().map_err(|e| fail("send", e))?.ip();
    let k = Knock {
        action: s.action,
        target: if s.nat {
            Target::Sender
        } else {
            Target::Addr(me)
        },
        time: crate::clock::now().max(0) as u64,
        nonce: crate::trusted::random()?,
        key_id: key_id(s.key.verifying_key().as_bytes()),
        service: s.service.clone(),
    };
    sock.send(&k.sign(&s.key)).map_err(|e| fail("send", e))?;
    Ok(())
}

/// Where a rotating knock's ports come from (the secret and the clock).
#[derive(Clone)]
pub struct PortSource(pub std::sync::Arc<dyn Fn() -> Result<Vec<u16>> + Send + Sync>);

impl std::fmt::Debug for PortSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortSource")
    }
}

/// Resolve the host to one address of the wanted family (port 0). An
/// IPv6 link-local address keeps its scope (`fe80::1%em0`), so every
/// connect goes out on that link.
pub fn resolve(host: &str, family: Family) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| Error::Other(format!("{host}: cannot resolve: {}", io_words(&e))))?
        .collect();
    addrs
        .into_iter()
        .find(|a| family.covers(Af::of(a.ip())))
        .ok_or_else(|| {
            Error::Other(format!(
                "{host}: no {} address",
                match family {
                    Family::Only(Af::V4) => "IPv4",
                    Family::Only(Af::V6) => "IPv6",
                    Family::Any => "usable",
                }
            ))
        })
}

/// `host` (with its scope) at `port`.
fn at(host: SocketAddr, port: u16) -> SocketAddr {
    let mut a = host;
    a.set_port(port);
    a
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout)
}

/// Words for a failed connect to a knock port or the protected port.
fn why(addr: SocketAddr, e: &io::Error, knock: bool, timeout: Duration) -> Error {
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused if knock => {
            "connection refused: not a pf knock port (pf's synproxy would complete the \
             handshake even with nothing listening)"
                .to_owned()
        }
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "no answer within {} ms: filtered, or the host is down",
            timeout.as_millis()
        ),
        _ => lower(&io_words(e)),
    };
    Error::Other(format!("{}: {what}", fmt_addr(addr)))
}

fn lower(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn fmt_addr(a: SocketAddr) -> String {
    a.to_string()
}

/// Resolve the host and knock every port in order, `hits` full connects
/// each. Returns the address knocked.
fn knock_all(o: &Opts) -> Result<SocketAddr> {
    if o.ports.is_empty() {
        return Err(Error::Usage(
            "no knock ports: give them, or --service".into(),
        ));
    }
    let host = resolve(&o.host, o.family)?;
    knock_seq(host, &o.ports, o)?;
    Ok(host)
}

/// Knock `ports` in order.
fn knock_seq(host: SocketAddr, ports: &[u16], o: &Opts) -> Result<()> {
    for (i, &p) in ports.iter().enumerate() {
        if i > 0 {
            thread::sleep(o.gap);
        }
        knock_port(at(host, p), o)?;
    }
    Ok(())
}

/// Knock, then check the protected port if asked. Returns the address.
pub fn knock(o: &Opts) -> Result<IpAddr> {
    let host = knock_all(o)?;
    if let (true, Some(s)) = (o.report, &o.signed) {
        crate::say!(
            "sent a signed {} for service {} to {}",
            s.action.word(),
            s.service,
            fmt_addr(at(host, o.ports[0]))
        );
    } else if o.report {
        let list: Vec<String> = o.ports.iter().map(u16::to_string).collect();
        crate::say!(
            "knocked {} on {} ({} connection{} each)",
            host.ip(),
            list.join(", "),
            o.hits,
            if o.hits == 1 { "" } else { "s" }
        );
    }
    if let Some(v) = o.verify {
        verify(at(host, v), host, o)?;
    }
    Ok(host.ip())
}

fn knock_port(addr: SocketAddr, o: &Opts) -> Result<()> {
    if let Some(s) = &o.signed {
        return send_signed(addr, s);
    }
    for _ in 0..o.hits {
        // A new socket each time: a fresh ephemeral source port. A reset
        // after the handshake still counts: the firewall ends the knock
        // connection (pf kills the state that trips the overload, nftables
        // resets it), sometimes before connect(2) has returned.
        match connect(addr, o.timeout) {
            Ok(s) => drop(s),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(why(addr, &e, true, o.timeout)),
        }
        if !o.delay.is_zero() {
            thread::sleep(o.delay);
        }
    }
    Ok(())
}

/// How long the client waits after a signed knock before it tries the
/// protected port.
pub const SIGNED_SETTLE: Duration = Duration::from_millis(50);

/// Probe the protected port; while it does not answer, wait (doubling from
/// a quarter second) and knock the last port again, or, when a rotating
/// knock's ports have changed meanwhile, every port of the new step.
fn verify(target: SocketAddr, host: SocketAddr, o: &Opts) -> Result<TcpStream> {
    let mut wait = Duration::from_millis(250);
    let mut ports = o.ports.clone();
    let mut tries = 0;
    loop {
        // A signed knock opens a moment after its datagram arrives (the
        // listener, then root): a SYN sent before that is dropped, and
        // TCP would send it again only after a second.
        if o.signed.is_some() {
            thread::sleep(SIGNED_SETTLE);
        }
        match connect(target, o.timeout) {
            Ok(s) => return Ok(s),
            Err(e) if tries >= o.retries => {
                return Err(Error::Other(format!(
                    "{}: still closed after knocking {} time(s): {}",
                    fmt_addr(target),
                    tries + 1,
                    why(target, &e, false, o.timeout)
                        .to_string()
                        .split_once(": ")
                        .map_or(String::new(), |(_, w)| w.to_owned())
                )));
            }
            Err(_) => {}
        }
        tries += 1;
        thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(4));
        if let Some(src) = &o.ports_now {
            let now = (src.0)()?;
            if now != ports {
                ports = now;
                if o.report {
                    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                    crate::say!(
                        "{}: closed; the step changed: knocking {} (try {} of {})",
                        fmt_addr(target),
                        list.join(", "),
                        tries + 1,
                        o.retries + 1
                    );
                }
                knock_seq(host, &ports, o)?;
                continue;
            }
        }
        let last = *ports.last().expect("ports checked");
        if o.report && o.signed.is_some() {
            crate::say!(
                "{}: closed; sending a new signed knock to {last} (try {} of {})",
                fmt_addr(target),
                tries + 1,
                o.retries + 1
            );
        } else if o.report {
            crate::say!(
                "{}: closed; knocking {last} again (try {} of {})",
                fmt_addr(target),
                tries + 1,
                o.retries + 1
            );
        }
        knock_port(at(host, last), o)?;
    }
}

/// After ssh's side closes, how long the proxy waits for the server to
/// finish before it gives up.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// ssh ProxyCommand mode: knock, connect to `port` (retrying as `verify`
/// does), then relay stdin to the connection and the connection to stdout
/// until either side closes, or nothing moves for `idle` (zero: never).
pub fn proxy(o: &Opts, port: u16, idle: Duration) -> Result<()> {
    let host = knock_all(o)?;
    let s = verify(at(host, port), host, o)?;
    relay(s, io::stdin(), io::stdout(), idle)
}

/// Copy `input` to the connection (half-closing it at EOF) and the
/// connection to `output`. Ends when the peer closes, when `output` is gone,
/// `CLOSE_GRACE` after `input` ended, or after `idle` without a byte either
/// way (an error then).
pub fn relay(
    s: TcpStream,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
    idle: Duration,
) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis() as u64;
    let last = Arc::new(AtomicU64::new(0));
    let closed_at = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let mut up = s
        .try_clone()
        .map_err(|e| Error::Other(format!("proxy: {}", io_words(&e))))?;
    let (l, c, cd) = (last.clone(), closed.clone(), closed_at.clone());
    let writer = crate::sys_unix::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    l.store(ms(), Ordering::Relaxed);
                }
            }
        }
        let _ = up.shutdown(Shutdown::Write);
        cd.store(ms(), Ordering::Relaxed);
        c.store(true, Ordering::Release);
    });
    let mut down = s;
    down.set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(|e| Error::Other(format!("proxy: {}", io_words(&e))))?;
    let mut buf = [0u8; 16384];
    let r = loop {
        // ssh has closed its side, and the grace is over: done, even if
        // the server keeps sending (a read that succeeds must not keep
        // the proxy alive for ever).
        if closed.load(Ordering::Acquire)
            && ms().saturating_sub(closed_at.load(Ordering::Relaxed))
                >= CLOSE_GRACE.as_millis() as u64
        {
            break Ok(());
        }
        match down.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = output.write_all(&buf[..n]).and_then(|_| output.flush()) {
                    break Err(e);
                }
                last.store(ms(), Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let now = ms();
                if !idle.is_zero()
                    && now.saturating_sub(last.load(Ordering::Relaxed)) >= idle.as_millis() as u64
                {
                    return Err(Error::Other(format!(
                        "proxy: nothing sent either way for {} s: giving up",
                        idle.as_secs()
                    )));
                }
            }
            Err(e) => break Err(e),
        }
    };
    drop(writer); // detached: it ends with stdin, or with the process
    r.map_err(|e| Error::Other(format!("proxy: {}", io_words(&e))))
}
