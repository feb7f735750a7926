//! Config → firewall text. Pure functions returning `String`, stable order.
#![forbid(unsafe_code)]

pub mod nft;
pub mod pf;

use crate::config::Service;

/// The comment that opens a service's part of the rules, in both renderers.
pub fn service_comment(s: &Service) -> String {
    let knock: Vec<String> = (0..s.stages())
        .map(|k| {
            let p: Vec<String> = s.stage_ports(k).iter().map(|p| p.to_string()).collect();
            p.join(" or ")
        })
        .collect();
    let rotate = match &s.rotate {
        Some(r) => format!(
            " (rotating every {} in {}: this step's, the last{})",
            r.step,
            r.range.nft(),
            if s.knock_next.is_empty() {
                ""
            } else {
                ", or the next"
            }
        ),
        None => String::new(),
    };
    let close = s.close.map_or(String::new(), |p| format!(", close {p}"));
    if let (true, Some(spa)) = (knock.is_empty(), &s.spa) {
        return format!(
            "# service {}: signed knocks on udp {}{close}, ttl {} ({})",
            s.name, spa.port, s.ttl, s.expire
        );
    }
    format!(
        "# service {}: knock {}{rotate}{close}, rate {}, ttl {} ({})",
        s.name,
        knock.join(" then "),
        s.rate,
        s.ttl,
        s.expire
    )
}
