//! One follower's connection on the leader: the handshake (identity, epoch, where the
//! follower's log ends), then a loop that reads committed records as a [`Tailer`] does, ships
//! them in batches and takes the follower's acknowledgements, on one thread with a
//! non-blocking socket. A follower that falls behind only makes its own tailer fall behind;
//! the writer never waits for it.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelError};
use super::leader::LeaderShared;
use super::wire::{Ack, Frame, Hello, RecordsWriter, RefuseCode, Welcome, WireRecord, BATCH_BYTES};
use crate::error::Error;
use crate::logdir::{StartAt, Tailer, Visibility};

/// Time a peer has for the TLS handshake and its `Hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes queued for a slow follower before the shipper stops reading the log for it.
const MAX_QUEUED: usize = 4 * BATCH_BYTES;
/// A heartbeat goes out after this long without records.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
/// How often the follower's position is saved for retention (`readers/replica-<name>.pos`).
const SAVE_POSITION_EVERY: Duration = Duration::from_millis(100);

/// Serves one follower until it leaves, fails or the leader stops.
pub(crate) fn serve(sock: TcpStream, addr: SocketAddr, shared: Arc<LeaderShared>) {
    let tls = match &shared.tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(c) => Some(rustls::Connection::Server(c)),
            Err(e) => {
                log::warn!("replication: {addr}: TLS: {e}");
                return;
            }
        },
        None => None,
    };
    let mut ch = match Channel::new(sock, tls) {
        Ok(ch) => ch,
        Err(e) => {
            log::warn!("replication: {addr}: {e}");
            return;
        }
    };
    if let Err(e) = ch.handshake(HANDSHAKE_TIMEOUT) {
        log::warn!("replication: {addr}: disconnected during the TLS handshake: {e}");
        return;
    }
    let hello = match ch.recv_timeout(HANDSHAKE_TIMEOUT) {
        Ok(Some(Frame::Hello(h))) => h,
        Ok(Some(other)) => {
            return refuse(
                ch,
                RefuseCode::Protocol,
                &format!("expected a hello, got {other:?}"),
            )
        }
        Ok(None) => return refuse(ch, RefuseCode::Protocol, "no hello within 5 s"),
        Err(e) => {
            log::warn!("replication: {addr}: disconnected: {e}");
            return;
        }
    };
    let start = match admit(&shared, &hello, &mut ch) {
        Ok(Some(start)) => start,
        Ok(None) => return, // told to diverge, or refused
        Err((code, why)) => return refuse(ch, code, &why),
    };
    // The follower's place in the log, for retention to hold within `hold_segments`.
    let start = match follower_position(&shared, &hello.name, &start) {
        Ok(()) => match start
            .tailer
            .with_position(&format!("replica-{}", hello.name))
        {
            Ok(tailer) => Start { tailer, ..start },
            Err(e) => return refuse(ch, RefuseCode::Protocol, &format!("follower position: {e}")),
        },
        Err(e) => return refuse(ch, RefuseCode::Protocol, &format!("follower name: {e}")),
    };
    let slot = shared.connected(&hello.name, addr);
    log::info!(
        "replication: follower {:?} at {addr} follows from seq {}",
        hello.name,
        start.seq
    );
    match ship(&shared, &mut ch, slot, start) {
        Ok(()) => ch.refuse(RefuseCode::ShuttingDown, "the leader is closing"),
        Err(Ended::Peer(e)) => log::warn!(
            "replication: follower {:?} at {addr} disconnected: {e}",
            hello.name
        ),
        Err(Ended::Refused(code, why)) => refuse(ch, code, &why),
    }
    shared.disconnected(slot);
}

fn refuse(ch: Channel, code: RefuseCode, why: &str) {
    log::warn!("replication: refusing {}: {why}", ch.peer());
    ch.refuse(code, why);
}

/// Where shipping starts (the record and the chain before it) and the tailer that reads
/// from there.
struct Start {
    seq: u64,
    crc: u32,
    tailer: Tailer,
}

/// Saves where the follower starts as its position, even behind the one saved before: what
/// was shipped on a lost connection may not have reached it.
fn follower_position(shared: &LeaderShared, name: &str, start: &Start) -> crate::Result<()> {
    let mut p = crate::logdir::reader_position::ReaderPosition::open(
        &shared.dir,
        &format!("replica-{name}"),
    )?;
    p.restart_at(start.seq, start.crc)
}

