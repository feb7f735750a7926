//! pfknock: port knocking done by the firewall itself.
//!
//! ARCHITECTURE.md draws the modules in layers and who may call whom.
//! Modules that do no I/O (`name`, `schema`, `names`, `render`, `policy`)
//! and every other forbid `unsafe`; the only
//! `unsafe` lives in the per-OS `sys_*` modules, each marked with
//! `#[allow(unsafe_code)]`, so `grep -rn 'allow(unsafe_code' src` lists the
//! whole audit surface.
#![deny(unsafe_code)]
// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatch;
pub mod error;
pub mod kevents;
pub mod knock;
pub mod name;
pub mod names;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod nft;
pub mod output;
pub mod pf;
pub mod pfctl;
pub mod policy;
pub mod render;
pub mod rotate;
pub mod schema;
pub mod spa;
#[allow(unsafe_code)]
pub mod sys_sandbox;
#[allow(unsafe_code)]
pub mod sys_unix;
pub mod syslog;
pub mod tables;
pub mod tool;
pub mod trusted;
pub mod verbs;
