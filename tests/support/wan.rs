//! A wide-area link on one machine: a network namespace reached from the host through a pair
//! of TUN devices, with one thread carrying every IP packet across after a fixed delay each
//! way (the kernel here has no netem, so the delay is done in user space).
//!
//! ```text
//!  host namespace                                    namespace snapmail-wan-<pid>
//!  198.18.x.y+1  smw<pid>h ──fd──► [thread: +delay] ──fd──► smw<pid>f  198.18.x.y+2
//!                smw<pid>h ◄──fd── [thread: +delay] ◄──fd── smw<pid>f
//! ```
//!
//! Both devices are point-to-point with MTU 1500 and their routes use cubic, Linux's default
//! congestion control, so TCP segments, acknowledges and slow-starts as on the Internet (loopback's 64 KB MTU would hide slow start). Addresses are a /30 of
//! 198.18.0.0/15, the range set aside for benchmarking (RFC 2544), so they cannot clash with a
//! real network, chosen by process id so that links of concurrent runs do not clash either;
//! no packet leaves the machine. Packets are queued in arrival order and released in that order
//! when their delay is up: no reordering, no loss inside the line, no bandwidth cap beyond
//! what one thread moving one packet per system call does (the bench measures it).
//!
//! Needs root (network namespaces, TUN devices), `/dev/net/tun` and `ip` from iproute2.
//! [`Link::start`] says which is missing instead of failing half-way. Everything is torn down
//! when the [`Link`] is dropped, also while a panic unwinds; a namespace left behind by a
//! process that was killed outright is removed by the next start.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first address of 198.18.0.0/15; each link takes the /30 its process id picks.
const BENCH_NET: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const MTU: u32 = 1500;
/// Packets the kernel may queue on a device before the thread reads them; a short queue
/// would drop the bursts of a fast TCP sender whenever the thread is briefly descheduled.
const TX_QUEUE: u32 = 10_000;
const NS_PREFIX: &str = "snapmail-wan-";
const CONGESTION_CONTROL: &str = "cubic";

/// What the delay thread has moved so far.
#[derive(Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Most packets held in one direction at once.
    pub max_queued: AtomicU64,
    /// Largest lateness of a release against its due time, in microseconds.
    pub max_late_us: AtomicU64,
}

