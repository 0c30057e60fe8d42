//! The replication protocol's frames (docs/REPLICATION.md, "Protocol"): a 4-byte
//! little-endian length, a 1-byte kind, the body. Decoding checks every length against the
//! bytes present and the frame against [`MAX_FRAME`]; it never trusts the peer.
//!
//! ```text
//!  0        4     5
//!  +--------+-----+----------------------+
//!  |  len   |kind |  body (len - 1 bytes) |
//!  +--------+-----+----------------------+
//! ```

use crate::constants::MAX_RECORD_LEN;

/// The first bytes of a `Hello`: the protocol and its version.
pub(crate) const MAGIC: [u8; 8] = *b"WALREPL1";

/// The largest frame either side accepts: one record of the largest size with its framing,
/// or a batch of smaller ones. A peer announcing more is disconnected.
pub(crate) const MAX_FRAME: usize = MAX_RECORD_LEN + 1024;

/// A batch of records is closed once it holds this many bytes (a larger record goes alone).
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

pub(crate) use super::epochs::{EpochStart, MAX_HISTORY};

const LEN_BYTES: usize = 4;

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Follower → leader, first: who it is and where its log ends.
    Hello(Hello),
    /// Leader → follower: accepted; records follow from `start`.
    Welcome(Welcome),
    /// Leader → follower: the follower's records from `from` on are not the leader's (they
    /// were written by an older epoch's leader and never replicated): set them aside and
    /// connect again. `crc_before` is the leader's chained checksum before `from`.
    Diverged { from: u64, crc_before: u32 },
    /// Either side: refused, with the reason; the connection closes.
    Refuse { code: RefuseCode, message: String },
    /// Leader → follower: records (their bytes are decoded by [`RecordsIter`]).
    Records(Vec<u8>),
    /// Follower → leader: how far the follower holds the leader's records.
    Ack(Ack),
    /// Leader → follower, while idle: the leader is alive; its last committed seq.
    Heartbeat { last_seq: u64 },
}

/// Why a peer was refused; the follower stops on the permanent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefuseCode {
    /// Garbage, a wrong protocol or version, an oversized frame.
    Protocol = 1,
    /// The peer belongs to another log.
    WrongLog = 2,
    /// The peer's epoch is older (a stale leader, or acknowledgements from a stale follower).
    StaleEpoch = 3,
    /// The leader no longer holds the records the follower lacks.
    SeqNotFound = 4,
    /// The follower holds records of this epoch the leader does not (the leader lost them,
    /// as at a power cut): promote the follower or restore the leader; nothing is discarded.
    FollowerAhead = 5,
    /// The records do not continue the follower's chain.
    ChainMismatch = 6,
    /// The leader is closing.
    ShuttingDown = 7,
}

impl RefuseCode {
    fn of(b: u8) -> Option<Self> {
        use RefuseCode::*;
        Some(match b {
            1 => Protocol,
            2 => WrongLog,
            3 => StaleEpoch,
            4 => SeqNotFound,
            5 => FollowerAhead,
            6 => ChainMismatch,
            7 => ShuttingDown,
            _ => return None,
        })
    }

    /// Whether a follower refused this way should stop rather than connect again.
    pub(crate) fn is_permanent(self) -> bool {
        // A stale leader may be replaced at the same address by the new one.
        !matches!(
            self,
            RefuseCode::ShuttingDown | RefuseCode::Protocol | RefuseCode::StaleEpoch
        )
    }
}

/// A follower's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The log it follows (0: none yet, it takes the leader's).
    pub log_id: u128,
    /// The newest epoch it has seen (0: none).
    pub epoch: u64,
    /// The next sequence number it lacks (0: its log is empty).
    pub next_seq: u64,
    /// Its chained checksum before `next_seq`.
    pub prev_crc: u32,
    /// Its name (for the leader's logs and its retention hold).
    pub name: String,
}

/// A leader's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Welcome {
    pub log_id: u128,
    /// The epochs of the leader's log, oldest first; the last is the leader's own.
    pub history: Vec<EpochStart>,
    /// The first record it ships, with the chain before it (for an empty follower: the
    /// leader's first retained record).
    pub start_seq: u64,
    pub prev_crc: u32,
    pub prev_max_time: u64,
    /// Whether records carry time (format version 2).
    pub timed: bool,
}

