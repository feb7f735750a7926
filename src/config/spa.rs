//! A service's `spa` (signed knocks) and the global `spa_user`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::*;
use crate::error::Result;
use crate::name::{Port, PortRange, Proto, Secs};

/// The default `spa.window`: how far a stamp may be off, either way.
pub const DEFAULT_SPA_WINDOW: Secs = Secs(30);
/// The default `spa_user`.
pub const DEFAULT_SPA_USER: &str = "_pfknock";

/// `spa`: a UDP port, a keys directory (relative to the config's), a
/// window of 5 s to 10 min, and `nat`.
pub(super) fn spa(
    cx: &mut Ctx<'_>,
    r: &RawService,
    proto: &[Proto],
    protect: &[PortRange],
) -> Result<Option<Spa>> {
    let Some(sp) = &r.spa else {
        return Ok(None);
    };
    let rs = sp.get_ref();
    let port =
        Port::new(*rs.port.get_ref()).map_err(|m| cx.err(rs.port.span(), "service.spa.port", m))?;
    if proto.contains(&Proto::Udp) && protect.iter().any(|p| p.contains(port)) {
        return Err(cx.err(
            rs.port.span(),
            "service.spa.port",
            format!("{port} is a protected UDP port"),
        ));
    }
    let window = cx.opt(&rs.window, "service.spa.window", DEFAULT_SPA_WINDOW)?;
    if !(5..=600).contains(&window.0) {
        let span = rs.window.as_ref().map(|s| s.span()).unwrap_or_default();
        return Err(cx.err(span, "service.spa.window", "must be 5s to 10m"));
    }
    let text = rs.keys.get_ref();
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(cx.err(
            rs.keys.span(),
            "service.spa.keys",
            "must be a directory path",
        ));
    }
    let keys = if Path::new(text).is_absolute() {
        PathBuf::from(text)
    } else {
        cx.file.parent().unwrap_or(Path::new(".")).join(text)
    };
    Ok(Some(Spa {
        port,
        keys,
        window,
        nat: rs.nat.unwrap_or(false),
    }))
}

/// `spa_user`: a user name, as the password database spells them.
pub(super) fn spa_user(cx: &mut Ctx<'_>, raw: &RawConfig) -> Result<String> {
    let Some(u) = &raw.spa_user else {
        return Ok(DEFAULT_SPA_USER.into());
    };
    let s = u.get_ref();
    let ok = (1..=32).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if !ok || s == "root" {
        return Err(cx.err(
            u.span(),
            "spa_user",
            format!(
                "\"{}\": must be a user other than root: letters, digits, '_', '-' and '.'",
                crate::name::shown(s)
            ),
        ));
    }
    Ok(s.clone())
}
