#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = pfknock::cli::Cli::parse();
    if let Err(e) = pfknock::run(cli) {
        eprintln!("pfknock: {e}");
        std::process::exit(e.exit_code());
    }
}
