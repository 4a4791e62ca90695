//! Keys medic keeps outside its database, in `<data_dir>/secrets/` (directory 0700, files 0600).
//!
//! What lives here is what a copy of `medic.db` must not be enough for: the key that seals outbox bodies
//! (approval links), the incident-link key, the audit chain's key and head checkpoint, and the decision
//! journal that keeps a used approval link used even when an older database is restored. Back this
//! directory up separately from the database (see README, "Approvals: who can do what").

use std::io::Write;
use std::path::{Path, PathBuf};

/// The secrets directory of one installation.
#[derive(Debug, Clone)]
pub struct SecretsDir {
    path: PathBuf,
}

impl SecretsDir {
    /// Opens (creating, 0700) `<data_dir>/secrets`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("secrets");
        std::fs::create_dir_all(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The key named `name` (its first line, at least 32 characters), generated on first use.
    pub fn key(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let path = self.file(name);
        if !path.exists() {
            write_private(&path, &crate::random_token(32))?;
        }
        let text = std::fs::read_to_string(&path)?;
        let key = text.lines().next().unwrap_or("").trim();
        if key.len() < 32 {
            return Err(std::io::Error::other(format!("{} holds a key shorter than 32 characters", path.display())));
        }
        Ok(key.as_bytes().to_vec())
    }
}

/// Writes a file only the owner can read (0600 whatever the umask), then syncs it.
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let mut file = open_private(path, false)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Opens a file for writing with mode 0600 (also when it already existed with wider bits).
pub fn open_private(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    if append {
        options.append(true).create(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// An SQLite database file and its `-wal`/`-shm` companions: owner only, whatever the umask (SQLite
/// creates the companions with the main file's mode).
pub fn make_db_private(db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            if path.exists() {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

/// Replaces `path` atomically (write a 0600 temporary file, then rename over).
pub fn replace_private(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = open_private(&tmp, false)?;
        file.write_all(content.as_bytes())?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretsDir::open(dir.path()).unwrap();
        let a = secrets.key("k").unwrap();
        assert_eq!(a, secrets.key("k").unwrap(), "the same key on the second read");
        assert_ne!(a, secrets.key("other").unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(secrets.file("k")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = std::fs::metadata(secrets.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        std::fs::write(secrets.file("short"), "abc\n").unwrap();
        assert!(secrets.key("short").unwrap_err().to_string().contains("shorter than 32"));
    }
}
