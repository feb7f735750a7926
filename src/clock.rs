//! The wall clock, the clock of pf's table time stamps and of nftables'
//! element timers as pfknock reads them.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds, the clock of pf's table time stamps.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Wall-clock milliseconds, the resolution of nftables' element timers.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