/// A follower's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// The epoch it follows.
    pub epoch: u64,
    /// Every record up to this is durable on the follower.
    pub durable_seq: u64,
    /// Every record up to this is in the follower's log (committed, maybe not durable).
    pub received_seq: u64,
}

/// A frame that cannot be accepted; the connection is closed and nothing in it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadFrame(pub String);

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const DIVERGED: u8 = 3;
const REFUSE: u8 = 4;
const RECORDS: u8 = 5;
const ACK: u8 = 6;
const HEARTBEAT: u8 = 7;

impl Frame {
    /// Appends the encoded frame to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; LEN_BYTES]);
        match self {
            Frame::Hello(h) => {
                out.push(HELLO);
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&h.log_id.to_le_bytes());
                out.extend_from_slice(&h.epoch.to_le_bytes());
                out.extend_from_slice(&h.next_seq.to_le_bytes());
                out.extend_from_slice(&h.prev_crc.to_le_bytes());
                put_str(out, &h.name);
            }
            Frame::Welcome(w) => {
                out.push(WELCOME);
                out.extend_from_slice(&w.log_id.to_le_bytes());
                out.extend_from_slice(&w.start_seq.to_le_bytes());
                out.extend_from_slice(&w.prev_crc.to_le_bytes());
                out.extend_from_slice(&w.prev_max_time.to_le_bytes());
                out.push(u8::from(w.timed));
                let history = &w.history[w.history.len().saturating_sub(MAX_HISTORY)..];
                out.extend_from_slice(&(history.len() as u32).to_le_bytes());
                for e in history {
                    out.extend_from_slice(&e.epoch.to_le_bytes());
                    out.extend_from_slice(&e.start_seq.to_le_bytes());
                }
            }
            Frame::Diverged { from, crc_before } => {
                out.push(DIVERGED);
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&crc_before.to_le_bytes());
            }
            Frame::Refuse { code, message } => {
                out.push(REFUSE);
                out.push(*code as u8);
                put_str(out, message);
            }
            Frame::Records(body) => {
                out.push(RECORDS);
                out.extend_from_slice(body);
            }
            Frame::Ack(a) => {
                out.push(ACK);
                out.extend_from_slice(&a.epoch.to_le_bytes());
                out.extend_from_slice(&a.durable_seq.to_le_bytes());
                out.extend_from_slice(&a.received_seq.to_le_bytes());
            }
            Frame::Heartbeat { last_seq } => {
                out.push(HEARTBEAT);
                out.extend_from_slice(&last_seq.to_le_bytes());
            }
        }
        let len = (out.len() - start - LEN_BYTES) as u32;
        out[start..start + LEN_BYTES].copy_from_slice(&len.to_le_bytes());
    }

    /// Takes the first whole frame off the front of `buf`: `Ok(None)` while it is incomplete.
    /// Returns the frame and the bytes it used.
    pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, BadFrame> {
        if buf.len() < LEN_BYTES {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[..LEN_BYTES].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(BadFrame(format!(
                "frame of {len} bytes (the limit is {MAX_FRAME})"
            )));
        }
        if buf.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let body = &buf[LEN_BYTES + 1..LEN_BYTES + len];
        let frame = Self::decode_body(buf[LEN_BYTES], body)?;
        Ok(Some((frame, LEN_BYTES + len)))
    }

    fn decode_body(kind: u8, body: &[u8]) -> Result<Frame, BadFrame> {
        let mut r = Cursor { b: body, at: 0 };
        let frame = match kind {
            HELLO => {
                if r.take(8)? != MAGIC {
                    return Err(BadFrame("not a wal-recorder replication peer".into()));
                }
                Frame::Hello(Hello {
                    log_id: r.u128()?,
                    epoch: r.u64()?,
                    next_seq: r.u64()?,
                    prev_crc: r.u32()?,
                    name: r.string()?,
                })
            }
            WELCOME => {
                let log_id = r.u128()?;
                let start_seq = r.u64()?;
                let prev_crc = r.u32()?;
                let prev_max_time = r.u64()?;
                let timed = match r.u8()? {
                    0 => false,
                    1 => true,
                    b => return Err(BadFrame(format!("time flag {b}"))),
                };
                let n = r.u32()? as usize;
                if n == 0 || n > MAX_HISTORY {
                    return Err(BadFrame(format!("{n} epochs in a welcome")));
                }
                let mut history = Vec::with_capacity(n);
                for _ in 0..n {
                    history.push(EpochStart {
                        epoch: r.u64()?,
                        start_seq: r.u64()?,
                    });
                }
                if history
                    .windows(2)
                    .any(|w| w[1].epoch <= w[0].epoch || w[1].start_seq < w[0].start_seq)
                {
                    return Err(BadFrame("epochs out of order".into()));
                }
                Frame::Welcome(Welcome {
                    log_id,
                    history,
                    start_seq,
                    prev_crc,
                    prev_max_time,
                    timed,
                })
            }
            DIVERGED => Frame::Diverged {
                from: r.u64()?,
                crc_before: r.u32()?,
            },
            REFUSE => {
                let code = r.u8()?;
                Frame::Refuse {
                    code: RefuseCode::of(code)
                        .ok_or_else(|| BadFrame(format!("refusal code {code}")))?,
                    message: r.string()?,
                }
            }
            RECORDS => {
                // Checked whole before any record is used.
                RecordsIter::new(body).try_for_each(|r| r.map(|_| ()))?;
                return Ok(Frame::Records(body.to_vec()));
            }
            ACK => Frame::Ack(Ack {
                epoch: r.u64()?,
                durable_seq: r.u64()?,
                received_seq: r.u64()?,
            }),
            HEARTBEAT => Frame::Heartbeat { last_seq: r.u64()? },
            k => return Err(BadFrame(format!("unknown frame kind {k}"))),
        };
        if r.at != body.len() {
            return Err(BadFrame(format!(
                "{} bytes after the end of a frame",
                body.len() - r.at
            )));
        }
        Ok(frame)
    }
}

