//! Key files. A client's private key: one line `pfknock-spa-ed25519`
//! and 64 hexadecimal digits (the 32-byte Ed25519 seed), mode 0600. Its
//! public key, the file the server holds: one line `ed25519`, 64
//! hexadecimal digits and an optional comment. The server reads every
//! `NAME.pub` in a service's `spa.keys` directory; NAME is what the log
//! calls the key, so one client is added or revoked by one file.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::PubKey;
use crate::error::{Error, Result};

const PRIVATE: &str = "pfknock-spa-ed25519";
const PUBLIC: &str = "ed25519";
/// The most keys a directory may hold.
pub const KEYS_MAX: usize = 10_000;

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Config {
        file: path.to_owned(),
        line: 0,
        key: String::new(),
        msg: msg.into(),
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut b = [0u8; 32];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(b)
}

/// A key's name: what the log prints, so plain.
fn key_name_ok(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && !n.starts_with('.')
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The one line of a key file that is not blank or a comment, split in
/// words.
fn key_line<'a>(text: &'a str, path: &Path, kind: &str) -> Result<Vec<&'a str>> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (lines.next(), lines.next()) {
        (Some(l), None) => Ok(l.split_whitespace().collect()),
        _ => Err(bad(
            path,
            format!("not a {kind} key file: expected one key line"),
        )),
    }
}

/// A public key file's key.
pub fn parse_public(text: &str, path: &Path) -> Result<[u8; 32]> {
    let w = key_line(text, path, "public")?;
    let key = match w.as_slice() {
        [PUBLIC, k, ..] => hex32(k),
        _ => None,
    }
    .ok_or_else(|| {
        bad(
            path,
            "not a public key file: expected \"ed25519\" and 64 hexadecimal digits",
        )
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| bad(path, "not an Ed25519 public key"))?;
    Ok(key)
}

/// A private key file's key.
pub fn read_private(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let text = crate::trusted::read_secret_file(path)?;
    let w = key_line(&text, path, "private")?;
    let seed = match w.as_slice() {
        [PRIVATE, k] => hex32(k),
        _ => None,
    }
    .ok_or_else(|| {
        bad(
            path,
            "not a private key file: expected \"pfknock-spa-ed25519\" and 64 hexadecimal digits \
             (pfknock keygen --spa writes one)",
        )
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// Every `NAME.pub` of a keys directory, by name. Each must be root's
/// and writable by nobody else, as the config is.
pub fn read_dir(dir: &Path) -> Result<Vec<PubKey>> {
    let io = |_: &'static str| {
        move |e: std::io::Error| {
            bad(
                dir,
                format!(
                    "spa.keys: cannot read this directory: {}",
                    crate::error::io_words(&e)
                ),
            )
        }
    };
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io("read the keys directory"))? {
        let e = e.map_err(io("read the keys directory"))?;
        let file = e.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".pub")) else {
            continue;
        };
        if !key_name_ok(name) {
            return Err(bad(
                &e.path(),
                "a key's name (the file's name without .pub) must be letters, digits, \
                 '_', '-' and '.', at most 64",
            ));
        }
        names.push((name.to_owned(), e.path()));
        if names.len() > KEYS_MAX {
            return Err(bad(dir, format!("more than {KEYS_MAX} keys")));
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|(name, p)| {
            let text = crate::trusted::read_trusted(&p, crate::sys_unix::euid() == 0)?;
            Ok(PubKey {
                name,
                bytes: parse_public(&text, &p)?,
            })
        })
        .collect()
}

/// The signed-knock services of a config, with their keys read now.
pub fn services(cfg: &crate::config::Config) -> Result<Vec<super::Service>> {
    cfg.services
        .iter()
        .filter_map(|s| Some((s, s.spa.as_ref()?)))
        .map(|(s, sp)| {
            Ok(super::Service {
                name: s.name.clone(),
                port: sp.port.get(),
                window: sp.window.0,
                nat: sp.nat,
                keys: read_dir(&sp.keys)?
                    .into_iter()
                    .map(|k| (k.name, k.bytes))
                    .collect(),
                from: s.from.iter().map(|n| n.to_string()).collect(),
                families: [(4, crate::name::Af::V4), (6, crate::name::Af::V6)]
                    .into_iter()
                    .filter(|(_, af)| s.family.covers(*af))
                    .map(|(n, _)| n)
                    .collect(),
            })
        })
        .collect()
}

/// `pfknock keygen --spa FILE`: a new key pair, the private key in FILE
/// (mode 0600) and the public one in FILE.pub (mode 0644), never over an
/// existing file. Returns the public key file's path.
pub fn keygen(path: &Path) -> Result<PathBuf> {
    let seed: [u8; 32] = crate::trusted::random()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    if public.symlink_metadata().is_ok() {
        return Err(Error::Usage(format!(
            "{}: exists already; keygen writes new files only",
            public.display()
        )));
    }
    crate::trusted::write_new(path, 0o600, &format!("{PRIVATE} {}", hex(&seed)))?;
    let comment = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let r = crate::trusted::write_new(
        &public,
        0o644,
        &format!("{PUBLIC} {} {comment}", hex(key.verifying_key().as_bytes())),
    );
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r.map(|()| public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pair_reads_back_and_its_halves_belong_together() {
        let d = std::env::temp_dir().join(format!("pfknock-spa-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let p = d.join("alice");
        let public = keygen(&p).unwrap();
        assert_eq!(public, d.join("alice.pub"));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&p), mode(&public)), (0o600, 0o644));
        let private = read_private(&p).unwrap();
        let text = std::fs::read_to_string(&public).unwrap();
        let k = parse_public(&text, &public).unwrap();
        assert_eq!(&k, private.verifying_key().as_bytes());
        assert!(keygen(&p).is_err(), "never over an existing key");
        std::fs::remove_file(&p).unwrap();
        assert!(keygen(&p).is_err(), "nor over an existing public key");
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_public_key_file_is_one_line_of_a_point() {
        let p = Path::new("k.pub");
        let k = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let line = format!("ed25519 {} me@there", hex(k.as_bytes()));
        assert_eq!(parse_public(&line, p).unwrap(), *k.as_bytes());
        assert_eq!(
            parse_public(&format!("# c\n\n{line}\n"), p).unwrap(),
            *k.as_bytes()
        );
        for bad in [
            String::new(),
            format!("{line}\n{line}"),
            format!("rsa {}", hex(k.as_bytes())),
            format!("ed25519 {}", &hex(k.as_bytes())[..62]),
            format!("ed25519 {}", "zz".repeat(32)),
        ] {
            assert!(parse_public(&bad, p).is_err(), "{bad:?}");
        }
    }
}
