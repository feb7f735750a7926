//! The config as serde reads it, with the span of every value, and the
//! context (`Ctx`) that turns a span into file, line and key.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::*;
use crate::error::{Error, Result};
use crate::name::Net;

// ---- raw, as serde reads it -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) anchor: Option<Spanned<String>>,
    pub(super) facility: Option<Spanned<String>>,
    pub(super) poll: Option<Spanned<String>>,
    pub(super) unload: Option<bool>,
    pub(super) nflog_group: Option<Spanned<i64>>,
    pub(super) log_burst: Option<Spanned<i64>>,
    pub(super) nft_include: Option<Spanned<String>>,
    pub(super) spa_user: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) service: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub(super) expire: Vec<Spanned<RawExpire>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Spanned<String>,
    pub(super) table: Option<Spanned<String>>,
    pub(super) protect: Spanned<Vec<Spanned<IntOrStr>>>,
    pub(super) proto: Option<Spanned<OneOrMany>>,
    pub(super) knock: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(super) close: Option<Spanned<i64>>,
    pub(super) rotate: Option<Spanned<RawRotate>>,
    pub(super) rate: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) expire: Option<Spanned<String>>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) from: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) on: Option<Spanned<String>>,
    pub(super) to: Option<Spanned<OneOrMany>>,
    pub(super) family: Option<Spanned<String>>,
    pub(super) log: Option<bool>,
    pub(super) block: Option<Spanned<bool>>,
    pub(super) renew: Option<bool>,
    pub(super) size: Option<Spanned<i64>>,
    pub(super) prefix6: Option<Spanned<i64>>,
    pub(super) spa: Option<Spanned<RawSpa>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpa {
    pub(super) port: Spanned<i64>,
    pub(super) keys: Spanned<String>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) nat: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotate {
    pub(super) secret: Spanned<String>,
    pub(super) range: Spanned<String>,
    pub(super) step: Option<Spanned<String>>,
    pub(super) ports: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpire {
    pub(super) table: Spanned<String>,
    pub(super) anchor: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) expire: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum IntOrStr {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

// ---- locating errors --------------------------------------------------------

/// 1-based line of a byte offset.
pub(super) fn line_of(src: &str, byte: usize) -> usize {
    src[..byte.min(src.len())].matches('\n').count() + 1
}

/// The dotted key a byte offset belongs to, from the toml parser's own
/// spans (`DeTable::parse_recoverable` keeps a span for every key and
/// value, also around a syntax error): the path of keys whose key or value
/// contains the offset, through tables and arrays of tables
/// (`service.rate` for a value inside any `[[service]]`).
pub(super) fn key_at(src: &str, byte: usize) -> String {
    use toml::de::{DeTable, DeValue};
    pub(super) fn inside(r: &Range<usize>, byte: usize) -> bool {
        r.start <= byte && byte < r.end.max(r.start + 1)
    }
    // A key owns the rest of its line too: a syntax error after a
    // `[[header]]` or a `key =` belongs to that key.
    let key_line = |r: &Range<usize>, byte: usize| {
        let end = src[r.end.min(src.len())..]
            .find('\n')
            .map_or(src.len(), |i| r.end + i);
        r.start <= byte && byte <= end
    };
    // The key path below `v` that holds `byte`. (An array of tables'
    // element spans only its `[[header]]`: look into every element.)
    pub(super) fn below(
        v: &DeValue<'_>,
        byte: usize,
        key_line: &dyn Fn(&Range<usize>, usize) -> bool,
    ) -> Option<Vec<String>> {
        match v {
            DeValue::Table(t) => find(t, byte, key_line),
            DeValue::Array(items) => items
                .iter()
                .find_map(|i| below(i.get_ref(), byte, key_line)),
            _ => None,
        }
    }
    pub(super) fn find(
        t: &DeTable<'_>,
        byte: usize,
        key_line: &dyn Fn(&Range<usize>, usize) -> bool,
    ) -> Option<Vec<String>> {
        for (k, v) in t.iter() {
            let deeper = below(v.get_ref(), byte, key_line);
            if deeper.is_some() || key_line(&k.span(), byte) || inside(&v.span(), byte) {
                let mut p = vec![k.get_ref().to_string()];
                p.extend(deeper.unwrap_or_default());
                return Some(p);
            }
        }
        None
    }
    let (doc, _) = DeTable::parse_recoverable(src);
    find(doc.get_ref(), byte, &key_line)
        .unwrap_or_default()
        .join(".")
}

/// `s` without control characters, cut after `max` bytes with "…".
pub(super) fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = crate::name::no_controls(&s[..end]);
    if end < s.len() {
        out.push('…');
    }
    out
}

/// serde's words for Rust types, in the config's words.
pub(super) fn plain(msg: &str) -> String {
    msg.replace('\n', " ")
        .trim()
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a sequence", "expected a list")
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) warnings: Vec<Warning>,
    /// Where each line of `src` ends, for `line` (counting newlines from
    /// the start for every service made a large config quadratic).
    pub(super) newlines: Vec<usize>,
}

