//! Config → firewall text. Pure functions returning `String`, stable order.
#![forbid(unsafe_code)]

pub mod nft;
pub mod pf;

use crate::config::Service;

/// The comment that opens a service's part of the rules, in both renderers.
pub fn service_comment(s: &Service) -> String {
    let knock: Vec<String> = s.knock.iter().map(|p| p.to_string()).collect();
    format!(
        "# service {}: knock {}, rate {}, ttl {} ({})",
        s.name,
        knock.join(" then "),
        s.rate,
        s.ttl,
        s.expire
    )
}
