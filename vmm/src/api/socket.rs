//! The API's Unix socket: created owner-only (mode 0600, with the umask
//! narrowed around `bind`, so there is no window with wider rights), never
//! through a symlink or over a file that is not a socket, replacing a stale
//! socket only when nothing answers on it, and refused with one line when
//! another process serves it.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why the socket cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process accepts connections on it.
    #[error("--api-socket {0}: another process is serving this socket (is another minivmm running?): stop it or choose another path")]
    InUse(PathBuf),
    /// Something other than a socket is at the path.
    #[error("--api-socket {path}: refusing to replace this {kind}, which is not a socket: remove it or choose another path")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// The filesystem refused.
    #[error("--api-socket {path}: cannot {what}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The listening socket; [`ApiSocket::remove`] deletes the file if it is
/// still the one bound here.
pub struct ApiSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: (u64, u64),
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Restores the umask when dropped.
struct Umask(libc::mode_t);

impl Umask {
    fn narrow() -> Self {
        // SAFETY: umask only swaps the process's file mode mask.
        Self(unsafe { libc::umask(0o177) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(self.0) };
    }
}

impl ApiSocket {
    /// Binds `path` (see the module comment). Call it before other threads
    /// exist: the umask is process-wide.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let io = |what, source| SocketError::Io {
            path: path.to_path_buf(),
            what,
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    log::info!("api: replacing the stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(|e| io("remove the stale socket", e))?;
                }
                Err(e) => return Err(io("check the existing socket", e)),
            },
            Ok(meta) => {
                return Err(SocketError::NotASocket {
                    path: path.to_path_buf(),
                    kind: kind_of(&meta),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspect the path", e)),
        }
        // bind(2) never follows a symlink at the path: one created since
        // the check above makes it fail with EADDRINUSE.
        let listener = {
            let _mask = Umask::narrow();
            UnixListener::bind(path).map_err(|e| io("bind", e))?
        };
        let meta = std::fs::symlink_metadata(path).map_err(|e| io("inspect the socket", e))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// A second handle on the listener (for the server thread).
    pub fn try_clone_listener(&self) -> std::io::Result<UnixListener> {
        self.listener.try_clone()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the socket file, unless something else replaced it.
    pub fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minivmm-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn owner_only_in_use_and_stale() {
        let d = dir("sock");
        let path = d.join("api.sock");
        let socket = ApiSocket::bind(&path).expect("bind");
        let mode = std::fs::symlink_metadata(&path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let err = ApiSocket::bind(&path).err().expect("in use");
        assert!(matches!(err, SocketError::InUse(_)), "{err}");
        assert!(err.to_string().contains("another process is serving"));
        // Closed: the file stays but nothing listens, so it is replaced.
        drop(socket);
        assert!(path.exists());
        let again = ApiSocket::bind(&path).expect("stale socket replaced");
        again.remove();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn never_replaces_or_follows_other_files() {
        let d = dir("files");
        let file = d.join("file");
        std::fs::write(&file, "keep").expect("write");
        let err = ApiSocket::bind(&file).err().expect("file");
        assert!(
            err.to_string()
                .contains("regular file, which is not a socket"),
            "{err}"
        );
        let link = d.join("link");
        std::os::unix::fs::symlink(d.join("target.sock"), &link).expect("symlink");
        let err = ApiSocket::bind(&link).err().expect("symlink");
        assert!(err.to_string().contains("this symlink"), "{err}");
        assert!(!d.join("target.sock").exists());
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep");
        let err = ApiSocket::bind(&d).err().expect("dir");
        assert!(err.to_string().contains("directory"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
