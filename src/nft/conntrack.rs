//! Cutting a host's open connections to the protected ports with
//! conntrack(8) (`revoke --kill-states`).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::name::Net;

/// Delete the conntrack entries from `addr` to the protected ports of
/// `services` with conntrack(8), cutting open sessions: their next packet
/// meets the protected ports' rules as a new connection. Fails before
/// anything else is done when conntrack(8) is not installed.
pub fn kill_states(addr: &Net, services: &[&crate::config::Service]) -> Result<usize> {
    let exe = conntrack()?;
    let mut killed = 0;
    let fam = if addr.addr().is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    };
    let a = addr.to_string();
    for s in services {
        for proto in &s.proto {
            for r in &s.protect {
                for port in r.lo.get()..=r.hi.get() {
                    let p = port.to_string();
                    let args = [
                        "-D",
                        "-f",
                        fam,
                        "-s",
                        &a,
                        "-p",
                        &proto.to_string(),
                        "--dport",
                        &p,
                    ];
                    match crate::tool::run("conntrack", &[exe.as_path()], &args, None) {
                        Ok(_) => killed += 1,
                        // conntrack exits 1 when nothing matched.
                        Err(Error::Tool {
                            says: crate::error::ToolSays::NothingMatched,
                            ..
                        }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(killed)
}

/// conntrack(8), or why there is none.
pub fn conntrack() -> Result<std::path::PathBuf> {
    crate::tool::find("conntrack").ok_or_else(|| {
        Error::Other(
            "conntrack(8) is not installed (Debian: apt install conntrack): \
             --kill-states needs it; nothing was changed"
                .into(),
        )
    })
}

/// Rules per chain name.
pub type RuleCounts = BTreeMap<String, usize>;
