//! The `snapmail` binary run as a command (`check`, `doctor`, `test-email`): a config file in
//! a fresh directory, no `SNAPMAIL_*` variables from the environment, plain output.

use std::time::Duration;

/// How long one command may take.
const T: Duration = Duration::from_secs(90);

/// What the binary printed, and how it exited.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The line of `step` with this status symbol, or a panic that shows everything.
    pub fn line(&self, symbol: &str, step: &str) -> &str {
        let prefix = format!("{symbol} {step}:");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit code {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `snapmail --config <yaml> <args>` and wait for it to finish.
pub async fn snapmail(config: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_snapmail"));
    cmd.current_dir(dir.path())
        .arg("--config")
        .arg(&path)
        .args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SNAPMAIL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1").env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(T, run)
        .await
        .expect("snapmail finished in time")
        .unwrap()
        .expect("snapmail started");
    drop(dir);
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `snapmail doctor` with short probes.
pub async fn doctor(config: &str, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut args = vec!["doctor", "--listen", "1s", "--timeout", "2s"];
    args.extend_from_slice(extra);
    snapmail(config, &args, envs).await
}
