//! Loads, checks and unloads the anchor through pfctl(8). Never touches the
//! main ruleset: every invocation carries `-a ANCHOR`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::name::AnchorName;

/// pfctl(8) from the system's directories (never `$PATH`: pfknock runs as
/// root); `None` where pf does not exist.
pub fn find() -> Option<PathBuf> {
    crate::tool::find("pfctl")
}

fn pfctl() -> Result<PathBuf> {
    find().ok_or_else(|| Error::Tool {
        tool: "pfctl".into(),
        msg: "not found: pf is not available on this system".into(),
    })
}

/// Run pfctl with `args`, `input` on its stdin.
fn run(args: &[&str], input: Option<&str>) -> Result<String> {
    let exe = pfctl()?;
    crate::tool::run("pfctl", &[exe.as_path()], args, input)
}

/// `pfctl -n -a ANCHOR -f -`: parse only, load nothing.
pub fn check(anchor: &AnchorName, text: &str) -> Result<()> {
    run(&["-n", "-a", anchor.as_str(), "-f", "-"], Some(text)).map(|_| ())
}

/// `pfctl -a ANCHOR -f -`: atomic replace of the anchor's rules and tables.
pub fn load(anchor: &AnchorName, text: &str) -> Result<()> {
    run(&["-a", anchor.as_str(), "-f", "-"], Some(text)).map(|_| ())
}

/// Flush the anchor's rules and then its tables.
pub fn unload(anchor: &AnchorName) -> Result<()> {
    run(&["-a", anchor.as_str(), "-F", "rules"], None)?;
    run(&["-a", anchor.as_str(), "-F", "Tables"], None).map(|_| ())
}

/// Does the main ruleset have an `anchor` rule that reaches ours? Loading
/// into `-a ANCHOR` creates the anchor whether or not anything calls it, so
/// this reads the main ruleset's rules (`pfctl -s rules`), not the anchor
/// list. `anchor "*"` and `anchor "outer/*"` count.
pub fn anchor_referenced(anchor: &AnchorName) -> Result<bool> {
    let out = run(&["-s", "rules"], None)?;
    Ok(references(&out, anchor))
}

fn references(rules: &str, anchor: &AnchorName) -> bool {
    rules.lines().any(|l| {
        let Some(rest) = l.trim_start().strip_prefix("anchor \"") else {
            return false;
        };
        let Some(name) = rest.split('"').next() else {
            return false;
        };
        let want = anchor.as_str();
        name == want
            || name == "*"
            || name
                .strip_suffix("/*")
                .is_some_and(|p| want.starts_with(p) && want[p.len()..].starts_with('/'))
            || want.starts_with(name) && want[name.len()..].starts_with('/')
    })
}

/// Is pf enabled? (`pfctl -s info`: "Status: Enabled ..."). `None` when
/// pfctl cannot tell.
pub fn enabled() -> Option<bool> {
    status_enabled(&run(&["-s", "info"], None).ok()?)
}

fn status_enabled(info: &str) -> Option<bool> {
    let status = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status:"))?;
    Some(status.trim_start().starts_with("Enabled"))
}

/// Kill the states from `host` (`pfctl -k HOST`): cuts its open sessions.
pub fn kill_states(host: &str) -> Result<String> {
    run(&["-k", host], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_line() {
        // FreeBSD and OpenBSD start `pfctl -s info` the same way.
        let on = "Status: Enabled for 0 days 01:02:03           Debug: Urgent\n\nState Table  Total  Rate\n";
        assert_eq!(status_enabled(on), Some(true));
        assert_eq!(
            status_enabled("Status: Disabled for 0 days 00:00:10    Debug: Urgent\n"),
            Some(false)
        );
        assert_eq!(status_enabled("pfctl: /dev/pf: Permission denied\n"), None);
    }

    #[test]
    fn finds_anchor_rule() {
        let a = AnchorName::new("pfknock").unwrap();
        assert!(references("block drop all\nanchor \"pfknock\" all\n", &a));
        assert!(references("anchor \"*\" all\n", &a));
        assert!(!references("anchor \"pfknock2\" all\n", &a));
        assert!(!references("pass out all\n", &a));
        let nested = AnchorName::new("outer/pfknock").unwrap();
        assert!(references("anchor \"outer/*\" all\n", &nested));
        assert!(references("anchor \"outer\" all\n", &nested));
    }
}
