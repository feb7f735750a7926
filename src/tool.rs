//! Running the firewall's own tools, pfctl(8) and nft(8): arguments,
//! optional text on stdin, stdout back; on failure the tool's stderr,
//! joined into one line, becomes the error.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result, io_words};

/// The system directories where pfknock looks for the tools it runs, in
/// order. `$PATH` is not searched: pfknock runs as root.
pub const SYSTEM_DIRS: &[&str] = &["/sbin", "/usr/sbin", "/usr/local/sbin", "/bin", "/usr/bin"];

/// The variable that tests set to a directory of stand-in tools; it then
/// replaces `SYSTEM_DIRS` for pfctl, nft and conntrack alike.
pub const TOOL_DIR_VAR: &str = "PFKNOCK_TOOL_DIR";

/// The directories searched for a tool, in order.
pub fn dirs() -> Vec<std::path::PathBuf> {
    match std::env::var_os(TOOL_DIR_VAR) {
        Some(d) => vec![d.into()],
        None => SYSTEM_DIRS.iter().map(std::path::PathBuf::from).collect(),
    }
}

/// A tool by name from `dirs()`, or `None` when none has it.
pub fn find(name: &str) -> Option<std::path::PathBuf> {
    dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The processes this one started last, so that the daemon can tell its
/// own nft transactions from others' in the kernel's notifications.
static CHILDREN: std::sync::Mutex<std::collections::VecDeque<u32>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

fn remember(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        if c.len() >= 64 {
            c.pop_front();
        }
        c.push_back(pid);
    }
}

/// Did this process start `pid` (one of its last 64 tools)?
pub fn ours(pid: u32) -> bool {
    pid == std::process::id() || CHILDREN.lock().is_ok_and(|c| c.contains(&pid))
}

/// Run `argv` (program and leading arguments) with `args`. `name` is how
/// the tool is called in messages (`pfctl`, `nft`).
pub fn run(name: &str, argv: &[&Path], args: &[&str], input: Option<&str>) -> Result<String> {
    let (exe, pre) = argv.split_first().expect("a program to run");
    let fail = |msg: String| Error::Tool {
        tool: if args.is_empty() {
            name.to_owned()
        } else {
            format!("{name} {}", args.join(" "))
        },
        says: crate::error::ToolSays::of(&msg),
        msg,
    };
    let mut child = Command::new(exe)
        .args(pre.iter().copied())
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Tool {
            says: crate::error::ToolSays::Failed,
            tool: exe.display().to_string(),
            msg: io_words(&e),
        })?;
    remember(child.id());
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits early closes the pipe; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(io_words(&e)))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let msg = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(fail(if msg.is_empty() {
        format!("failed with {}", out.status)
    } else {
        msg
    }))
}
