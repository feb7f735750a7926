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
        says: crate::error::ToolSays::Failed,
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

/// The main ruleset's `pass ... quick` rules before the line that calls
/// the anchor which let a protected port through, as pfctl prints them:
/// quick, they win before the anchor's own block is ever seen. A rule with
/// no port passes every port. Ports pfctl prints by name (`port = ssh`)
/// are looked up in `services` (the text of /etc/services).
pub fn passes_before(
    rules: &str,
    anchor: &AnchorName,
    protected: &[(u16, u16)],
    services: &str,
) -> Vec<String> {
    let port_of = |w: &str| -> Option<u16> {
        w.parse().ok().or_else(|| {
            services.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?;
                let (num, proto) = f.next()?.split_once('/')?;
                (proto == "tcp" && (name == w || f.any(|alias| alias == w)))
                    .then(|| num.parse().ok())
                    .flatten()
            })
        })
    };
    let mut out = Vec::new();
    for l in rules.lines() {
        let t = l.trim();
        if references(t, anchor) {
            break;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        if words.first() != Some(&"pass") || !words.contains(&"quick") {
            continue;
        }
        if words.contains(&"udp") || words.contains(&"icmp") || words.contains(&"icmp6") {
            continue;
        }
        // The destination's port: `to ... port = P`, `port P:Q`,
        // `port { ... }` (pfctl expands lists into several rules).
        let to = words.iter().position(|w| *w == "to");
        let port = to.and_then(|i| {
            let rest = &words[i..];
            let p = rest.iter().position(|w| *w == "port")?;
            match rest.get(p + 1)? {
                &"=" => rest.get(p + 2).and_then(|w| port_of(w)).map(|n| (n, n)),
                w => {
                    let (a, b) = w.split_once(':')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                }
            }
        });
        let opens = match port {
            None => !words.contains(&"port"),
            Some((lo, hi)) => protected.iter().any(|(a, b)| lo <= *b && *a <= hi),
        };
        if opens {
            out.push(t.to_owned());
        }
    }
    out
}

/// `passes_before` over the running ruleset (`pfctl -s rules`).
pub fn passes_before_anchor(anchor: &AnchorName, protected: &[(u16, u16)]) -> Result<Vec<String>> {
    let rules = run(&["-s", "rules"], None)?;
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    Ok(passes_before(&rules, anchor, protected, &services))
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
    fn quick_passes_of_protected_ports_before_the_anchor_are_found() {
        let a = AnchorName::new("pfknock").unwrap();
        let services = "ssh\t\t22/tcp\n# comment\nhttps\t443/tcp\n";
        let rules = "block drop all\n\
                     pass in quick proto tcp from any to any port = ssh flags S/SA keep state\n\
                     pass in quick proto tcp from any to any port = 443 flags S/SA keep state\n\
                     pass in proto tcp from any to any port = 22 flags S/SA keep state\n\
                     pass in quick proto udp from any to any port = 22 keep state\n\
                     pass in quick proto tcp from any to any port 20:30 flags S/SA keep state\n\
                     pass in quick all flags S/SA keep state\n\
                     anchor \"pfknock\" all\n\
                     pass in quick proto tcp from any to any port = ssh flags S/SA keep state\n";
        let got = passes_before(rules, &a, &[(22, 22)], services);
        assert_eq!(
            got,
            [
                "pass in quick proto tcp from any to any port = ssh flags S/SA keep state",
                "pass in quick proto tcp from any to any port 20:30 flags S/SA keep state",
                "pass in quick all flags S/SA keep state",
            ],
            "not a non-quick pass (the anchor's quick block wins), not udp, not after the anchor"
        );
        assert!(passes_before("block drop all\n", &a, &[(22, 22)], services).is_empty());
    }

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
