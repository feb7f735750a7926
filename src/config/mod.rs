//! TOML text → checked `Config`.
//!
//! Parsing happens in two steps, as ntpd-rs does: serde reads the text into
//! raw structs that keep the span of every value (unknown keys are refused),
//! then `check` turns them into typed values, naming file, line and key in
//! every error.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::Path;

use toml::Spanned;

use crate::error::{Error, Result};
use crate::name::{AnchorName, ExpireMode, TableName};
pub use crate::schema::*;
pub use crate::trusted::{CONFIG_MAX, read_secret_file, read_trusted};

mod check;
mod raw;
mod service;
mod spa;

use check::*;
use raw::*;
use service::*;

// ---- checking ---------------------------------------------------------------

impl Config {
    /// Read and check a config file (`read_trusted`: as root, only a file
    /// that root alone can change).
    /// Rotating services get the knock ports of now (`rotate::apply`).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>)> {
        Config::load_at(path, crate::clock::now())
    }

    /// As `load`, with the knock ports of rotating services as of `now`.
    pub fn load_at(path: &Path, now: i64) -> Result<(Config, Vec<Warning>)> {
        let (mut cfg, warnings) = Config::read(path)?;
        crate::rotate::apply(&mut cfg, now)?;
        Ok((cfg, warnings))
    }

    /// As `load`, but without reading any secret: rotating services have
    /// no knock ports yet (for the client, which may hold other secrets).
    pub fn read(path: &Path) -> Result<(Config, Vec<Warning>)> {
        let text = read_trusted(path, crate::sys_unix::euid() == 0)?;
        Config::parse(&text, path)
    }

    /// Parse and check config text; `file` is only used in messages.
    pub fn parse(src: &str, file: &Path) -> Result<(Config, Vec<Warning>)> {
        let mut cx = Ctx {
            file,
            warnings: Vec::new(),
            newlines: src.match_indices('\n').map(|(i, _)| i).collect(),
        };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let line = e.span().map_or(0, |s| line_of(src, s.start));
            Error::Config {
                file: file.to_owned(),
                line,
                // Both may quote the input (an unknown key's name): escaped
                // and cut like every echoed value.
                key: crate::name::shown(&key_at(src, at)),
                msg: cut(&plain(e.message()), 400),
            }
        })?;
        let cfg = check(&mut cx, raw)?;
        Ok((cfg, cx.warnings))
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Idle expiry watches per-entry counters, which need the table flag
/// PFR_TFLAG_COUNTERS; macOS's pf has none (xnu bsd/net/pfvar.h,
/// docs/pf-kernel.md "Counters"; `pf::abi::macos::LAYOUT` says so too).
/// nftables needs no such flag.
pub fn idle_supported(os: &str) -> bool {
    os != "macos"
}

fn idle_here(
    cx: &Ctx<'_>,
    raw: &Option<Spanned<String>>,
    mode: ExpireMode,
    key: &str,
) -> Result<()> {
    if mode == ExpireMode::Idle && !idle_supported(std::env::consts::OS) {
        let span = raw.as_ref().map(|t| t.span()).unwrap_or_default();
        return Err(cx.err(
            span,
            key,
            "expire = \"idle\" needs per-entry table counters, which this system's pf \
             does not have (no PFR_TFLAG_COUNTERS in xnu): use expire = \"age\"",
        ));
    }
    Ok(())
}

/// Knock ports that a local socket listens on, from Linux's
/// `/proc/net/tcp` and `tcp6` texts: synproxy would hand every knock to that
/// listener as a real connection. One warning per port.
pub fn listened_knock_ports(cfg: &Config, file: &Path, proc_texts: &[String]) -> Vec<Warning> {
    let mut listening = BTreeSet::new();
    for text in proc_texts {
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ...; st 0A is LISTEN.
            if f.len() > 3
                && f[3] == "0A"
                && let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                listening.insert(port);
            }
        }
    }
    let mut out = Vec::new();
    for s in &cfg.services {
        for (p, line) in s.knock.iter().zip(&s.knock_lines) {
            if listening.contains(&p.get()) {
                out.push(Warning {
                    file: file.to_owned(),
                    line: *line,
                    key: "service.knock".into(),
                    msg: format!(
                        "something listens on port {p}: a knock there reaches it as a connection; \
                         choose a free port"
                    ),
                });
            }
        }
    }
    out
}

/// Every table name the config owns or sweeps, with its anchor: the set that
/// the kernel commands are allowed to touch.
pub fn owned_tables(cfg: &Config) -> BTreeSet<(AnchorName, TableName)> {
    let mut s = BTreeSet::new();
    for svc in &cfg.services {
        for (t, _) in svc.tables() {
            s.insert((cfg.anchor.clone(), t));
        }
        if let Some(t) = svc.hold_table() {
            s.insert((cfg.anchor.clone(), t));
        }
    }
    for e in &cfg.expires {
        s.insert((e.anchor.clone(), e.table.clone()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{Proto, Secs};

    fn parse(s: &str) -> Result<(Config, Vec<Warning>)> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn defaults() {
        let (c, w) =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n").unwrap();
        assert!(w.is_empty());
        assert_eq!(c.anchor.as_str(), "pfknock");
        let s = &c.services[0];
        assert_eq!(s.table.as_str(), "ssh");
        assert_eq!(s.rate.to_string(), "5/15");
        assert_eq!(s.ttl, Secs(60));
        assert_eq!(s.expire, ExpireMode::Age);
        assert!(!idle_supported("macos"), "no counters on macOS");
        for os in ["freebsd", "openbsd", "linux"] {
            assert!(idle_supported(os), "{os}");
        }
        assert_eq!(s.window, Secs(10));
        assert!(s.from.is_empty() && s.allow.is_empty());
        assert!(s.log && s.block && s.renew);
        assert_eq!(s.proto, vec![Proto::Tcp]);
        assert_eq!(s.hits(), 6);
    }

    #[test]
    fn finds_listening_knock_ports() {
        let (c, _) =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234,\n 1235]\n").unwrap();
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                   0: 00000000:04D3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
                   1: 0100007F:04D2 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        let tcp6 = "  sl  local_address                         remote_address                        st\n   \
                    0: 00000000000000000000000000000000:04D2 00000000000000000000000000000000:0000 06\n";
        let w = listened_knock_ports(&c, Path::new("t.toml"), &[tcp.into(), tcp6.into()]);
        // 1235 listens; 1234 has only an established socket and a TIME_WAIT.
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].to_string(),
            "t.toml:5: service.knock: warning: something listens on port 1235: a knock there \
             reaches it as a connection; choose a free port"
        );
    }

    #[test]
    fn key_at_finds_header_and_key() {
        let src = "anchor = \"x\"\n[[service]]\nname = \"ssh\"\nrate = \"5\"\n";
        let at = src.find("\"5\"").unwrap();
        assert_eq!(key_at(src, at), "service.rate");
        assert_eq!(key_at(src, 2), "anchor");
    }

    #[test]
    fn errors_name_line_and_key() {
        let e =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nrate = \"5\"\n")
                .unwrap_err()
                .to_string();
        assert_eq!(e, "t.toml:5: service.rate: expected N/S, got \"5\"");
        let e =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\ntll = \"6s\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.starts_with("t.toml:5: service.tll: unknown field `tll`"),
            "{e}"
        );
    }
}
