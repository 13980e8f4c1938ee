//! The durable spool: one file per message, written atomically before the first send
//! attempt and removed only after the server accepted the message.
//!
//! File format: one JSON line with the envelope and creation time, then the exact bytes to
//! send. A write goes to `*.tmp`, is fsynced, renamed into place, and the directory is
//! fsynced, so after a crash a message is either wholly there or not at all. Messages that
//! can never be delivered move to `dead/` with a `.reason` file beside them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const EXT: &str = "mail";

/// Why the spool could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("outbox.dir {path}: {source}; check that the directory is writable and the disk is not full")]
    Io { path: PathBuf, source: io::Error },
    #[error("outbox {path}: damaged spool file: {reason}")]
    Damaged { path: PathBuf, reason: String },
    /// Storing the message would pass `outbox.max_messages` or `outbox.max_bytes`.
    #[error("the outbox is full ({depth} messages, {bytes} bytes)")]
    Full { depth: usize, bytes: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The envelope and bookkeeping stored with each message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub from: String,
    pub to: Vec<String>,
    /// Unix seconds when the message entered the spool.
    pub created: u64,
    pub message_id: String,
}

/// One spooled message.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: Meta,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn age(&self, now: SystemTime) -> Duration {
        let created = UNIX_EPOCH + Duration::from_secs(self.meta.created);
        now.duration_since(created).unwrap_or_default()
    }
}

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    dead: PathBuf,
    /// Size of every spooled message, kept in memory so that checking the outbox bounds
    /// costs no directory scan per message. Only this process writes the spool.
    tally: Arc<Mutex<Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    sizes: HashMap<String, u64>,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, id: &str, size: u64) {
        if let Some(old) = self.sizes.insert(id.to_owned(), size) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    fn forget(&mut self, id: &str) {
        if let Some(old) = self.sizes.remove(id) {
            self.bytes -= old;
        }
    }
}

