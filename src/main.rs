#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = pfknock::cli::Cli::parse();
    if let Err(e) = pfknock::dispatch::run(cli) {
        pfknock::say!("pfknock: {}", pfknock::name::no_controls(&e.to_string()));
        std::process::exit(e.exit_code());
    }
}
