//! A NAT gateway on nftables, in three network namespaces: a client
//! outside (198.18.N.2, and .3), a gateway doing masquerade and DNAT
//! (198.18.N.1 outside, 198.19.N.1 inside) with pfknock loaded, and a host
//! inside (198.19.N.2) whose port is published on the gateway's port 8022.
//! Root only.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::sleep;
use std::time::Duration;

use common::{BIN, PROTECTED, Scratch, ns, ok, sh};

static NEXT: AtomicU8 = AtomicU8::new(100);

struct Gw {
    c: String,
    g: String,
    h: String,
    n: u8,
    dir: Scratch,
    kids: Vec<Child>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        for k in &mut self.kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        for x in [&self.c, &self.g, &self.h] {
            let _ = Command::new("ip").args(["netns", "del", x]).status();
        }
    }
}

/// A listener that sends "hello" to whoever connects, on each port.
fn greeter(ports: &[u16]) -> String {
    format!(
        "import socket, threading, time\n\
         def serve(p):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         s.bind(('0.0.0.0', p)); s.listen(16)\n    while True:\n        c, _ = s.accept(); c.sendall(b'hello'); c.close()\n\
         for p in {ports:?}:\n    threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         time.sleep(120)\n"
    )
}

impl Gw {
    fn new() -> Gw {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id() % 100000);
        let mut gw = Gw {
            c: format!("pfg-c{id}"),
            g: format!("pfg-g{id}"),
            h: format!("pfg-h{id}"),
            n,
            dir: Scratch::new(&format!("gw-{n}")),
            kids: Vec::new(),
        };
        for x in [&gw.c, &gw.g, &gw.h] {
            sh(&["ip", "netns", "add", x]);
            sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
        }
        let (ca, ga, gb, hb) = (
            format!("gc{id}"),
            format!("go{id}"),
            format!("gi{id}"),
            format!("gh{id}"),
        );
        sh(&[
            "ip", "link", "add", &ca, "netns", &gw.c, "type", "veth", "peer", "name", &ga, "netns",
            &gw.g,
        ]);
        sh(&[
            "ip", "link", "add", &gb, "netns", &gw.g, "type", "veth", "peer", "name", &hb, "netns",
            &gw.h,
        ]);
        for (x, dev, addr) in [
            (&gw.c, &ca, format!("198.18.{n}.2/24")),
            (&gw.c, &ca, format!("198.18.{n}.3/24")),
            (&gw.g, &ga, format!("198.18.{n}.1/24")),
            (&gw.g, &gb, format!("198.19.{n}.1/24")),
            (&gw.h, &hb, format!("198.19.{n}.2/24")),
        ] {
            sh(&["ip", "-n", x, "addr", "add", &addr, "dev", dev]);
            sh(&["ip", "-n", x, "link", "set", dev, "up"]);
        }
        // The inside host routes through the gateway; the outside does not
        // know the inside network at all (only the DNAT'd port reaches it).
        sh(&[
            "ip",
            "-n",
            &gw.h,
            "route",
            "add",
            "default",
            "via",
            &format!("198.19.{n}.1"),
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &gw.g,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let nat = format!(
            "table ip nat {{\n\tchain post {{ type nat hook postrouting priority srcnat; oifname \"{ga}\" masquerade; }}\n\
             \tchain pre {{ type nat hook prerouting priority dstnat; iifname \"{ga}\" tcp dport 8022 dnat to 198.19.{n}.2:{PROTECTED}; }}\n}}\n"
        );
        let f = gw.dir.join("nat.nft");
        fs::write(&f, nat).unwrap();
        ok(&ns(&gw.g, &["nft", "-f", f.to_str().unwrap()]));
        let conf = format!(
            "[[service]]\nname    = \"ssh\"\nprotect = [{PROTECTED}]\nknock   = [1234]\nrate    = \"2/5\"\nttl     = \"10m\"\n\n\
             [[service]]\nname    = \"inside\"\nprotect = [{PROTECTED}]\nknock   = [1235]\nrate    = \"2/5\"\nttl     = \"10m\"\n\
             to      = [\"198.19.{n}.2\"]\n"
        );
        fs::write(gw.dir.join("pfknock.toml"), conf).unwrap();
        // Greeters: the inside host on the protected port and on 1234, the
        // gateway on the protected port, the outside on both too.
        for x in [gw.h.clone(), gw.g.clone(), gw.c.clone()] {
            let ports: Vec<u16> = if x == gw.g {
                vec![PROTECTED]
            } else {
                vec![PROTECTED, 1234]
            };
            let k = Command::new("ip")
                .args(["netns", "exec", &x, "python3", "-c", &greeter(&ports)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            gw.kids.push(k);
        }
        gw
    }

    fn pfknock(&self, args: &[&str]) -> std::process::Output {
        let c = self.dir.join("pfknock.toml");
        let mut a = vec![BIN];
        a.extend_from_slice(args);
        a.extend(["-c", c.to_str().unwrap()]);
        ns(&self.g, &a)
    }

    /// Does `to:port` greet, from namespace `from` and source `src`?
    fn greets(&self, from: &str, src: &str, to: &str, port: u16) -> bool {
        let py = format!(
            "import socket\ns = socket.socket()\ns.settimeout(1)\ntry:\n    s.bind(('{src}', 0))\n    \
             s.connect(('{to}', {port}))\n    print(s.recv(5).decode())\nexcept OSError as e:\n    print(e)\n"
        );
        String::from_utf8_lossy(&ns(from, &["python3", "-c", &py]).stdout).trim() == "hello"
    }

    fn knock(&self, port: &str) {
        ok(&ns(
            &self.c,
            &[
                BIN,
                "knock",
                "-q",
                "-t",
                "1000",
                &format!("198.18.{}.1", self.n),
                port,
                "-n",
                "3",
            ],
        ));
    }
}

#[test]
#[ignore = "root: network namespaces and nftables; run as root with cargo test -- --include-ignored"]
fn a_nat_gateway_protects_its_own_and_a_forwarded_port_and_nothing_else() {
    need_root_and_tools!();
    let gw = Gw::new();
    let n = gw.n;
    let (gwo, inside, out2, out3) = (
        format!("198.18.{n}.1"),
        format!("198.19.{n}.2"),
        format!("198.18.{n}.2"),
        format!("198.18.{n}.3"),
    );
    // Listeners up (bounded wait), before pfknock is loaded.
    for _ in 0..50 {
        if gw.greets(&gw.h, &inside, &out2, PROTECTED) && gw.greets(&gw.c, &out2, &gwo, 8022) {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    assert!(
        gw.greets(&gw.c, &out2, &gwo, 8022),
        "the DNAT works before pfknock"
    );
    ok(&gw.pfknock(&["load"]));

    // The inside host's outbound connections, to the protected port number
    // and to a knock port of some server outside, pass the NAT untouched.
    for port in [PROTECTED, 1234] {
        assert!(
            gw.greets(&gw.h, &inside, &out2, port),
            "inside -> outside :{port} through the NAT"
        );
    }
    // The gateway's own port: closed, then open after its knock.
    assert!(
        !gw.greets(&gw.c, &out2, &gwo, PROTECTED),
        "the gateway's port is closed"
    );
    assert!(
        !gw.greets(&gw.c, &out2, &gwo, 8022),
        "the DNAT'd port is closed"
    );
    gw.knock("1234");
    assert!(
        gw.greets(&gw.c, &out2, &gwo, PROTECTED),
        "open after the knock"
    );
    assert!(
        !gw.greets(&gw.c, &out2, &gwo, 8022),
        "the gateway's knock does not open the inside host"
    );
    // The inside host's port, through the DNAT: only for the knocked address.
    gw.knock("1235");
    assert!(
        gw.greets(&gw.c, &out2, &gwo, 8022),
        "the knocked client reaches the inside host"
    );
    assert!(
        !gw.greets(&gw.c, &out3, &gwo, 8022),
        "another address of the outside does not"
    );
    assert!(
        !gw.greets(&gw.c, &out3, &gwo, PROTECTED),
        "nor the gateway's port"
    );
    // And the NAT still carries the inside host's traffic.
    assert!(gw.greets(&gw.h, &inside, &out3, 1234));
}
