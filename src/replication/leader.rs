//! `Leader`: the recorder's side of replication. One thread accepts followers; each
//! connection gets a shipper thread ([`super::shipper`]). Acknowledgements land here, and
//! `replicated_seq` is the highest sequence number that `min_replicas` followers hold
//! durably (it never goes back: a record durable on a follower stays so).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::epochs::{ReplicaState, Role};
use super::ReplicationConfig;
use crate::error::{Error, Result};
use crate::maintainer::link::WriterLink;
use crate::maintainer::Health;

/// How often the acceptor looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// Followers connected but holding less than the writer appended, with `replicated_seq`
/// standing still this long, make the recorder's health `Degraded`.
pub(crate) const BEHIND_AFTER: Duration = Duration::from_secs(1);

/// One follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerInfo {
    /// The name it gave.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Every record up to this is durable on it.
    pub durable_seq: u64,
    /// Every record up to this is in its log.
    pub received_seq: u64,
    /// Whether it is connected now.
    pub connected: bool,
}

/// What [`crate::Recorder::replication`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// The address followers connect to (the port chosen when `listen` asked for port 0).
    pub listen: SocketAddr,
    /// This leader's epoch.
    pub epoch: u64,
    /// See [`crate::Recorder::replicated_seq`].
    pub replicated_seq: u64,
    /// Followers required.
    pub min_replicas: usize,
    /// The followers seen since the recorder opened.
    pub followers: Vec<FollowerInfo>,
    /// Why replication holds the recorder's health at `Degraded` (required followers missing,
    /// or connected but not keeping up); `None` when it does not.
    pub problem: Option<String>,
}

/// State the shippers share with the recorder.
pub(crate) struct LeaderShared {
    pub dir: PathBuf,
    pub config: ReplicationConfig,
    pub state: ReplicaState,
    pub link: Arc<WriterLink>,
    pub staging_dir: PathBuf,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub listen: SocketAddr,
    pub stop: AtomicBool,
    replicated: AtomicU64,
    /// When `replicated` last moved, in nanoseconds since `started`.
    replicated_at: AtomicU64,
    started: Instant,
    followers: Mutex<Vec<FollowerInfo>>,
}

impl LeaderShared {
    pub(crate) fn epoch(&self) -> u64 {
        self.state.epoch()
    }

    /// A follower connected (or connected again under the same name); its slot.
    pub(crate) fn connected(&self, name: &str, addr: SocketAddr) -> usize {
        let mut f = self.followers.lock().expect("no panic under this lock");
        let info = FollowerInfo {
            name: name.to_string(),
            addr,
            durable_seq: 0,
            received_seq: 0,
            connected: true,
        };
        match f.iter().position(|x| x.name == name && !x.connected) {
            Some(i) => {
                f[i] = info;
                i
            }
            None => {
                f.push(info);
                f.len() - 1
            }
        }
    }

    pub(crate) fn disconnected(&self, slot: usize) {
        let mut f = self.followers.lock().expect("no panic under this lock");
        f[slot].connected = false;
    }

    pub(crate) fn connected_count(&self) -> usize {
        let f = self.followers.lock().expect("no panic under this lock");
        f.iter().filter(|x| x.connected).count()
    }

    /// An acknowledgement from the follower in `slot`.
    pub(crate) fn acked(&self, slot: usize, durable_seq: u64, received_seq: u64) {
        let mut f = self.followers.lock().expect("no panic under this lock");
        let me = &mut f[slot];
        // A follower's durable prefix only grows within one connection.
        me.durable_seq = me.durable_seq.max(durable_seq);
        me.received_seq = me.received_seq.max(received_seq);
        let mut held: Vec<u64> = f
            .iter()
            .filter(|x| x.connected)
            .map(|x| x.durable_seq)
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&seq) = held.get(self.config.min_replicas - 1) {
            if self.replicated.fetch_max(seq, Ordering::AcqRel) < seq {
                let now = self.started.elapsed().as_nanos() as u64;
                self.replicated_at.store(now, Ordering::Release);
            }
        }
    }
}