impl Ctx<'_> {
    /// The 1-based line of a byte offset of `src`.
    pub(super) fn line(&self, byte: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < byte) + 1
    }

    /// An error at `span`; an empty span at 0 means the file as a whole.
    pub(super) fn err(&self, span: Range<usize>, key: &str, msg: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.to_owned(),
            line: if span == (0..0) {
                0
            } else {
                self.line(span.start)
            },
            key: key.to_owned(),
            msg: msg.into(),
        }
    }

    pub(super) fn warn(&mut self, span: Range<usize>, key: &str, msg: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            msg: msg.into(),
        });
    }

    pub(super) fn parse<T: std::str::FromStr<Err = String>>(
        &self,
        v: &Spanned<String>,
        key: &str,
    ) -> Result<T> {
        v.get_ref().parse().map_err(|m| self.err(v.span(), key, m))
    }

    pub(super) fn opt<T: std::str::FromStr<Err = String>>(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: T,
    ) -> Result<T> {
        match v {
            Some(v) => self.parse(v, key),
            None => Ok(default),
        }
    }

    /// A list of addresses and networks, in O(n log n): no entry twice,
    /// and none inside another (nftables refuses overlapping intervals in
    /// a set, and pf would hold the smaller one for nothing). A list that
    /// covers every address of a family gets a warning that says so.
    pub(super) fn nets(
        &mut self,
        v: &Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Result<Vec<Net>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let items = v.get_ref();
        let mut out: Vec<Net> = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.parse(item, key)?);
        }
        // Sort positions by (family, first address, last address desc).
        let mut order: Vec<usize> = (0..out.len()).collect();
        let k = |i: usize| {
            let (lo, hi) = out[i].range();
            (out[i].addr().is_ipv6(), lo, std::cmp::Reverse(hi))
        };
        order.sort_by_key(|&i| k(i));
        // Sweep: the widest interval seen so far in this family.
        let mut cover: Option<usize> = None;
        for &i in &order {
            if let Some(c) = cover {
                let same_family = out[c].addr().is_ipv6() == out[i].addr().is_ipv6();
                if same_family && out[i].range().0 <= out[c].range().1 {
                    // Blame the one that comes later in the file.
                    let (first, later) = if c < i { (c, i) } else { (i, c) };
                    let msg = if out[first] == out[later] {
                        format!("{} is listed twice", out[later])
                    } else {
                        format!(
                            "{} overlaps {} (line {}): list each address once",
                            out[later],
                            out[first],
                            self.line(items[first].span().start)
                        )
                    };
                    return Err(self.err(items[later].span(), key, msg));
                }
                if !same_family || out[i].range().1 > out[c].range().1 {
                    cover = Some(i);
                }
            } else {
                cover = Some(i);
            }
        }
        // Disjoint and sorted: a family is covered when the intervals run
        // end to end from its first address to its last.
        for v6 in [false, true] {
            let fam: Vec<(u128, u128)> = order
                .iter()
                .filter(|&&i| out[i].addr().is_ipv6() == v6)
                .map(|&i| out[i].range())
                .collect();
            let last = if v6 { u128::MAX } else { u32::MAX as u128 };
            let runs = fam.first().is_some_and(|f| f.0 == 0)
                && fam
                    .windows(2)
                    .all(|w| w[0].1.checked_add(1) == Some(w[1].0))
                && fam.last().is_some_and(|l| l.1 == last);
            if runs {
                let what = if v6 { "IPv6" } else { "IPv4" };
                let why = if key.ends_with("allow") {
                    format!(
                        "covers every {what} address: the protected ports are open to all of them, for ever"
                    )
                } else {
                    format!("covers every {what} address: anyone may knock, as without from")
                };
                self.warn(v.span(), key, why);
            }
        }
        Ok(out)
    }
}
