//! pfknock: port knocking done by the firewall itself.
//!
//! Pure modules (`name`, `config`, `render`) forbid `unsafe`; the only
//! `unsafe` lives in the per-OS `sys_*` modules, each marked with
//! `#[allow(unsafe_code)]`, so `grep -rn 'allow(unsafe_code' src` lists the
//! whole audit surface.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod error;
pub mod name;
pub mod pf;
pub mod pfctl;
pub mod render;
pub mod tables;

use std::path::Path;

use cli::{Cli, Command};
use config::Config;
use error::Result;

/// Read and check the config, printing its warnings to stderr.
pub fn load_config(path: &Path) -> Result<Config> {
    let (cfg, warnings) = Config::load(path)?;
    for w in warnings {
        eprintln!("pfknock: {w}");
    }
    Ok(cfg)
}

/// Run one command line.
pub fn run(cli: Cli) -> Result<()> {
    let path = cli.config.as_path();
    match cli.command {
        Command::Check => {
            let cfg = load_config(path)?;
            let text = render::pf::render(&cfg, &path.display().to_string());
            if pfctl::find().is_some() {
                pfctl::check(&cfg.anchor, &text)?;
                println!(
                    "{}: ok (pfctl -n accepted anchor {})",
                    path.display(),
                    cfg.anchor.as_str()
                );
            } else {
                println!("{}: ok", path.display());
            }
            Ok(())
        }
        Command::Render => {
            let cfg = load_config(path)?;
            print!("{}", render::pf::render(&cfg, &path.display().to_string()));
            Ok(())
        }
        Command::Load => {
            let cfg = load_config(path)?;
            let text = render::pf::render(&cfg, &path.display().to_string());
            pfctl::load(&cfg.anchor, &text)?;
            if !pfctl::anchor_referenced(&cfg.anchor)? {
                eprintln!(
                    "pfknock: warning: the main ruleset has no anchor \"{}\" rule: the anchor's rules do nothing",
                    cfg.anchor.as_str()
                );
            }
            Ok(())
        }
        Command::Unload => {
            let cfg = load_config(path)?;
            pfctl::unload(&cfg.anchor)
        }
    }
}
