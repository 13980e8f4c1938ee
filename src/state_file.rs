//! Small JSON files that carry state across restarts (the policy's arm/snooze state and
//! daily budget, Home Assistant's counters): read with "missing means first start", written
//! atomically (a temporary file, then a rename over the old one) so a crash leaves the old
//! or the new file, never half of one. A leaf: each owner words its own messages.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path} ({source})")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a snapmail state file ({source})")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path} ({source})")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The file's contents; `None` when it does not exist yet.
pub async fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateFileError> {
    let shown = || path.display().to_string();
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateFileError::Parse {
                    path: shown(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateFileError::Read {
            path: shown(),
            source,
        }),
    }
}

/// Write `value` to `path` atomically, creating its directory if needed.
pub async fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateFileError> {
    let err = |source: std::io::Error| StateFileError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, bytes).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}
