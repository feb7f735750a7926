//! The firewall of this system, chosen once from the OS (and, on Linux,
//! from what is installed in the system's directories, never from
//! `$PATH`): pf through /dev/pf and pfctl(8), or nftables through nft(8).
//! One value serves the CLI and the daemon alike: it opens the table
//! interface, and it loads, checks and unloads the rules (`Loader`).
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::AnchorName;
use crate::{nft, pf, pfctl, render, tables, tool};

/// The firewall this system has.
pub enum Backend {
    Pf,
    Nft(nft::Nft),
}

/// pf on FreeBSD, OpenBSD and macOS; elsewhere nftables where nft(8) is in
/// the system's directories, else pf where a pfctl(8) is (tests give a
/// stand-in pfctl through `tool::TOOL_DIR_VAR`). `$PATH` is never read.
pub fn detect() -> Result<Backend> {
    if cfg!(any(
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "macos"
    )) {
        return Ok(Backend::Pf);
    }
    if let Some(nft) = tool::find("nft") {
        Ok(Backend::Nft(nft::Nft {
            argv: vec![nft.display().to_string()],
        }))
    } else if pfctl::find().is_some() {
        Ok(Backend::Pf)
    } else {
        let dirs: Vec<String> = tool::dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(Error::Other(format!(
            "pf is not available on this system, and nft(8) is not in {}",
            dirs.join(", ")
        )))
    }
}

/// The table interface of this system's firewall.
pub fn open_tables(write: bool) -> Result<Box<dyn tables::Tables>> {
    detect()?.tables(write)
}

/// Renders and loads the config's rules: pfctl(8) on pf, nft(8) on
/// nftables. The daemon's restore, its reload and `pfknock load` all go
/// through it.
pub trait Loader {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()>;
    /// Does the main ruleset call the anchor?
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool>;
    /// Is pf enabled? `None` when it cannot be told.
    fn enabled(&mut self) -> Option<bool>;
    /// Take the knock rules away. On pf the main ruleset then decides
    /// (its `block` keeps the ports closed); on nftables the table is left
    /// closed: the protected ports drop all but the allow list.
    fn unload(&mut self, cfg: &Config) -> Result<()>;
}

impl Loader for Backend {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()> {
        match self {
            Backend::Pf => pfctl::load(&cfg.anchor, &render::pf::render(cfg, source)),
            // The nftables table names no source file: it is applied as
            // data, not as text.
            Backend::Nft(n) => n.load(cfg),
        }
    }
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool> {
        match self {
            Backend::Pf => pfctl::anchor_referenced(anchor),
            Backend::Nft(_) => Ok(true),
        }
    }
    fn enabled(&mut self) -> Option<bool> {
        match self {
            Backend::Pf => pfctl::enabled(),
            Backend::Nft(_) => Some(true),
        }
    }
    fn unload(&mut self, cfg: &Config) -> Result<()> {
        match self {
            Backend::Pf => pfctl::unload(&cfg.anchor),
            Backend::Nft(n) => n.close(cfg),
        }
    }
}

impl Backend {
    /// The table interface: /dev/pf (read-only unless `write`), or nft(8).
    pub fn tables(&self, write: bool) -> Result<Box<dyn tables::Tables>> {
        Ok(match self {
            Backend::Pf => Box::new(pf::open(write)?),
            Backend::Nft(n) => Box::new(nft::NftTables::new(n.clone())),
        })
    }

    /// Have the firewall's own parser check the rendered rules, loading
    /// nothing: `pfctl -n` or `nft -c`. Says what checked them.
    pub fn check(&self, cfg: &Config, source: &str) -> Result<Option<String>> {
        match self {
            Backend::Pf if pfctl::find().is_some() => {
                pfctl::check(&cfg.anchor, &render::pf::render(cfg, source))?;
                Ok(Some(format!(
                    "pfctl -n accepted anchor {}",
                    cfg.anchor.as_str()
                )))
            }
            Backend::Nft(n) if !cfg.services.is_empty() => {
                n.check(&render::nft::render(cfg, source))?;
                Ok(Some(format!(
                    "nft -c accepted table inet {}",
                    render::nft::TABLE
                )))
            }
            _ => Ok(None),
        }
    }
}