/// See the module docs.
pub(crate) struct Leader {
    shared: Arc<LeaderShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Leader {
    /// Takes (or makes) the log's epochs file as its leader and starts listening.
    pub(crate) fn start(
        dir: &Path,
        config: &ReplicationConfig,
        link: Arc<WriterLink>,
        staging_dir: &Path,
    ) -> Result<Self> {
        let state = match ReplicaState::load(dir)? {
            Some(s) => {
                assert_eq!(
                    s.role,
                    Role::Leader,
                    "the recorder refused a follower's log"
                );
                s
            }
            None => {
                let s = ReplicaState::first_leader()?;
                s.store(dir)?;
                s
            }
        };
        let tls = match &config.security {
            super::Security::Tls(files) => Some(super::tls::server_config(files)?),
            super::Security::Insecure => None,
        };
        let listener = TcpListener::bind(config.listen).map_err(|e| Error::Replication {
            peer: config.listen.to_string(),
            message: format!("listen: {e}"),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listen", dir, e))?;
        let listen = listener.local_addr().map_or(config.listen, |a| a);
        log::info!(
            "{}: leading epoch {} on {listen}",
            dir.display(),
            state.epoch()
        );
        let shared = Arc::new(LeaderShared {
            dir: dir.to_path_buf(),
            config: config.clone(),
            state,
            link,
            staging_dir: staging_dir.to_path_buf(),
            tls,
            listen,
            stop: AtomicBool::new(false),
            replicated: AtomicU64::new(0),
            replicated_at: AtomicU64::new(0),
            started: Instant::now(),
            followers: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("wal-repl-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| Error::io("spawn", dir, e))?;
        Ok(Leader {
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub(crate) fn replicated_seq(&self) -> u64 {
        self.shared.replicated.load(Ordering::Acquire)
    }

    pub(crate) fn wait_replicated(&self, seq: u64, timeout: Duration, dir: &Path) -> Result<()> {
        let until = Instant::now() + timeout;
        let mut spins = 0u32;
        while self.replicated_seq() < seq {
            if Instant::now() >= until {
                return Err(Error::Timeout {
                    path: dir.to_path_buf(),
                    what: "records to be replicated",
                });
            }
            spins += 1;
            match spins < 128 {
                true => std::hint::spin_loop(),
                false => std::thread::sleep(Duration::from_micros(20)),
            }
        }
        Ok(())
    }

    pub(crate) fn status(&self) -> ReplicationStatus {
        // Before the followers' lock is taken: it takes it too.
        let problem = self.missing_or_behind();
        let followers = self
            .shared
            .followers
            .lock()
            .expect("no panic under this lock")
            .clone();
        ReplicationStatus {
            listen: self.shared.listen,
            epoch: self.shared.epoch(),
            replicated_seq: self.replicated_seq(),
            min_replicas: self.shared.config.min_replicas,
            followers,
            problem,
        }
    }

    /// Followers connected now.
    pub(crate) fn connected(&self) -> usize {
        self.shared.connected_count()
    }

    /// Degraded while fewer than `min_replicas` followers are connected, or while they hold
    /// less than the writer appended and `replicated_seq` has not moved for
    /// [`BEHIND_AFTER`] (connected, but not keeping up).
    pub(crate) fn health(&self) -> Health {
        match self.missing_or_behind() {
            Some(_) => Health::Degraded,
            None => Health::Ok,
        }
    }

    /// Why the followers hold the health back, in words; `None` when they do not.
    pub(crate) fn missing_or_behind(&self) -> Option<String> {
        let s = &self.shared;
        let connected = s.connected_count();
        if connected < s.config.min_replicas {
            return Some(format!(
                "{connected} of {} required followers connected",
                s.config.min_replicas
            ));
        }
        let replicated = self.replicated_seq();
        let appended = s.link.appended_seq();
        let still = s.started.elapsed().as_nanos() as u64 - s.replicated_at.load(Ordering::Acquire);
        (appended > replicated && still > BEHIND_AFTER.as_nanos() as u64).then(|| {
            format!(
                "followers behind: replicated_seq {replicated} of {appended}, unchanged for {} ms",
                still / 1_000_000
            )
        })
    }

    /// Stops accepting and shipping; the shippers end their connections.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<LeaderShared>) {
    let mut shippers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        shippers.retain(|h| !h.is_finished());
        match listener.accept() {
            Ok((sock, addr)) => {
                if shippers.len() >= shared.config.max_followers {
                    log::warn!(
                        "replication: refusing {addr}: {} followers connected",
                        shippers.len()
                    );
                    continue;
                }
                let s = shared.clone();
                match std::thread::Builder::new()
                    .name("wal-repl-ship".into())
                    .spawn(move || super::shipper::serve(sock, addr, s))
                {
                    Ok(h) => shippers.push(h),
                    Err(e) => log::error!("replication: no thread for {addr}: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                log::warn!("replication: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
    for h in shippers {
        let _ = h.join();
    }
}