/// Checks the follower and answers its hello: `Ok(Some)` to ship, `Ok(None)` when the
/// follower was told where it diverges (it sets its records aside and connects again).
fn admit(
    shared: &LeaderShared,
    hello: &Hello,
    ch: &mut Channel,
) -> Result<Option<Start>, (RefuseCode, String)> {
    let state = &shared.state;
    if hello.log_id != 0 && hello.log_id != state.log_id {
        return Err((
            RefuseCode::WrongLog,
            format!(
                "the follower belongs to log {:032x}, this is {:032x}",
                hello.log_id, state.log_id
            ),
        ));
    }
    if hello.epoch > state.epoch() {
        return Err((
            RefuseCode::StaleEpoch,
            format!(
                "this leader's epoch {} is older than the follower's {}: a newer leader exists",
                state.epoch(),
                hello.epoch
            ),
        ));
    }
    let last = shared.link.appended_seq();
    let tailer = |at: StartAt| -> Result<Tailer, (RefuseCode, String)> {
        Tailer::open(&shared.dir, at)
            .map(|t| {
                t.with_visibility(Visibility::Committed)
                    .with_staging_dir(Some(&shared.staging_dir))
            })
            .map_err(|e| match e {
                Error::SeqNotFound { .. } => (RefuseCode::SeqNotFound, e.to_string()),
                e => (
                    RefuseCode::Protocol,
                    format!("the leader cannot read its log: {e}"),
                ),
            })
    };
    if hello.next_seq == 0 {
        // An empty follower starts at the first retained record, with the chain before it.
        let mut t = tailer(StartAt::First)?;
        let (seq, crc) = t
            .chain_ahead()
            .map_err(|e| {
                (
                    RefuseCode::Protocol,
                    format!("the leader cannot read its log: {e}"),
                )
            })?
            .ok_or((
                RefuseCode::ShuttingDown,
                "the leader's log has no segment yet".to_string(),
            ))?;
        welcome(shared, ch, seq, crc);
        return Ok(Some(Start {
            seq,
            crc,
            tailer: t,
        }));
    }
    let from = state.divergence(hello.epoch, hello.next_seq);
    if from < hello.next_seq {
        // Written after a newer epoch began here: not this log's records.
        let crc_before = crc_before(shared, from)?;
        ch.send(&Frame::Diverged { from, crc_before });
        let _ = ch.flush_timeout(Duration::from_secs(1));
        log::warn!(
            "replication: follower {:?} of epoch {} holds records from {from} on that epoch {} does not: told to set them aside",
            hello.name,
            hello.epoch,
            state.epoch()
        );
        return Ok(None);
    }
    if hello.next_seq > last + 1 {
        return Err((
            RefuseCode::FollowerAhead,
            format!(
                "the follower holds records up to {} and this leader only up to {last} in the same epoch {} (lost here, as at a power cut): promote the follower, or restore this log from it; nothing is discarded",
                hello.next_seq - 1,
                state.epoch()
            ),
        ));
    }
    // Same epoch, same place, other records: the logs differ (the leader lost and rewrote
    // what the follower holds, as after a power cut); nothing is shipped over them.
    let here = crc_before(shared, hello.next_seq)?;
    if here != hello.prev_crc {
        return Err((
            RefuseCode::ChainMismatch,
            format!(
                "the follower's record {} has checksum {:#010x}, this leader's {here:#010x}: the logs differ within epoch {}; promote the follower or restore this log from it",
                hello.next_seq - 1,
                hello.prev_crc,
                state.epoch()
            ),
        ));
    }
    let t = tailer(StartAt::Seq(hello.next_seq))?;
    welcome(shared, ch, hello.next_seq, hello.prev_crc);
    Ok(Some(Start {
        seq: hello.next_seq,
        crc: hello.prev_crc,
        tailer: t,
    }))
}

fn welcome(shared: &LeaderShared, ch: &mut Channel, start_seq: u64, prev_crc: u32) {
    ch.send(&Frame::Welcome(Welcome {
        log_id: shared.state.log_id,
        history: shared.state.history.clone(),
        start_seq,
        prev_crc,
        prev_max_time: 0,
        timed: log_timed(shared),
    }));
}

/// Whether the leader's records carry time (its recorder's framing).
fn log_timed(shared: &LeaderShared) -> bool {
    shared.link.clock.get().is_some()
}

