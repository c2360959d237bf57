//! Process and port helpers for local servers: free ports, process groups,
//! finding binaries, and the unprivileged user servers run as under root.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::process::{Pid, Signal};

/// Ports this process has handed out and not yet released, so two servers of one test
/// process never get the same port even before either has bound it.
static RESERVED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn reserved() -> MutexGuard<'static, Option<HashSet<u16>>> {
    RESERVED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A port that is free on 127.0.0.1 now (the kernel's pick for port 0) and reserved in
/// this process until [`release_port`].
pub(crate) fn pick_port() -> std::io::Result<u16> {
    for _ in 0..64 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut guard = reserved();
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port: the kernel kept offering reserved ones",
    ))
}

pub(crate) fn release_port(port: u16) {
    if let Some(set) = reserved().as_mut() {
        set.remove(&port);
    }
}

/// Whether 127.0.0.1:`port` can be bound right now.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Send `signal` to every process of the group led by `pgid` (our children are started
/// as group leaders). A group that is already gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> std::io::Result<()> {
    let Some(pid) = pid(pgid) else {
        return Ok(());
    };
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether any process of the group `pgid` is still alive (zombies do not count).
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc: ask the kernel (zombies count there).
        return pid(pgid).is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok());
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        match proc_stat(name) {
            // A multi-threaded process whose leader thread is a zombie may still have
            // threads exiting, and its sockets open until the last one is gone.
            Some((state, group)) => {
                group == pgid && (!matches!(state, 'Z' | 'X') || live_threads(name) > 1)
            }
            None => false,
        }
    })
}

fn live_threads(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count())
}

/// (state, process group) of /proc/PID/stat.
fn proc_stat(pid: &str) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether the socket listening on TCP `port` belongs to a process of group `pgid`.
/// `None` when this cannot be told (no /proc, or no permission to look).
pub(crate) fn port_owned_by_group(pgid: u32, port: u16) -> Option<bool> {
    let mut inodes = HashSet::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let port_hex = local.rsplit(':').next().unwrap_or_default();
            if listening && u16::from_str_radix(port_hex, 16).ok() == Some(port) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if !readable {
        return None;
    }
    if inodes.is_empty() {
        return Some(false);
    }
    let mut any_unreadable = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some((_, group)) = proc_stat(name) else {
            continue;
        };
        if group != pgid {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{name}/fd")) else {
            any_unreadable = true;
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.to_str().is_some_and(|t| inodes.contains(t))
            {
                return Some(true);
            }
        }
    }
    if any_unreadable { None } else { Some(false) }
}

/// Find an executable by name in PATH, then in `extra_dirs`.
pub(crate) fn which(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A user (and group) to run a server as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// When this process is root: the unprivileged user servers that refuse root are run as
/// (`FOGG_TEST_RUN_AS`, default `nobody`). `None` when not root.
pub(crate) fn unprivileged() -> Option<Result<Ids, String>> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let name = std::env::var("FOGG_TEST_RUN_AS").unwrap_or_else(|_| "nobody".to_owned());
    Some(lookup_user(&name))
}

fn lookup_user(name: &str) -> Result<Ids, String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find user {name}: {e}"))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name)
            && let (Some(uid), Some(gid)) = (fields.get(2), fields.get(3))
            && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
        {
            return Ok(Ids { uid, gid });
        }
    }
    Err(format!(
        "no user {name:?} in /etc/passwd to run the server as (running as root); \
         set FOGG_TEST_RUN_AS to an unprivileged user"
    ))
}

/// `chown -R` to `ids`.
pub(crate) fn chown_tree(path: &Path, ids: Ids) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), ids)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_until_released() {
        let ports: Vec<u16> = (0..20).filter_map(|_| pick_port().ok()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(ports.len(), 20);
        assert_eq!(distinct.len(), 20);
        for port in ports {
            release_port(port);
        }
    }

    #[test]
    fn finds_own_listener() {
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let me = std::process::id();
        // Our own process group is not necessarily led by us; look ours up.
        let Some((_, pgid)) = proc_stat(&me.to_string()) else {
            return; // no /proc
        };
        assert_eq!(port_owned_by_group(pgid, addr.port()), Some(true));
        assert!(!port_is_free(addr.port()));
        drop(listener);
        assert_eq!(port_owned_by_group(pgid, addr.port()), Some(false));
    }

    #[test]
    fn nobody_exists_here() {
        if std::path::Path::new("/etc/passwd").exists() {
            assert!(lookup_user("nobody").is_ok());
            assert!(lookup_user("no-such-user-fogg").is_err());
        }
    }
}
