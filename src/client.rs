//! The commands a client runs, with no firewall of its own: `knock`
//! (connections, or one signed datagram), `keygen` and `ports`.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::clock::now;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::output::out;
use crate::{cmd, knock, name, say};

/// The knock ports of a rotating service at a time (default: now).
fn rotating_ports(service: &str, r: &config::Rotate, at: Option<i64>) -> Result<Vec<u16>> {
    let secret = crate::rotate::read_secret(&r.secret)?;
    let now = at.unwrap_or_else(now);
    let (ports, _) = crate::rotate::ports_now(&secret, service, r, now);
    Ok(ports.iter().map(|p| p.get()).collect())
}

/// `keygen --spa`: a key pair for signed knocks.
pub fn keygen_spa(file: &Path) -> Result<()> {
    let public = crate::spa::keys::keygen(file)?;
    say!(
        "{}: a new Ed25519 key for signed knocks, mode 0600; its public key in {}, \
         for the server's spa.keys directory",
        name::no_controls(&file.display().to_string()),
        name::no_controls(&public.display().to_string())
    );
    Ok(())
}

pub fn keygen(file: &Path) -> Result<()> {
    crate::rotate::keygen(file)?;
    say!(
        "{}: a new 256-bit secret, mode 0600",
        name::no_controls(&file.display().to_string())
    );
    Ok(())
}

pub fn ports(path: &Path, service: &str, at: Option<i64>) -> Result<()> {
    let (cfg, _) = Config::read(path)?;
    let s = cmd::one_service(&cfg, Some(service))?;
    let Some(rot) = &s.rotate else {
        let fixed: Vec<String> = s.knock.iter().map(|p| p.to_string()).collect();
        return Err(Error::Usage(format!(
            "service {}: no rotate: its knock ports are always {}",
            s.name,
            fixed.join(" ")
        )));
    };
    let ports = rotating_ports(&s.name, rot, at)?;
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    out(&format!("{}\n", list.join(" ")))
}

/// A rotating knock's ports of the moment, asked again before each repeat.
fn port_source(name: &str, rot: config::Rotate) -> knock::PortSource {
    let name = name.to_owned();
    knock::PortSource(std::sync::Arc::new(move || {
        rotating_ports(&name, &rot, None)
    }))
}

/// `knock -s SERVICE`: the service's knock ports (unless given; those of
/// the moment when it rotates, with `secret` in place of its own), and the
/// hits and family it wants.
/// `knock --spa`'s datagram, but for the time and nonce.
fn signed_knock(name: &str, key: &Path, close: bool, nat: bool) -> Result<knock::Signed> {
    Ok(knock::Signed {
        key: std::sync::Arc::new(crate::spa::keys::read_private(key)?),
        service: name.to_owned(),
        action: if close {
            crate::spa::Action::Close
        } else {
            crate::spa::Action::Open
        },
        nat,
    })
}

/// `knock --spa`: the service (`-s`, or the config's one service with
/// `spa`), and the one port given or its `spa.port` (then also its
/// family).
fn signed_port(
    path: &Path,
    name: Option<&str>,
    ports: &[u16],
) -> Result<(String, u16, name::Family)> {
    if ports.len() > 1 {
        return Err(Error::Usage(
            "--spa sends one datagram to one port: give one, or none".into(),
        ));
    }
    if let (Some(n), [p]) = (name, ports) {
        return Ok((n.to_owned(), *p, name::Family::Any));
    }
    let (cfg, _) = Config::read(path).map_err(|e| {
        Error::Usage(format!(
            "{e}: without the server's config, give -s SERVICE and the signed-knock port \
             after the host"
        ))
    })?;
    let s = match name {
        Some(n) => cmd::one_service(&cfg, Some(n))?,
        None => {
            let with: Vec<&config::Service> =
                cfg.services.iter().filter(|s| s.spa.is_some()).collect();
            match with.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Error::Usage(
                        "--spa: no service of the config takes signed knocks".into(),
                    ));
                }
                _ => {
                    return Err(Error::Usage(
                        "--spa: several services take signed knocks: name one with -s".into(),
                    ));
                }
            }
        }
    };
    let sp = s
        .spa
        .as_ref()
        .ok_or_else(|| Error::Usage(format!("--spa: service {} takes no signed knocks", s.name)))?;
    let port = ports.first().copied().unwrap_or(sp.port.get());
    Ok((s.name.clone(), port, s.family))
}

