//! Preview mode: with no `smtp` section, finished mails are written as `.eml` files that any
//! mail client opens, so a new user sees exactly what would be sent.

use std::path::{Path, PathBuf};

use super::spool::{write_atomic, Spool, SpoolError};

#[derive(Debug, Clone)]
pub struct PreviewDir {
    dir: PathBuf,
}

impl PreviewDir {
    pub fn open(dir: &Path) -> Result<PreviewDir, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(PreviewDir {
            dir: dir.to_owned(),
        })
    }

    /// Write one message; returns the file's path.
    pub fn write(&self, message_id: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
        let path = self.dir.join(format!("{}.eml", Spool::id_for(message_id)));
        write_atomic(&self.dir, &path, bytes)?;
        Ok(path)
    }
}