/// One record in a `Records` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireRecord<'a> {
    pub seq: u64,
    pub time: u64,
    pub crc: u32,
    pub payload: &'a [u8],
}

/// Builds the body of a `Records` frame in place: [`Self::begin`], records, [`Self::finish`].
pub(crate) struct RecordsWriter;

impl RecordsWriter {
    /// Starts a `Records` frame at the end of `out`; returns where it starts.
    pub(crate) fn begin(out: &mut Vec<u8>) -> usize {
        let at = out.len();
        out.extend_from_slice(&[0; LEN_BYTES]);
        out.push(RECORDS);
        at
    }

    pub(crate) fn push(out: &mut Vec<u8>, r: WireRecord<'_>) {
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.time.to_le_bytes());
        out.extend_from_slice(&r.crc.to_le_bytes());
        out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(r.payload);
    }

    /// Closes the frame begun at `at`; returns its size.
    pub(crate) fn finish(out: &mut [u8], at: usize) -> usize {
        let len = out.len() - at - LEN_BYTES;
        assert!(len <= MAX_FRAME, "a records frame of {len} bytes");
        out[at..at + LEN_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
        len + LEN_BYTES
    }
}

/// The records of a `Records` body, each checked to fit.
pub(crate) struct RecordsIter<'a> {
    r: Cursor<'a>,
}

impl<'a> RecordsIter<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        RecordsIter {
            r: Cursor { b: body, at: 0 },
        }
    }
}