fn service_knock(
    path: &Path,
    name: &str,
    secret: Option<&Path>,
    close: bool,
    ports: &mut Vec<u16>,
    ports_now: &mut Option<knock::PortSource>,
) -> Result<(u32, name::Family)> {
    let (cfg, warnings) = Config::read(path)?;
    for w in warnings {
        say!("pfknock: {}", name::no_controls(&w.to_string()));
    }
    let s = cmd::one_service(&cfg, Some(name))?;
    if close {
        let p = s.close.ok_or_else(|| {
            Error::Usage(format!("--close: service {} has no close port", s.name))
        })?;
        *ports = vec![p.get()];
    } else if ports.is_empty() {
        *ports = match &s.rotate {
            Some(rot) => {
                let mut rot = rot.clone();
                if let Some(f) = secret {
                    rot.secret = f.to_owned();
                }
                let p = rotating_ports(&s.name, &rot, None)?;
                *ports_now = Some(port_source(&s.name, rot));
                p
            }
            None if secret.is_some() => {
                return Err(Error::Usage(format!(
                    "--secret: service {} does not rotate its knock ports",
                    s.name
                )));
            }
            None => s.knock.iter().map(|p| p.get()).collect(),
        };
    }
    Ok((s.hits(), s.family))
}

/// The family `-4` or `-6` asks for.
fn asked_family(inet: bool, inet6: bool) -> name::Family {
    match (inet, inet6) {
        (true, _) => name::Family::Only(name::Af::V4),
        (_, true) => name::Family::Only(name::Af::V6),
        _ => name::Family::Any,
    }
}

/// `knock`: the ports, hits and family from the flags, or from the
/// service's config; then knock, or relay as ssh's ProxyCommand.
pub fn knock(path: &Path, mut k: crate::cli::KnockArgs) -> Result<()> {
    let mut family = asked_family(k.inet, k.inet6);
    let mut signed = None;
    let (mut ports, mut default_hits) = (std::mem::take(&mut k.ports), 6);
    // Rotating: the ports of the moment, again before each repeat.
    let mut ports_now = None;
    if let (Some(name), Some(file), Some(r)) = (&k.service, &k.secret, &k.range) {
        // A rotating knock without a config: all from the flags.
        let rot = config::Rotate {
            secret: file.clone(),
            step: k.step.unwrap_or(config::DEFAULT_STEP),
            range: r
                .parse()
                .map_err(|m| Error::Usage(format!("--range {}: {m}", name::shown(r))))?,
            ports: k.count.unwrap_or(1) as usize,
        };
        ports = rotating_ports(name, &rot, None)?;
        ports_now = Some(port_source(name, rot));
    } else if let Some(key) = &k.spa {
        let (name, port, of_service) = signed_port(path, k.service.as_deref(), &ports)?;
        ports = vec![port];
        if family == name::Family::Any {
            family = of_service;
        }
        signed = Some(signed_knock(&name, key, k.close, k.nat)?);
    } else if let Some(name) = &k.service {
        if k.close && !ports.is_empty() {
            return Err(Error::Usage(
                "--close knocks the service's close port: give no ports".into(),
            ));
        }
        let secret = k.secret.as_deref();
        let (hits, of_service) =
            service_knock(path, name, secret, k.close, &mut ports, &mut ports_now)?;
        default_hits = hits;
        if family == name::Family::Any {
            family = of_service;
        }
    }
    let o = knock::Opts {
        host: k.host,
        ports,
        hits: k.hits.unwrap_or(default_hits),
        delay: std::time::Duration::from_millis(k.delay),
        gap: std::time::Duration::from_millis(k.gap),
        timeout: std::time::Duration::from_millis(k.timeout),
        family,
        verify: k.verify,
        retries: 5,
        ports_now,
        report: !k.quiet && k.proxy.is_none(),
        signed,
    };
    match k.proxy {
        Some(p) => knock::proxy(&o, p, std::time::Duration::from_secs(k.idle)),
        None => knock_and_say(&o, k.quiet),
    }
}

fn knock_and_say(o: &knock::Opts, quiet: bool) -> Result<()> {
    let ip = knock::knock(o)?;
    if !quiet {
        match o.verify {
            Some(v) => say!("{}: open", std::net::SocketAddr::new(ip, v)),
            // The firewall answers a knock that did not count (a full
            // set, a slow knock) just as one that did; a signed knock is
            // not answered at all.
            None => say!("not verified: --verify PORT checks that the port opened"),
        }
    }
    Ok(())
}