/// A running link; dropping it removes the namespace and both devices.
pub struct Link {
    ns: String,
    near: Ipv4Addr,
    far: Ipv4Addr,
    near_dev: String,
    far_dev: String,
    one_way: Duration,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

impl Link {
    /// Why a link cannot be built here, if it cannot.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some(
                "needs root: it creates a network namespace and TUN devices (run as root)".into(),
            );
        }
        if !Path::new("/dev/net/tun").exists() {
            return Some(
                "/dev/net/tun is missing (load the tun module, or give the container the device)"
                    .into(),
            );
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => None,
            _ => Some("`ip` (iproute2) is not installed: apt-get install iproute2".into()),
        }
    }

    /// Build the namespace and devices and start carrying packets, `one_way` late in each
    /// direction (the round trip is twice that).
    pub fn start(one_way: Duration) -> Result<Link, String> {
        if let Some(why) = Link::unavailable() {
            return Err(why);
        }
        remove_stale_namespaces();
        let pid = std::process::id();
        let ns = format!("{NS_PREFIX}{pid}");
        let near_dev = format!("smw{pid}h");
        let far_dev = format!("smw{pid}f");
        // 2^15 subnets of four addresses in the /15.
        let base = BENCH_NET + (pid % (1 << 15)) * 4;
        let (near_ip, far_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (near_s, far_s) = (near_ip.to_string(), far_ip.to_string());
        // The guard removes whatever exists so far if a later step fails.
        let mut partial = Teardown { ns: None };
        let near = open_tun(&near_dev).map_err(|e| format!("TUN device {near_dev}: {e}"))?;
        let far = open_tun(&far_dev).map_err(|e| format!("TUN device {far_dev}: {e}"))?;
        ip(&["netns", "add", &ns])?;
        partial.ns = Some(ns.clone());
        let mtu = MTU.to_string();
        let qlen = TX_QUEUE.to_string();
        ip(&["link", "set", &far_dev, "netns", &ns])?;
        // Both ends alike: the address with its peer, the MTU and queue, and Linux's default
        // congestion control on the route, whatever this machine is set to (e.g. BBR, which
        // paces a slow start instead of sending it in bursts).
        for (netns, dev, local, peer) in [
            (None, &near_dev, &near_s, &far_s),
            (Some(&ns), &far_dev, &far_s, &near_s),
        ] {
            let in_ns = |args: &[&str]| {
                let mut all: Vec<&str> = Vec::new();
                if let Some(n) = netns {
                    all.extend(["-n", n.as_str()]);
                }
                all.extend(args);
                ip(&all)
            };
            in_ns(&["addr", "add", local, "peer", peer, "dev", dev])?;
            in_ns(&[
                "link",
                "set",
                "dev",
                dev,
                "mtu",
                &mtu,
                "txqueuelen",
                &qlen,
                "up",
            ])?;
            in_ns(&[
                "route",
                "replace",
                peer,
                "dev",
                dev,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                local,
                "congctl",
                CONGESTION_CONTROL,
            ])?;
        }
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;

        // SAFETY: eventfd has no preconditions; the result is checked.
        let stop = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if stop < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("wan-delay".into())
            .spawn(move || carry(near, far, stop_fd, one_way, &c))
            .map_err(|e| format!("delay thread: {e}"))?;
        partial.ns = None;
        Ok(Link {
            ns,
            near: near_ip,
            far: far_ip,
            near_dev,
            far_dev,
            one_way,
            stop,
            thread: Some(thread),
            counters,
        })
    }

    /// The host's end of the link.
    pub fn near(&self) -> Ipv4Addr {
        self.near
    }

    /// The far end, inside the namespace: servers there listen on it.
    pub fn far(&self) -> Ipv4Addr {
        self.far
    }

    /// The namespace's name, for `ip -n`.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The round trip the link adds.
    pub fn rtt(&self) -> Duration {
        self.one_way * 2
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates live there.
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        run_in_namespace(&self.ns, f)
    }

    /// A listening TCP socket on `addr` inside the namespace (`far()` or `127.0.0.1` there).
    pub fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        bind_in(&self.ns, addr)
    }

    /// A function that binds inside the namespace, for servers that bind (and rebind) later.
    pub fn binder(&self) -> impl Fn(SocketAddr) -> io::Result<TcpListener> + Send + Sync {
        let ns = self.ns.clone();
        move |addr| bind_in(&ns, addr)
    }

    /// Packets the kernel dropped on either device because its queue was full (0 when the
    /// thread keeps up).
    pub fn kernel_drops(&self) -> Result<u64, String> {
        let near = tx_dropped(&[], &self.near_dev)?;
        let far = tx_dropped(&["-n", &self.ns], &self.far_dev)?;
        Ok(near + far)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe {
            libc::write(
                self.stop.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The thread closed both TUN descriptors, which removes the devices.
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Removes a namespace on drop unless disarmed: the cleanup of a half-built link.
struct Teardown {
    ns: Option<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(ns) = self.ns.take() {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// Namespaces of earlier runs whose process is gone (killed before its guard ran).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn tx_dropped(ns: &[&str], dev: &str) -> Result<u64, String> {
    let mut args = ns.to_vec();
    args.extend(["-j", "-s", "link", "show", "dev", dev]);
    let out = Command::new("ip")
        .args(&args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("ip {}: unreadable output: {e}", args.join(" ")))?;
    json[0]["stats64"]["tx"]["dropped"]
        .as_u64()
        .ok_or_else(|| format!("ip {}: no tx dropped counter", args.join(" ")))
}

/// A non-blocking TUN device without packet information: each read or write is one IP
/// packet.
fn open_tun(name: &str) -> io::Result<File> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads an ifreq, which `req` is, for the whole call.
    if unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

fn run_in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let handle = File::open(format!("/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace descriptor we hold open; it only affects this
            // thread, which ends with the scope.
            if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    })
}

fn bind_in(ns: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = run_in_namespace(ns, || TcpListener::bind(addr))??;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One direction of the line: packets waiting for their release time, oldest first.
struct Lane {
    from: RawFd,
    to: RawFd,
    /// Release time, buffer, packet length.
    queue: VecDeque<(Instant, Box<[u8]>, usize)>,
}

/// Bigger than any packet on a device with MTU 1500.
const PACKET_BUF: usize = 4096;

/// The delay thread: read whatever either device has, stamp it, and write each packet to
/// the other device once its delay is up. Buffers are recycled, so a steady stream
/// allocates nothing.
fn carry(near: File, far: File, stop: RawFd, one_way: Duration, counters: &Counters) {
    realtime_priority();
    let mut lanes = [
        Lane {
            from: near.as_raw_fd(),
            to: far.as_raw_fd(),
            queue: VecDeque::new(),
        },
        Lane {
            from: far.as_raw_fd(),
            to: near.as_raw_fd(),
            queue: VecDeque::new(),
        },
    ];
    let mut spare: Vec<Box<[u8]>> = Vec::new();
    loop {
        let now = Instant::now();
        let next_due = lanes
            .iter()
            .filter_map(|l| l.queue.front().map(|(t, _, _)| *t))
            .min();
        let timeout = next_due.map(|t| t.saturating_duration_since(now));
        let mut fds = [pollfd(lanes[0].from), pollfd(lanes[1].from), pollfd(stop)];
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: three valid pollfds and an optional live timespec.
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 3, ts_ptr, std::ptr::null()) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
        if fds[2].revents != 0 {
            return;
        }
        let arrived = Instant::now();
        for (i, lane) in lanes.iter_mut().enumerate() {
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                let mut buf = spare
                    .pop()
                    .unwrap_or_else(|| vec![0; PACKET_BUF].into_boxed_slice());
                // SAFETY: reads into a live buffer of the given length.
                let got = unsafe { libc::read(lane.from, buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    spare.push(buf);
                    break;
                }
                lane.queue.push_back((arrived + one_way, buf, got as usize));
                counters
                    .max_queued
                    .fetch_max(lane.queue.len() as u64, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        for lane in &mut lanes {
            while lane.queue.front().is_some_and(|(due, _, _)| *due <= now) {
                let (due, buf, len) = lane.queue.pop_front().expect("front exists");
                // SAFETY: writes a live buffer of the given length. A TUN write injects the
                // packet into the stack and does not block; a packet the stack refuses is
                // dropped like on a real link.
                unsafe { libc::write(lane.to, buf.as_ptr().cast(), len) };
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
                let late = now.saturating_duration_since(due).as_micros() as u64;
                counters.max_late_us.fetch_max(late, Ordering::Relaxed);
                spare.push(buf);
            }
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// The machine is shared with builds: a real-time thread wakes on time when its packets
/// are due instead of waiting for a busy core. Best effort; without it the link still works
/// and the bench reports how late releases were.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets this thread's own policy from a live sched_param.
    unsafe {
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param);
        // Timer slack (50 µs by default) would round every wake-up late.
        libc::prctl(libc::PR_SET_TIMERSLACK, 1);
    }
}