impl<'a> Iterator for RecordsIter<'a> {
    type Item = Result<WireRecord<'a>, BadFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.at == self.r.b.len() {
            return None;
        }
        Some((|| {
            let seq = self.r.u64()?;
            let time = self.r.u64()?;
            let crc = self.r.u32()?;
            let len = self.r.u32()? as usize;
            if len > MAX_RECORD_LEN {
                return Err(BadFrame(format!("record {seq} of {len} bytes")));
            }
            Ok(WireRecord {
                seq,
                time,
                crc,
                payload: self.r.take(len)?,
            })
        })())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadFrame> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| BadFrame("frame ends inside a field".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BadFrame> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BadFrame> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, BadFrame> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u128(&mut self) -> Result<u128, BadFrame> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn string(&mut self) -> Result<String, BadFrame> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| BadFrame("a name not in UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut out = Vec::new();
        f.encode(&mut out);
        let (back, used) = Frame::decode(&out).unwrap().unwrap();
        assert_eq!((back, used), (f, out.len()));
        // Every strict prefix is incomplete, never a different frame.
        for cut in 0..out.len() {
            assert_eq!(Frame::decode(&out[..cut]).unwrap(), None, "prefix {cut}");
        }
    }

    #[test]
    fn every_frame_round_trips_and_a_prefix_is_incomplete() {
        round_trip(Frame::Hello(Hello {
            log_id: 0x1234_5678_9abc_def0_1122_3344_5566_7788,
            epoch: 3,
            next_seq: 77,
            prev_crc: 0xdead_beef,
            name: "standby-a".into(),
        }));
        round_trip(Frame::Welcome(Welcome {
            log_id: 9,
            history: vec![
                EpochStart {
                    epoch: 1,
                    start_seq: 1,
                },
                EpochStart {
                    epoch: 4,
                    start_seq: 90,
                },
            ],
            start_seq: 90,
            prev_crc: 5,
            prev_max_time: 6,
            timed: true,
        }));
        round_trip(Frame::Diverged {
            from: 12,
            crc_before: 13,
        });
        round_trip(Frame::Refuse {
            code: RefuseCode::StaleEpoch,
            message: "epoch 2 is older than 3".into(),
        });
        round_trip(Frame::Ack(Ack {
            epoch: 2,
            durable_seq: 10,
            received_seq: 11,
        }));
        round_trip(Frame::Heartbeat { last_seq: 4 });
        let mut out = Vec::new();
        let at = RecordsWriter::begin(&mut out);
        for (seq, p) in [(5u64, &b"abc"[..]), (6, b""), (7, b"xyz12345")] {
            RecordsWriter::push(
                &mut out,
                WireRecord {
                    seq,
                    time: seq * 10,
                    crc: seq as u32,
                    payload: p,
                },
            );
        }
        RecordsWriter::finish(&mut out, at);
        let (f, used) = Frame::decode(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        let Frame::Records(body) = f else {
            panic!("records expected")
        };
        let got: Vec<_> = RecordsIter::new(&body).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[2].seq, got[2].time, got[2].payload),
            (7, 70, &b"xyz12345"[..])
        );
    }

    #[test]
    fn garbage_oversized_and_trailing_bytes_are_refused() {
        let mut big = (MAX_FRAME as u32 + 1).to_le_bytes().to_vec();
        big.push(RECORDS);
        assert!(Frame::decode(&big).is_err(), "oversized");
        assert!(Frame::decode(&[0, 0, 0, 0]).is_err(), "empty frame");
        assert!(Frame::decode(b"GET / HTTP/1.1\r\n\r\n").is_err(), "garbage");
        let mut out = Vec::new();
        Frame::Heartbeat { last_seq: 1 }.encode(&mut out);
        out[0] += 1;
        out.push(0);
        assert!(Frame::decode(&out).is_err(), "trailing byte");
        // A record whose length runs past its frame.
        let mut out = Vec::new();
        let at = RecordsWriter::begin(&mut out);
        RecordsWriter::push(
            &mut out,
            WireRecord {
                seq: 1,
                time: 0,
                crc: 0,
                payload: b"abcd",
            },
        );
        out.truncate(out.len() - 1);
        RecordsWriter::finish(&mut out, at);
        assert!(Frame::decode(&out).is_err(), "record past its frame");
        let mut hello = Vec::new();
        Frame::Hello(Hello {
            log_id: 0,
            epoch: 0,
            next_seq: 0,
            prev_crc: 0,
            name: String::new(),
        })
        .encode(&mut hello);
        hello[5] = b'X';
        assert!(Frame::decode(&hello).is_err(), "wrong magic");
    }
}
