#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = pfknock::cli::Cli::parse();
    if let Err(e) = pfknock::dispatch::run(cli) {
        if matches!(e, pfknock::error::Error::StdoutClosed) {
            std::process::exit(e.exit_code());
        }
        pfknock::say!("pfknock: {}", pfknock::name::no_controls(&e.to_string()));
        std::process::exit(e.exit_code());
    }
}
