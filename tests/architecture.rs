//! ARCHITECTURE.md's table of who may use whom, checked against the code:
//! every `crate::module` a source file names (outside comments) must be in
//! its module's row, and every row may list only modules of rows below it,
//! so the modules form layers, each using only lower ones.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The table's rows, top (highest layer) first.
fn rows() -> Vec<(String, BTreeSet<String>)> {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let mut out = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 2 || cells[0] == "module" || cells[0].starts_with("---") {
            continue;
        }
        out.push((
            cells[0].to_owned(),
            cells[1].split_whitespace().map(str::to_owned).collect(),
        ));
    }
    out
}

fn rules() -> BTreeMap<String, BTreeSet<String>> {
    rows().into_iter().collect()
}

/// The code without its comments (`//` to the end of the line; the
/// crate writes no block comments), so that a doc comment naming a
/// module is not a use of it.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| {
            // A `//` inside a string literal ("https://…") is rare in
            // this crate and would only hide a use, never invent one.
            l.find("//").map_or(l, |i| &l[..i])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top module a source file belongs to (`pf/marshal.rs` → `pf`).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let m = first.trim_end_matches(".rs").to_owned();
    (m != "lib" && m != "main").then_some(m)
}

/// The modules a file names: `crate::x`, and `use crate::{x, y::z}`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                let m: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !m.is_empty() && m != "self" {
                    out.insert(m);
                }
            }
        } else {
            let m: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !m.is_empty() {
                out.insert(m);
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_use_only_what_architecture_md_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules = rules();
    assert!(rules.len() > 15, "the table was read: {rules:?}");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for f in all {
        let rel = f.strip_prefix(&src).unwrap();
        let Some(m) = module_of(rel) else { continue };
        seen.insert(m.clone());
        let Some(allowed) = rules.get(&m) else {
            broken.push(format!("{m}: no row in ARCHITECTURE.md"));
            continue;
        };
        let text = code(&fs::read_to_string(&f).unwrap());
        for u in uses(&text) {
            if u != m && !allowed.contains(&u) {
                broken.push(format!(
                    "{}: uses {u}, which its row does not list",
                    rel.display()
                ));
            }
        }
    }
    for m in rules.keys() {
        assert!(
            seen.contains(m),
            "ARCHITECTURE.md lists {m}, which is not a module"
        );
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Layers: a row lists only modules whose rows come after it (`say` is
/// the `say!` macro of `output`), so no two modules use each other, even
/// through others.
#[test]
fn the_table_is_layered() {
    let rows = rows();
    let mut broken = Vec::new();
    for (i, (m, uses)) in rows.iter().enumerate() {
        for u in uses {
            let u = if u == "say" { "output" } else { u.as_str() };
            match rows.iter().position(|(n, _)| n == u) {
                Some(j) if j > i => {}
                Some(_) => broken.push(format!("{m} uses {u}, which is not below it")),
                None => broken.push(format!("{m} uses {u}, which has no row")),
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_crate_root_only_declares_modules() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines().map(str::trim) {
        let ok = line.is_empty()
            || line.starts_with("//")
            || line.starts_with("#![")
            || line.starts_with("#[allow(unsafe_code)]")
            || line.starts_with("#[cfg(target_os = ")
            || (line.starts_with("pub mod ") && line.ends_with(';'));
        assert!(ok, "src/lib.rs: {line}");
    }
}

#[test]
fn threads_start_only_through_sys_unix_spawn() {
    // run forks to detach; sys_unix::detach refuses once a thread that
    // sys_unix::spawn started exists, so no other spawn may hide one.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut found = Vec::new();
    for f in all {
        if f.ends_with("sys_unix.rs") {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains("thread::spawn")
                || line.contains("thread::Builder")
                || line.contains("thread::scope")
            {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Rooms with one concern each: no source file over 700 lines (split by
/// concern, as config/, nft/, netlink/ and daemon/ are).
#[test]
fn no_source_file_is_over_700_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let long: Vec<String> = all
        .iter()
        .map(|f| (f, fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > 700)
        .map(|(f, n)| format!("{}: {n} lines", f.strip_prefix(&src).unwrap().display()))
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// The lines of each function in `text`, from its `fn` line to the brace
/// that closes it at the same indentation (rustfmt's layout), as
/// (name, lines).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        let sig = [
            "fn ",
            "pub fn ",
            "pub(super) fn ",
            "pub(crate) fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .find_map(|p| t.strip_prefix(p));
        let Some(rest) = sig else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body's opening brace ends the signature; a `;` means none.
        let Some(open) = (i..lines.len()).find(|&j| {
            let e = lines[j].trim_end();
            e.ends_with('{') || e.ends_with(';')
        }) else {
            break;
        };
        if lines[open].trim_end().ends_with(';') {
            i = open + 1;
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let end = (open + 1..lines.len())
            .find(|&j| lines[j] == close)
            .unwrap_or(lines.len() - 1);
        out.push((name, end - i + 1));
        i = end + 1;
    }
    out
}

/// No function over 80 lines, tests included.
#[test]
fn no_function_is_over_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut long = Vec::new();
    for f in &all {
        for (name, n) in function_lengths(&fs::read_to_string(f).unwrap()) {
            if n > 80 {
                long.push(format!(
                    "{}: fn {name}: {n} lines",
                    f.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
    // The measure itself: a function of three lines is three lines.
    assert_eq!(
        function_lengths(
            "fn a() {\n    x();\n}\n    fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\n"
        ),
        [("a".to_owned(), 3), ("b".to_owned(), 5)]
    );
}

/// The daemon's machine is pure: its files (tests aside) use, of the
/// crate, only values and names (config, kernel events, names, the table
/// reference type, the verbs' change values, policy) and, in the daemon,
/// only the log's types and the book; nothing that reads or writes (no
/// `Tables`, `Loader`, clock, tools, sockets, files, processes).
#[test]
fn the_daemon_machine_does_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon/machine");
    let mut list = Vec::new();
    files(&dir, &mut list);
    assert!(list.len() >= 4, "{list:?}");
    let allowed = [
        "config",
        "kevents",
        "name",
        "names",
        "tables",
        "verbs",
        "policy",
        "catalogue",
        "daemon",
    ];
    for f in list
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "tests"))
    {
        let text = code(&fs::read_to_string(f).unwrap());
        for m in uses(&text) {
            assert!(
                allowed.contains(&m.as_str()),
                "{}: uses crate::{m}",
                f.display()
            );
        }
        for bad in [
            "Tables",
            "Loader",
            "std::fs",
            "std::io",
            "std::process",
            "std::time",
            "std::os",
            "std::thread",
            "clock",
            "tool::",
            "libc",
            "rustix",
            "UdpSocket",
            "TcpStream",
            "super::super",
            "crate::daemon::Daemon",
        ] {
            assert!(!text.contains(bad), "{}: names {bad}", f.display());
        }
        // In machine/mod.rs `super` is the daemon; below it, the machine.
        let daemon_super = f.ends_with("mod.rs");
        for line in text
            .lines()
            .filter(|l| l.contains("crate::daemon::") || (daemon_super && l.contains("super::")))
        {
            let ok = [
                "crate::daemon::lines",
                "crate::daemon::machine",
                "super::lines",
                "super::book",
            ]
            .iter()
            .any(|p| line.contains(p));
            assert!(ok, "{}: {line}", f.display());
        }
        // Of `tables`, the values only (the `Tables` trait is named
        // nowhere: see the list above).
        for line in text.lines().filter(|l| l.contains("crate::tables::")) {
            let names = line.split("crate::tables::").nth(1).unwrap_or("");
            for name in names
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .filter(|n| !n.is_empty())
            {
                assert!(
                    ["TableRef", "Entry", "TableStat", "Pool", "PoolUse"].contains(&name),
                    "{}: {line}",
                    f.display()
                );
            }
        }
    }
}
