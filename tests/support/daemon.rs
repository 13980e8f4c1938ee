//! Runs the real `snapmail` binary in a temporary working directory and captures its log.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_snapmail");

pub struct Daemon {
    /// The executable: this package's `snapmail` unless started with another build.
    bin: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    /// Set when the daemon created its directory; removed when the daemon is dropped.
    _tmp: Option<tempfile::TempDir>,
    config_path: Option<PathBuf>,
    envs: Vec<(String, String)>,
    lines: Arc<Mutex<Vec<String>>>,
    /// Logs of earlier runs (before `restart`).
    earlier: Vec<String>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<std::process::ExitStatus>,
}

/// Starts the daemon in a new temporary directory (its working directory), with
/// `config.yaml` written there and passed as `--config` when given.
pub fn start(config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
    Daemon::start(config_yaml, envs)
}

/// Starts the daemon in `dir`, e.g. the directory of an earlier run whose spool must survive.
pub fn start_in(dir: &Path, config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
    Daemon::start_in(dir, config_yaml, envs)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn capture(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end_matches(['\r', '\n']);
                    lines.lock().unwrap().push(strip_ansi(text));
                }
            }
        }
    })
}

impl Daemon {
    pub fn start(config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_binary(Path::new(BIN), config_yaml, envs)
    }

    /// Like [`Daemon::start`], but runs another build of snapmail, e.g. the static musl
    /// binary the Docker image ships, so a benchmark can compare builds.
    pub fn start_binary(bin: &Path, config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("snapmail-daemon-")
            .tempdir()
            .expect("create temp dir for the daemon");
        let mut d = Daemon::prepare(bin, tmp.path(), config_yaml, envs);
        d._tmp = Some(tmp);
        d.spawn();
        d
    }

    pub fn start_in(dir: &Path, config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::prepare(Path::new(BIN), dir, config_yaml, envs);
        d.spawn();
        d
    }

    fn prepare(bin: &Path, dir: &Path, config_yaml: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
        let config_path = config_yaml.map(|yaml| {
            let path = dir.join("config.yaml");
            std::fs::write(&path, yaml).expect("write config.yaml");
            path
        });
        Daemon {
            bin: bin.to_owned(),
            child: None,
            dir: dir.to_path_buf(),
            _tmp: None,
            config_path,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lines: Arc::new(Mutex::new(Vec::new())),
            earlier: Vec::new(),
            readers: Vec::new(),
            exit: None,
        }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.config_path {
            cmd.arg("--config").arg(path);
        }
        // Settings from the developer's shell must not leak into the test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SNAPMAIL_") {
                cmd.env_remove(key);
            }
        }
        // Many daemons run at once in the suite: the health listener takes any free port
        // (the daemon logs which one) unless a test sets its own.
        cmd.env("RUST_LOG", "snapmail=debug,info")
            .env("NO_COLOR", "1")
            .env("SNAPMAIL__HTTP__LISTEN", "127.0.0.1:0");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.readers = vec![
            capture(stdout, self.lines.clone()),
            capture(stderr, self.lines.clone()),
        ];
        self.exit = None;
        self.child = Some(child);
    }

    /// The daemon's working directory (config, spool, outbox live here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Log lines (stdout and stderr) of the current run, joined by `\n`.
    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Logs of every run so far, earlier runs first.
    pub fn all_logs(&self) -> String {
        let mut all = self.earlier.clone();
        all.push(self.logs());
        all.join("\n")
    }

    /// Lines of the current run that contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn log_has(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    fn readers_done(&self) -> bool {
        self.readers.iter().all(JoinHandle::is_finished)
    }

    /// Exit status if the process has ended (reaps it).
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.exit = child.try_wait().expect("try_wait on snapmail");
            }
        }
        self.exit
    }

    /// Waits for a log line containing `needle`; panics with the whole log on timeout, or as
    /// soon as the daemon has exited without printing it.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_has(needle) {
                return;
            }
            // Not reaping here (no &mut): a zombie still counts as exited for the readers,
            // whose pipes close when the process ends.
            if self.readers_done() && !self.log_has(needle) {
                panic!(
                    "snapmail exited (output closed) without logging {needle:?}\n--- log ---\n{}",
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for log line containing {needle:?}\n\
                     --- log ---\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends signal number `sig` (e.g. 15) to the daemon.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid().expect("daemon is not running");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {pid} failed: {status}");
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal(15);
    }

    /// SIGINT, like Ctrl-C.
    pub fn interrupt(&self) {
        self.signal(2);
    }

    /// SIGKILL, then reap the process.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            self.exit = Some(child.wait().expect("wait for killed snapmail"));
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Waits for the process to end and returns its exit code (`None` if a signal ended it).
    /// Panics with the log on timeout. The log is complete when this returns.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                // Output closes with the process; collect the last lines.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !self.readers_done() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if self.readers_done() {
                    self.join_readers();
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for snapmail to exit\n--- log ---\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the running process if any, then starts the binary again with the same
    /// directory, config and environment. `logs()` then covers the new run only.
    pub fn restart(&mut self) {
        self.kill9();
        let old = std::mem::take(&mut *self.lines.lock().unwrap());
        self.earlier.push(old.join("\n"));
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
