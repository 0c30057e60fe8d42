//! `Follower`: a log directory that takes its records from a leader. One thread connects
//! (reconnecting with back-off), says where its log ends, checks every record's chained
//! checksum against its own chain before it appends it through its own [`Recorder`] (whose
//! maintainer persists, freezes and retains as for any log), and acknowledges how far it is
//! durable. Local appends are refused: the directory's `epochs` file says it follows.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelError};
use super::epochs::{ReplicaState, Role};
use super::tls::{self, Security};
use super::wire::{Ack, Frame, Hello, RecordsIter, RefuseCode, Welcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::maintainer::Health;
use crate::recorder::{OpenAs, Recorder};
use crate::segment::format::{record_crc, Framing};
use crate::segment::ChainPoint;

/// How long the follower waits for the socket when nothing arrived (its acknowledgements of
/// new durable records wait at most this long).
const POLL: Duration = Duration::from_micros(200);
/// An acknowledgement goes out at least this often (the leader's liveness check).
const ACK_EVERY: Duration = Duration::from_millis(100);
/// A record that breaks the chain this many times in a row at the same place is not damage
/// on the way but another log: the follower stops.
const MISMATCHES_FATAL: u32 = 3;

/// See the module docs and [`Follower::open`].
#[derive(Debug, Clone)]
pub struct FollowerOptions {
    /// The follower's own recorder (segment size, retention, staging, archive...); its
    /// `record_time` is taken from the leader for an empty log.
    pub config: Config,
    /// TLS files, or plain TCP to a loopback leader only.
    pub security: Security,
    /// The name the leader knows it by (its logs, its retention hold). Default `follower`.
    pub name: String,
    /// Time to connect. Default 2 s.
    pub connect_timeout: Duration,
    /// A leader silent this long (no records, no heartbeat) is left and connected again.
    /// Default 5 s.
    pub leader_timeout: Duration,
    /// Back-off between attempts to connect: from this... Default 50 ms.
    pub reconnect_min: Duration,
    /// ...doubling up to this. Default 2 s.
    pub reconnect_max: Duration,
}

impl FollowerOptions {
    /// The defaults, with the follower's recorder `config` and `security`.
    pub fn new(config: Config, security: Security) -> Self {
        FollowerOptions {
            config,
            security,
            name: "follower".into(),
            connect_timeout: Duration::from_secs(2),
            leader_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
        }
    }
}

/// What the follower is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerState {
    /// Connecting, or waiting to connect again.
    Connecting,
    /// Receiving records.
    Following,
    /// Stopped: asked to, or refused for good ([`Follower::error`] says why).
    Stopped,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    following: AtomicBool,
    stopped: AtomicBool,
    received: AtomicU64,
    durable: AtomicU64,
    leader_seq: AtomicU64,
    epoch: AtomicU64,
    set_aside: AtomicU64,
    /// Why it stopped for good.
    error: Mutex<Option<String>>,
    /// The last problem seen (a refused or lost connection), for operators and tests.
    problem: Mutex<Option<String>>,
}

