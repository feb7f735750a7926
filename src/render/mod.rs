//! Config → firewall text. Pure functions returning `String`, stable order.
#![forbid(unsafe_code)]

pub mod nft;
pub mod pf;
