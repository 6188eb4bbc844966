//! Who may use the engine socket: the peer checks (SO_PEERCRED) and the checks of the socket
//! file and of the folder it lives in, which both ends make before trusting the other.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{ServerError, io};

pub(super) fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The user id and process id of the process at the other end of `stream`.
pub fn peer_cred(stream: &UnixStream) -> std::io::Result<(u32, i32)> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok((cred.uid.as_raw(), cred.pid.as_raw_pid()))
}

/// The user id of the process at the other end of `stream`.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    peer_cred(stream).map(|(uid, _)| uid)
}

/// Accepts a peer only when it runs as `me`.
pub fn peer_allowed(peer: u32, me: u32) -> bool {
    peer == me
}

/// Checks that a socket file belongs to this user and no one else can open it.
pub fn check_socket_file(path: &Path) -> Result<(), ServerError> {
    let meta = std::fs::metadata(path).map_err(|_| ServerError::NotRunning(path.to_path_buf()))?;
    let me = my_uid();
    if meta.uid() != me {
        return Err(ServerError::Unsafe {
            path: path.to_path_buf(),
            why: format!("it belongs to user {}", meta.uid()),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServerError::Unsafe {
            path: path.to_path_buf(),
            why: format!("its mode is {mode:04o}"),
        });
    }
    Ok(())
}

/// Creates the socket's folder (mode 0700) where it is missing, then refuses it unless it is
/// this user's with mode 0700: in a folder that others can write to, another user could swap
/// the socket for one of their own between bind and chmod.
pub fn prepare_socket_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    check_socket_dir(dir, meta.uid(), meta.permissions().mode(), my_uid())
}

/// The rule of [`prepare_socket_dir`] on a folder's owner and mode, for user `me`.
pub fn check_socket_dir(dir: &Path, owner: u32, mode: u32, me: u32) -> Result<(), ServerError> {
    let mode = mode & 0o777;
    let why = if owner != me {
        format!("it belongs to user {owner}, not to you ({me}), with mode {mode:04o}")
    } else if mode != 0o700 {
        format!("its mode is {mode:04o}")
    } else {
        return Ok(());
    };
    Err(ServerError::UnsafeDir {
        path: dir.to_path_buf(),
        why,
    })
}