/// The leader's chained checksum before record `seq`.
fn crc_before(shared: &LeaderShared, seq: u64) -> Result<u32, (RefuseCode, String)> {
    if seq <= 1 {
        return Ok(0); // the first record chains from 0
    }
    let err = |e: Error| (RefuseCode::SeqNotFound, e.to_string());
    let mut t = Tailer::open(&shared.dir, StartAt::Seq(seq - 1))
        .map_err(err)?
        .with_staging_dir(Some(&shared.staging_dir));
    let mut payload = Vec::new();
    match t
        .next_timeout(&mut payload, Duration::from_secs(1))
        .map_err(err)?
    {
        Some(info) if info.seq == seq - 1 => Ok(info.crc),
        _ => Err((
            RefuseCode::SeqNotFound,
            format!("record {} is not readable here", seq - 1),
        )),
    }
}

enum Ended {
    /// The follower went away or failed.
    Peer(ChannelError),
    /// It is refused (a stale acknowledgement, a bad frame).
    Refused(RefuseCode, String),
}

impl From<ChannelError> for Ended {
    fn from(e: ChannelError) -> Self {
        Ended::Peer(e)
    }
}

/// The shipping loop; `Ok(())` when the leader stops.
fn ship(shared: &LeaderShared, ch: &mut Channel, slot: usize, start: Start) -> Result<(), Ended> {
    let Start { mut tailer, .. } = start;
    let mut payload = Vec::with_capacity(4096);
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut last_saved = Instant::now();
    let mut idle_round = 0u32;
    let epoch = shared.epoch();
    while !shared.stop.load(Ordering::Acquire) {
        let mut shipped = 0usize;
        if ch.pending() < MAX_QUEUED {
            let out = ch.out_buffer();
            let at = RecordsWriter::begin(out);
            while out.len() - at < BATCH_BYTES {
                let info = match tailer.poll(&mut payload) {
                    Ok(Some(info)) => info,
                    Ok(None) => break,
                    Err(e) => {
                        out.truncate(at);
                        return Err(Ended::Refused(
                            RefuseCode::SeqNotFound,
                            format!("the leader can no longer read what the follower lacks: {e}"),
                        ));
                    }
                };
                RecordsWriter::push(
                    out,
                    WireRecord {
                        seq: info.seq,
                        time: info.time.unwrap_or(0),
                        crc: info.crc,
                        payload: &payload,
                    },
                );
                shipped += 1;
            }
            match shipped {
                0 => out.truncate(at),
                _ => {
                    RecordsWriter::finish(out, at);
                    last_sent = Instant::now();
                }
            }
        }
        if last_saved.elapsed() >= SAVE_POSITION_EVERY {
            if let Err(e) = tailer.commit() {
                log::warn!(
                    "replication: {}: saving the follower's position: {e}",
                    ch.peer()
                );
            }
            last_saved = Instant::now();
        }
        if shipped == 0 && last_sent.elapsed() >= HEARTBEAT_EVERY {
            ch.send(&Frame::Heartbeat {
                last_seq: shared.link.appended_seq(),
            });
            last_sent = Instant::now();
        }
        ch.flush()?;
        let mut heard = false;
        while let Some(frame) = ch.recv()? {
            heard = true;
            match frame {
                Frame::Ack(Ack {
                    epoch: e,
                    durable_seq,
                    received_seq,
                }) if e == epoch => shared.acked(slot, durable_seq, received_seq),
                Frame::Ack(a) => {
                    return Err(Ended::Refused(
                        RefuseCode::StaleEpoch,
                        format!(
                            "an acknowledgement of epoch {} (this leader's is {epoch})",
                            a.epoch
                        ),
                    ))
                }
                Frame::Refuse { code, message } => {
                    log::warn!(
                        "replication: {} refused the records: {code:?}: {message}",
                        ch.peer()
                    );
                    return Err(Ended::Peer(ChannelError::Io(std::io::Error::other(
                        "refused",
                    ))));
                }
                other => {
                    return Err(Ended::Refused(
                        RefuseCode::Protocol,
                        format!("unexpected {other:?}"),
                    ))
                }
            }
        }
        if heard {
            last_heard = Instant::now();
        } else if last_heard.elapsed() > shared.config.follower_timeout {
            return Err(Ended::Peer(ChannelError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "silent for longer than follower_timeout",
            ))));
        }
        match shipped > 0 || heard {
            true => idle_round = 0,
            false => {
                idle_round = idle_round.saturating_add(1);
                crate::backoff::idle_pause(idle_round, shared.config.idle_max);
            }
        }
    }
    Ok(())
}
