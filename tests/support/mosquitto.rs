//! A real Mosquitto broker per test, on a free port of 127.0.0.1.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, PublishOptions, QoS};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Mosquitto {
    pub port: u16,
    /// A second listener speaking TLS (`mqtts://`), when started with [`start_tls`].
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
    /// Credentials `publish` uses when the broker refuses anonymous clients.
    users: Vec<(String, String)>,
}

/// A broker that accepts anonymous clients.
pub fn start() -> Mosquitto {
    Mosquitto::launch(&[], None)
}

/// A broker that accepts anonymous clients on its plain port and, on `tls_port`, over TLS
/// presenting `chain_pem` (leaf first) with `key_pem`.
pub fn start_tls(chain_pem: &str, key_pem: &str) -> Mosquitto {
    Mosquitto::launch(&[], Some((chain_pem, key_pem)))
}

/// A broker that only accepts the given username/password pairs.
pub fn start_with_users(users: &[(&str, &str)]) -> Mosquitto {
    assert!(
        !users.is_empty(),
        "start_with_users needs at least one user"
    );
    Mosquitto::launch(users, None)
}

fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    from_path
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

use super::free_port;

impl Mosquitto {
    fn launch(users: &[(&str, &str)], tls: Option<(&str, &str)>) -> Mosquitto {
        let bin = find_program(
            "mosquitto",
            &["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"],
        )
        .unwrap_or_else(|| {
            panic!("mosquitto not found: install it with `sudo apt-get install -y mosquitto`")
        });
        let dir = tempfile::Builder::new()
            .prefix("snapmail-mosquitto-")
            .tempdir()
            .expect("create temp dir for mosquitto");
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous {anon}\n\
             user root\n\
             log_dest file {d}/mosquitto.log\n\
             log_type all\n\
             persistence true\n\
             persistence_location {d}/\n",
            anon = users.is_empty(),
        );
        if !users.is_empty() {
            let passwd = dir.path().join("passwd");
            write_password_file(&passwd, users);
            conf.push_str(&format!("password_file {}\n", passwd.display()));
        }
        let tls_port = tls.map(|(chain, key)| {
            let port = free_port();
            let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            fs::write(&cert_path, chain).expect("write cert.pem");
            fs::write(&key_path, key).expect("write key.pem");
            conf.push_str(&format!(
                "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert_path.display(),
                key_path.display()
            ));
            port
        });
        let conf_path = dir.path().join("mosquitto.conf");
        fs::write(&conf_path, conf).expect("write mosquitto.conf");

        let mut broker = Mosquitto {
            port,
            tls_port,
            child: None,
            dir,
            conf: conf_path,
            bin,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
        };
        broker.spawn_and_wait();
        broker
    }

    fn spawn_and_wait(&mut self) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.out"))
            .expect("open mosquitto.out");
        let err = out.try_clone().expect("clone mosquitto.out handle");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", self.bin.display()));
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("child just spawned");
            if let Some(status) = child.try_wait().expect("try_wait on mosquitto") {
                self.child = None;
                panic!(
                    "mosquitto exited with {status} before accepting connections on port {}\n\
                     --- output ---\n{}\n--- log ---\n{}",
                    self.port,
                    self.output(),
                    self.log()
                );
            }
            let listening = |port: u16| {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            };
            if listening(self.port) && self.tls_port.is_none_or(listening) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {READY_TIMEOUT:?} waiting for mosquitto to accept \
                     connections on port {}\n--- output ---\n{}\n--- log ---\n{}",
                    self.port,
                    self.output(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Contents of the broker's log file (everything, `log_type all`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// What the broker printed on stdout/stderr (startup errors end up here).
    fn output(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.out")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait on mosquitto").is_none(),
            None => false,
        }
    }

    /// SIGKILLs the broker and reaps it. Whatever was not yet saved to the persistence file
    /// is lost, as in a crash.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait for killed mosquitto");
        }
    }

    /// SIGTERMs the broker and waits for it to exit; Mosquitto writes its persistence file on
    /// the way out, so retained messages and persistent sessions survive a `restart`.
    pub fn stop_graceful(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let status = Command::new("kill")
                .args(["-s", "TERM", &pid])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -s TERM {pid} failed: {status}");
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if child.try_wait().expect("try_wait on mosquitto").is_some() {
                    return;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "timed out after {READY_TIMEOUT:?} waiting for mosquitto to exit after \
                         SIGTERM\n--- log ---\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the broker again on the same port, config and persistence directory, and waits
    /// until it accepts connections. Stops it first (SIGKILL) if it is still running.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// Publishes one message at QoS 1 through a short-lived client and returns once the broker
    /// has acknowledged it.
    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let creds = self.users.first().map(|(u, p)| (u.as_str(), p.as_str()));
        publish_with(self.port, creds, topic, payload, retain).await
    }
}

/// Publishes one message at QoS 1 to any broker on 127.0.0.1:`port` (e.g. snapmail's
/// embedded one) and returns once it has acknowledged it.
pub async fn publish_to(port: u16, topic: &str, payload: &[u8], retain: bool) {
    publish_with(port, None, topic, payload, retain).await
}

async fn publish_with(
    port: u16,
    creds: Option<(&str, &str)>,
    topic: &str,
    payload: &[u8],
    retain: bool,
) {
    {
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "support-pub-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut opts = MqttOptions::new(id, ("127.0.0.1", port));
        opts.set_max_packet_size(64 << 20, 64 << 20);
        opts.set_keep_alive(30);
        if let Some((user, pass)) = creds {
            opts.set_credentials(user, pass.to_owned());
        }
        let (client, mut eventloop) = AsyncClient::builder(opts).capacity(10).build();
        let mut seen: Vec<String> = Vec::new();
        let exchange = async {
            client
                .publish(
                    topic,
                    payload.to_vec(),
                    PublishOptions::new(QoS::AtLeastOnce).retain(retain),
                )
                .await
                .map_err(|e| format!("queueing the publish failed: {e}"))?;
            loop {
                let event = eventloop
                    .poll()
                    .await
                    .map_err(|e| format!("connection failed: {e}"))?;
                seen.push(format!("{event:?}"));
                if let Event::Incoming(Packet::PubAck(_)) = event {
                    break;
                }
            }
            client
                .disconnect()
                .await
                .map_err(|e| format!("queueing the disconnect failed: {e}"))?;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Ok::<(), String>(())
        };
        let result = tokio::time::timeout(PUBLISH_TIMEOUT, exchange).await;
        let problem = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => format!("timed out after {PUBLISH_TIMEOUT:?} waiting for the PubAck"),
        };
        panic!(
            "publishing {} bytes to {topic:?} on port {port} failed: {problem}\n\
             events seen: {seen:?}",
            payload.len(),
        );
    }
}

fn write_password_file(path: &Path, users: &[(&str, &str)]) {
    let tool =
        find_program("mosquitto_passwd", &["/usr/bin/mosquitto_passwd"]).unwrap_or_else(|| {
            panic!(
                "mosquitto_passwd not found: install it with `sudo apt-get install -y mosquitto`"
            )
        });
    for (i, (user, pass)) in users.iter().enumerate() {
        let mut cmd = Command::new(&tool);
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg(path)
            .arg(user)
            .arg(pass)
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", tool.display()));
        assert!(
            out.status.success(),
            "mosquitto_passwd for user {user:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod password file");
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
