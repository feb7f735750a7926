#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = pfknock::cli::Cli::parse();
    let r = pfknock::dispatch::run(cli);
    // A command's audit lines that syslogd has not taken yet.
    pfknock::syslog::drain(std::time::Duration::from_millis(500));
    if let Err(e) = r {
        if matches!(e, pfknock::error::Error::StdoutClosed) {
            std::process::exit(e.exit_code());
        }
        pfknock::say!("pfknock: {}", pfknock::name::no_controls(&e.to_string()));
        std::process::exit(e.exit_code());
    }
}