/// See the module docs.
pub struct Follower {
    dir: PathBuf,
    config: Config,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Follower {
    /// Makes `dir` (created if missing) a follower of the leader at `leader` and starts
    /// following. An empty log takes the leader's history from its first retained record
    /// on; a log with records continues from its last one (a former leader's records that
    /// the leader's log does not hold are moved to `quarantine/` first, counted:
    /// [`Self::set_aside`]). Errors: the directory is locked (a recorder or another follower
    /// holds it), its files are damaged, plain TCP to an address that is not loopback.
    pub fn open(
        dir: impl AsRef<Path>,
        leader: SocketAddr,
        options: FollowerOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        options.security.check(&leader)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let lock = crate::io::lock_dir(&dir)?;
        let state = match ReplicaState::load(&dir)? {
            Some(s) if s.role == Role::Follower => s,
            Some(s) => {
                log::warn!(
                    "{}: the leader of epoch {} rejoins as a follower",
                    dir.display(),
                    s.epoch()
                );
                ReplicaState {
                    role: Role::Follower,
                    ..s
                }
            }
            None => ReplicaState {
                log_id: 0,
                role: Role::Follower,
                history: Vec::new(),
            },
        };
        // Before any record: from here no recorder appends to it (contract 11).
        state.store(&dir)?;
        let tls = match &options.security {
            Security::Tls(files) => Some((
                tls::client_config(files)?,
                tls::server_name(files, &leader)?,
            )),
            Security::Insecure => None,
        };
        let has_log = !crate::logdir::list_dir(&dir)?.segments.is_empty();
        let recorder = match has_log {
            true => Some(open_recorder(&dir, &options.config, &lock, None)?),
            false => None,
        };
        let shared = Arc::new(Shared::default());
        shared.epoch.store(state.epoch(), Ordering::Relaxed);
        if let Some(r) = &recorder {
            publish(&shared, r);
        }
        let config = options.config.clone();
        let mut worker = Worker {
            dir: dir.clone(),
            leader,
            options,
            tls,
            lock,
            state,
            recorder,
            shared: shared.clone(),
            mismatches: (0, 0),
        };
        let thread = std::thread::Builder::new()
            .name("wal-follower".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("spawn", &dir, e))?;
        Ok(Follower {
            dir,
            config,
            shared,
            thread: Some(thread),
        })
    }

    /// Every record up to this is in the follower's log (committed there).
    pub fn received_seq(&self) -> u64 {
        self.shared.received.load(Ordering::Acquire)
    }

    /// Every record up to this is durable on the follower (what it acknowledges).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// The leader's last committed record as far as this follower knows (its heartbeats and
    /// the records received).
    pub fn leader_seq(&self) -> u64 {
        self.shared.leader_seq.load(Ordering::Relaxed)
    }

    /// The epoch it follows (0 before it reached a leader).
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Relaxed)
    }

    /// Records moved to `quarantine/` on rejoining (a former leader's unreplicated tail).
    pub fn set_aside(&self) -> u64 {
        self.shared.set_aside.load(Ordering::Relaxed)
    }

    /// Connecting, following or stopped.
    pub fn state(&self) -> FollowerState {
        if self.shared.stopped.load(Ordering::Acquire) {
            FollowerState::Stopped
        } else if self.shared.following.load(Ordering::Acquire) {
            FollowerState::Following
        } else {
            FollowerState::Connecting
        }
    }

    /// Why it stopped for good (a refusal such as another log, a stale leader, records the
    /// leader no longer holds), if it did.
    pub fn error(&self) -> Option<String> {
        self.shared
            .error
            .lock()
            .expect("no panic under this lock")
            .clone()
    }

    /// The last problem seen while following (a lost or refused connection), if any.
    pub fn last_problem(&self) -> Option<String> {
        self.shared
            .problem
            .lock()
            .expect("no panic under this lock")
            .clone()
    }

    /// Waits until record `seq` is durable here, at most `timeout` ([`Error::Timeout`]);
    /// the follower's error if it stopped.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        while self.durable_seq() < seq {
            if self.state() == FollowerState::Stopped {
                return Err(Error::Replication {
                    peer: self.dir.display().to_string(),
                    message: self
                        .error()
                        .unwrap_or_else(|| "the follower stopped".into()),
                });
            }
            if Instant::now() >= until {
                return Err(Error::Timeout {
                    path: self.dir.clone(),
                    what: "records to reach the follower",
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }

    /// Stops following and closes its recorder (everything received is persisted).
    pub fn close(mut self) -> Result<()> {
        self.stop_thread()
    }

    /// Stops following and makes this log a leader of a new epoch (contract 11; see
    /// [`super::promote`]). Returns the new epoch; open a [`Recorder`] on it to append.
    pub fn promote(mut self) -> Result<u64> {
        self.stop_thread()?;
        let config = self.config.clone();
        super::promote_with(&self.dir, config)
    }

    fn stop_thread(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::MaintainerDied("the follower thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Err(e) = self.stop_thread() {
            log::error!("closing the follower on {}: {e}", self.dir.display());
        }
    }
}

fn publish(shared: &Shared, r: &Recorder) {
    shared.received.store(r.last_seq(), Ordering::Release);
    shared.durable.store(r.durable_seq(), Ordering::Release);
}

fn open_recorder(
    dir: &Path,
    config: &Config,
    lock: &std::fs::File,
    start: Option<(ChainPoint, Framing)>,
) -> Result<Recorder> {
    let lock = lock.try_clone().map_err(|e| Error::io("dup", dir, e))?;
    let mut config = config.clone();
    if let Some((_, framing)) = start {
        config.record_time = framing.timed();
    }
    Recorder::open_as(dir, config, OpenAs::Follower { lock, start })
}

/// How one connection ended.
enum Ended {
    Stopped,
    /// The leader says our records from `from` on are not its log's.
    Diverged {
        from: u64,
        crc_before: u32,
    },
    /// Connect again after a pause.
    Retry(String),
    /// Stop for good.
    Fatal(String),
}

impl From<ChannelError> for Ended {
    fn from(e: ChannelError) -> Self {
        Ended::Retry(e.to_string())
    }
}

struct Worker {
    dir: PathBuf,
    leader: SocketAddr,
    options: FollowerOptions,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// The directory's lock, held for the follower's whole life (its recorder holds a
    /// duplicate, so closing the recorder to set records aside keeps it locked).
    lock: std::fs::File,
    state: ReplicaState,
    recorder: Option<Recorder>,
    shared: Arc<Shared>,
    /// The last record that broke the chain, and how many times in a row.
    mismatches: (u64, u32),
}

impl Worker {
    fn run(&mut self) -> Result<()> {
        let mut pause = self.options.reconnect_min;
        let result = loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break Ok(());
            }
            let ended = self.session();
            // A connection that got as far as records starts the back-off again.
            if self.shared.following.swap(false, Ordering::AcqRel) {
                pause = self.options.reconnect_min;
            }
            match ended {
                Ended::Stopped => break Ok(()),
                Ended::Diverged { from, crc_before } => {
                    if let Err(e) = self.set_aside(from, crc_before) {
                        self.fatal(e.to_string());
                        break Err(e);
                    }
                    pause = self.options.reconnect_min;
                }
                Ended::Retry(why) => {
                    log::warn!("{}: following {}: {why}", self.dir.display(), self.leader);
                    *self
                        .shared
                        .problem
                        .lock()
                        .expect("no panic under this lock") = Some(why);
                    self.sleep(pause);
                    pause = (pause * 2).min(self.options.reconnect_max);
                }
                Ended::Fatal(why) => {
                    log::error!(
                        "{}: stopped following {}: {why}",
                        self.dir.display(),
                        self.leader
                    );
                    self.fatal(why);
                    break Ok(());
                }
            }
        };
        let closed = match self.recorder.take() {
            Some(r) => r.close(),
            None => Ok(()),
        };
        self.shared.stopped.store(true, Ordering::Release);
        result.and(closed)
    }

    fn fatal(&self, why: String) {
        *self.shared.error.lock().expect("no panic under this lock") = Some(why.clone());
        *self
            .shared
            .problem
            .lock()
            .expect("no panic under this lock") = Some(why);
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.shared.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5).min(d));
        }
    }

    fn connect(&self) -> std::result::Result<Channel, Ended> {
        let sock = TcpStream::connect_timeout(&self.leader, self.options.connect_timeout)
            .map_err(|e| Ended::Retry(format!("connect: {e}")))?;
        let tls = match &self.tls {
            Some((cfg, name)) => Some(rustls::Connection::Client(
                rustls::ClientConnection::new(cfg.clone(), name.clone())
                    .map_err(|e| Ended::Fatal(format!("TLS: {e}")))?,
            )),
            None => None,
        };
        let mut ch = Channel::new(sock, tls).map_err(|e| Ended::Retry(e.to_string()))?;
        ch.handshake(self.options.connect_timeout)
            .map_err(|e| Ended::Retry(format!("TLS handshake: {e}")))?;
        Ok(ch)
    }

    fn session(&mut self) -> Ended {
        let mut ch = match self.connect() {
            Ok(ch) => ch,
            Err(e) => return e,
        };
        let (next_seq, prev_crc) = match self.recorder.as_ref().and_then(|r| r.chain()) {
            Some(at) => (at.next_seq, at.crc),
            None => (0, 0),
        };
        ch.send(&Frame::Hello(Hello {
            log_id: self.state.log_id,
            epoch: self.state.epoch(),
            next_seq,
            prev_crc,
            name: self.options.name.clone(),
        }));
        let answer = match ch.recv_timeout(self.options.leader_timeout) {
            Ok(Some(f)) => f,
            Ok(None) => return Ended::Retry("no answer to the hello".into()),
            Err(e) => return e.into(),
        };
        match answer {
            Frame::Welcome(w) => match self.welcomed(&mut ch, w, next_seq) {
                Ok(()) => self.stream(&mut ch),
                Err(e) => e,
            },
            Frame::Diverged { from, crc_before } => Ended::Diverged { from, crc_before },
            Frame::Refuse { code, message } if code.is_permanent() => {
                Ended::Fatal(format!("the leader refused: {message}"))
            }
            Frame::Refuse { message, .. } => Ended::Retry(format!("the leader refused: {message}")),
            other => Ended::Retry(format!("unexpected answer {other:?}")),
        }
    }

    /// Checks a welcome and takes the leader's identity and epochs; opens the recorder of an
    /// empty log at the leader's chain point.
    fn welcomed(
        &mut self,
        ch: &mut Channel,
        w: Welcome,
        next_seq: u64,
    ) -> std::result::Result<(), Ended> {
        let refuse = |ch: &mut Channel, code: RefuseCode, why: String| {
            ch.send(&Frame::Refuse {
                code,
                message: why.clone(),
            });
            let _ = ch.flush_timeout(Duration::from_millis(200));
            why
        };
        if self.state.log_id != 0 && w.log_id != self.state.log_id {
            let why = format!(
                "the leader serves log {:032x}, this follower holds {:032x}",
                w.log_id, self.state.log_id
            );
            return Err(Ended::Fatal(refuse(ch, RefuseCode::WrongLog, why)));
        }
        let leader_epoch = w.history.last().map_or(0, |e| e.epoch);
        if leader_epoch < self.state.epoch() {
            // A stale leader: another may take its address; nothing of it is written.
            let why = format!(
                "the leader's epoch {leader_epoch} is older than this follower's {}: refused",
                self.state.epoch()
            );
            return Err(Ended::Retry(refuse(ch, RefuseCode::StaleEpoch, why)));
        }
        if w.start_seq == 0 {
            let why = "the leader's welcome starts at sequence number 0".to_string();
            return Err(Ended::Retry(refuse(ch, RefuseCode::Protocol, why)));
        }
        if next_seq != 0 && w.start_seq != next_seq {
            return Err(Ended::Retry(format!(
                "the leader starts at {} where this log continues at {next_seq}",
                w.start_seq
            )));
        }
        let state = ReplicaState {
            log_id: w.log_id,
            role: Role::Follower,
            history: w.history.clone(),
        };
        if state != self.state {
            // Durable before any record of the new epoch: fencing survives a crash.
            state
                .store(&self.dir)
                .map_err(|e| Ended::Fatal(e.to_string()))?;
            self.state = state;
            self.shared.epoch.store(leader_epoch, Ordering::Relaxed);
        }
        let framing = match w.timed {
            true => Framing::Timed,
            false => Framing::Plain,
        };
        match &self.recorder {
            Some(r) => {
                let here = r.chain().map(|_| r.framing());
                if here != Some(framing) {
                    return Err(Ended::Fatal(format!(
                        "the leader's records {} time and this log's {}",
                        if w.timed { "carry" } else { "do not carry" },
                        if w.timed { "do not" } else { "do" }
                    )));
                }
            }
            None => {
                let at = ChainPoint {
                    next_seq: w.start_seq,
                    crc: w.prev_crc,
                    max_time: w.prev_max_time,
                };
                let r = open_recorder(
                    &self.dir,
                    &self.options.config,
                    &self.lock,
                    Some((at, framing)),
                )
                .map_err(|e| Ended::Fatal(e.to_string()))?;
                publish(&self.shared, &r);
                self.recorder = Some(r);
            }
        }
        Ok(())
    }

    /// Receives records until the connection ends.
    fn stream(&mut self, ch: &mut Channel) -> Ended {
        self.shared.following.store(true, Ordering::Release);
        let epoch = self.state.epoch();
        let rec = self.recorder.as_mut().expect("welcomed opens the recorder");
        let timed = rec.framing().timed();
        let mut at = rec.chain().expect("an open recorder has a chain");
        let mut last_heard = Instant::now();
        let mut acked = (u64::MAX, u64::MAX);
        let mut last_ack = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Ended::Stopped;
            }
            let mut got = false;
            loop {
                let frame = match ch.recv() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return e.into(),
                };
                got = true;
                match frame {
                    Frame::Records(body) => {
                        for r in RecordsIter::new(&body) {
                            let r = r.expect("a records frame is checked whole when decoded");
                            if r.seq != at.next_seq {
                                let why =
                                    format!("record {} where {} was next", r.seq, at.next_seq);
                                ch.send(&Frame::Refuse {
                                    code: RefuseCode::ChainMismatch,
                                    message: why.clone(),
                                });
                                let _ = ch.flush_timeout(Duration::from_millis(200));
                                return Ended::Retry(why);
                            }
                            let crc = record_crc(at.crc, r.seq, timed.then_some(r.time), r.payload);
                            if crc != r.crc {
                                // Nothing is written. Damaged on the way: fetched again; the
                                // same mismatch each time: the leader's log differs from
                                // this one, and an operator decides.
                                let why = format!(
                                    "record {} does not continue this log's chain: nothing written",
                                    r.seq
                                );
                                ch.send(&Frame::Refuse {
                                    code: RefuseCode::ChainMismatch,
                                    message: why.clone(),
                                });
                                let _ = ch.flush_timeout(Duration::from_millis(200));
                                self.mismatches = match self.mismatches {
                                    (seq, n) if seq == r.seq => (seq, n + 1),
                                    _ => (r.seq, 1),
                                };
                                return match self.mismatches.1 >= MISMATCHES_FATAL {
                                    true => Ended::Fatal(format!(
                                        "{why} ({MISMATCHES_FATAL} times: the leader's log differs from this one there; promote this log or restore the leader's)"
                                    )),
                                    false => Ended::Retry(why),
                                };
                            }
                            let appended = match timed {
                                true => rec.append_at(r.time, r.payload),
                                false => rec.append(r.payload),
                            };
                            let seq = match appended {
                                Ok(seq) => seq,
                                Err(e) if rec.health() == Health::Failed => {
                                    return Ended::Fatal(e.to_string())
                                }
                                Err(e) => return Ended::Retry(format!("append: {e}")),
                            };
                            assert_eq!(
                                seq, r.seq,
                                "the follower's recorder continues the leader's sequence"
                            );
                            at.next_seq = seq + 1;
                            at.crc = crc;
                        }
                        self.shared
                            .received
                            .store(at.next_seq - 1, Ordering::Release);
                        self.shared
                            .leader_seq
                            .fetch_max(at.next_seq - 1, Ordering::Relaxed);
                        // Acknowledge between frames: a leader that keeps sending must still
                        // hear how far this log is durable.
                        break;
                    }
                    Frame::Heartbeat { last_seq } => {
                        self.shared
                            .leader_seq
                            .fetch_max(last_seq, Ordering::Relaxed);
                    }
                    Frame::Refuse { code, message } if code.is_permanent() => {
                        return Ended::Fatal(format!("the leader refused: {message}"))
                    }
                    Frame::Refuse { message, .. } => {
                        return Ended::Retry(format!("the leader refused: {message}"))
                    }
                    other => return Ended::Retry(format!("unexpected {other:?}")),
                }
            }
            if got {
                last_heard = Instant::now();
            } else if last_heard.elapsed() > self.options.leader_timeout {
                return Ended::Retry("the leader is silent".into());
            }
            let durable = rec.durable_seq();
            self.shared.durable.store(durable, Ordering::Release);
            let now = (durable, at.next_seq - 1);
            if now != acked || last_ack.elapsed() >= ACK_EVERY {
                ch.send(&Frame::Ack(Ack {
                    epoch,
                    durable_seq: now.0,
                    received_seq: now.1,
                }));
                acked = now;
                last_ack = Instant::now();
            }
            if let Err(e) = ch.flush() {
                return e.into();
            }
            if !got {
                if let Err(e) = ch.wait(POLL, ch.pending() > 0) {
                    return Ended::Retry(e.to_string());
                }
            }
        }
    }

    /// Closes the recorder, moves the records from `from` on to `quarantine/`, reopens.
    fn set_aside(&mut self, from: u64, crc_before: u32) -> Result<()> {
        if let Some(r) = self.recorder.take() {
            r.close()?;
        }
        let moved = super::rejoin::set_aside_from(&self.dir, from, crc_before, self.state.epoch())?;
        self.shared.set_aside.fetch_add(moved, Ordering::Relaxed);
        let has_log = !crate::logdir::list_dir(&self.dir)?.segments.is_empty();
        if has_log {
            let r = open_recorder(&self.dir, &self.options.config, &self.lock, None)?;
            publish(&self.shared, &r);
            self.recorder = Some(r);
        }
        Ok(())
    }
}