impl Spool {
    /// Open (and create) the spool at `dir`, removing temp files left by a crash.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let dead = dir.join("dead");
        fs::create_dir_all(&dead).map_err(io_err(&dead))?;
        let mut tally = Tally::default();
        for entry in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(&p);
            } else if p.extension().is_some_and(|e| e == EXT) {
                if let Some(id) = p.file_stem().and_then(|s| s.to_str()) {
                    tally.add(id, entry.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
            dead,
            tally: Arc::new(Mutex::new(tally)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    pub fn dead_dir(&self) -> &Path {
        &self.dead
    }

    /// The spool id for a Message-ID: its local part, filesystem-safe.
    pub fn id_for(message_id: &str) -> String {
        message_id
            .trim_matches(|c| c == '<' || c == '>')
            .split('@')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{EXT}"))
    }

    /// Store a message unless the spool would then hold more than `max_messages` messages
    /// or `max_bytes` bytes ([`SpoolError::Full`]); returns its id. The message is written,
    /// fsynced and under its name, so the delivery loop can send it; the name itself
    /// survives a power cut only after [`Spool::sync`].
    pub fn place(
        &self,
        meta: &Meta,
        bytes: &[u8],
        max_messages: usize,
        max_bytes: u64,
    ) -> Result<String, SpoolError> {
        let id = Self::id_for(&meta.message_id);
        let mut content = serde_json::to_vec(meta).expect("meta serializes");
        content.push(b'\n');
        content.extend_from_slice(bytes);
        let size = content.len() as u64;
        {
            // Reserve before writing, so concurrent writers cannot together pass the bounds.
            let mut tally = self.lock();
            if tally.sizes.len() >= max_messages || tally.bytes + size > max_bytes {
                return Err(SpoolError::Full {
                    depth: tally.sizes.len(),
                    bytes: tally.bytes,
                });
            }
            tally.add(&id, size);
        }
        place(&self.path(&id), &content).inspect_err(|_| self.lock().forget(&id))?;
        Ok(id)
    }

    /// Make the names of placed messages durable (an fsync of the spool directory).
    pub fn sync(&self) -> Result<(), SpoolError> {
        sync_dir(&self.dir)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of all spooled messages, oldest first (ids start with the creation time).
    pub fn list(&self) -> Result<Vec<String>, SpoolError> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().is_some_and(|x| x == EXT))
                    .then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Number of messages and their total size in bytes.
    pub fn usage(&self) -> (usize, u64) {
        let tally = self.lock();
        (tally.sizes.len(), tally.bytes)
    }

    pub fn load(&self, id: &str) -> Result<Entry, SpoolError> {
        let path = self.path(id);
        let content = fs::read(&path).map_err(io_err(&path))?;
        let nl = content
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| SpoolError::Damaged {
                path: path.clone(),
                reason: "no header line".into(),
            })?;
        let meta: Meta =
            serde_json::from_slice(&content[..nl]).map_err(|e| SpoolError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Entry {
            meta,
            bytes: content[nl + 1..].to_vec(),
        })
    }

    /// Forget a delivered message.
    pub fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.lock().forget(id);
        Ok(())
    }

    /// Move an undeliverable message to `dead/`, with the reason beside it.
    pub fn bury(&self, id: &str, reason: &str) -> Result<PathBuf, SpoolError> {
        let from = self.path(id);
        let to = self.dead.join(format!("{id}.{EXT}"));
        write_atomic(
            &self.dead,
            &self.dead.join(format!("{id}.reason")),
            format!("{reason}\n").as_bytes(),
        )?;
        fs::rename(&from, &to).map_err(io_err(&from))?;
        self.lock().forget(id);
        sync_dir(&self.dead)?;
        sync_dir(&self.dir)?;
        Ok(to)
    }
}

/// temp file → fsync → rename → fsync the directory.
pub fn write_atomic(dir: &Path, path: &Path, content: &[u8]) -> Result<(), SpoolError> {
    place(path, content)?;
    sync_dir(dir)
}

/// temp file → fsync → rename: after a crash the file is wholly there or not at all.
fn place(path: &Path, content: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension(format!("{}.tmp", fastrand::u32(..)));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(content).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> Meta {
        Meta {
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            created: 1_700_000_000,
            message_id: id.into(),
        }
    }

    #[test]
    fn place_list_load_remove_bury() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let a = spool
            .place(
                &meta("<100.aa@snapmail>"),
                b"Subject: a\r\n\r\nA",
                10,
                1 << 20,
            )
            .unwrap();
        let b = spool
            .place(
                &meta("<200.bb@snapmail>"),
                b"Subject: b\r\n\r\nB",
                10,
                1 << 20,
            )
            .unwrap();
        spool.sync().unwrap();
        assert_eq!(spool.list().unwrap(), vec![a.clone(), b.clone()]);
        let e = spool.load(&a).unwrap();
        assert_eq!(e.bytes, b"Subject: a\r\n\r\nA");
        assert_eq!(e.meta, meta("<100.aa@snapmail>"));
        spool.remove(&a).unwrap();
        spool.bury(&b, "550 5.1.1 no such user").unwrap();
        assert!(spool.list().unwrap().is_empty());
        let reason = std::fs::read_to_string(spool.dead_dir().join(format!("{b}.reason"))).unwrap();
        assert!(reason.contains("5.1.1"));
        // A leftover temp file from a crash is cleaned on open.
        std::fs::write(tmp.path().join("x.mail.1.tmp"), b"partial").unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        assert!(std::fs::read_dir(spool.dir())
            .unwrap()
            .flatten()
            .all(|e| !e.path().to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn ids_are_filesystem_safe() {
        assert_eq!(Spool::id_for("<1731.0a1b@snapmail>"), "1731.0a1b");
        assert_eq!(Spool::id_for("<../../etc/passwd@x>"), ".._.._etc_passwd");
    }
}
