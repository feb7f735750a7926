//! The command line: global options and one-word verbs, like pfctl's.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG;

/// Port knocking done by pf itself.
#[derive(Parser, Debug)]
#[command(name = "pfknock", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE",
          default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check the config, render it, and have pfctl -n parse the
    /// anchor where pfctl exists; change nothing
    Check,
    /// Print the anchor that the config renders to
    Render,
    /// Load the rendered anchor with pfctl -a ANCHOR -f - (atomic replace)
    Load,
    /// Flush the anchor's rules and tables
    Unload,
}
