//! Reads the records of one segment from any byte stream (a `.wal` file, or the decoder of a
//! `.wal.lz4`), checking every checksum, the chain and the sequence. It never panics and
//! never allocates more than one record's payload. Whether a break is a torn tail or
//! corruption depends on where the segment sits in the log; the directory reader decides.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::format::{
    record_crc, RecordHeader, Seal, SegmentHeader, TimeRange, ALIGN, HEADER_LEN,
    MAX_RECORD_HEADER_LEN, MAX_SEAL_LEN, SEAL_MARKER,
};
use crate::error::{Corruption, Error, Result};

/// One record as the reader found it; its payload is in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Sequence number.
    pub seq: u64,
    /// Chained checksum.
    pub crc: u32,
    /// Offset of the record's frame header in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// The record's time, nanoseconds since the Unix epoch; `None` in a segment of format
    /// version 1 (records without time).
    pub time: Option<u64>,
}

/// How the records of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// A valid seal agreeing with the records.
    Sealed(Seal),
    /// An all-zero frame header: the clean end of an unsealed segment.
    Open {
        /// Offset of the zero frame header.
        offset: u64,
    },
    /// Something that is neither a valid record nor a clean end nor a valid seal. In the
    /// unsealed tail of a log this is a torn tail; anywhere else it is corruption.
    Broken {
        /// Offset of the first byte that does not verify.
        offset: u64,
        /// What was found there.
        kind: Corruption,
        /// Intact data follows the break (the next record chains from the damaged one's
        /// stored checksum, or a valid seal lies further on): the segment was damaged in the
        /// middle, so this can never be a torn tail.
        data_after: bool,
    },
}

/// Streaming reader of one segment. See the module docs.
pub struct SegmentReader<R> {
    src: R,
    path: PathBuf,
    header: SegmentHeader,
    /// Offset of the next frame header in the uncompressed segment.
    offset: u64,
    /// Sequence number the next record must carry.
    next_seq: u64,
    /// Checksum of the last verified record (the header's `prev_crc` before the first).
    last_crc: u32,
    /// Records verified so far.
    count: u64,
    /// Version 2: the verified records' first and last time and the log's greatest time up
    /// to the last of them (from the header's `prev_max_time` on).
    times: TimeRange,
    /// Set when the records ended; `next_record` returns `None` from then on.
    end: Option<SegmentEnd>,
    /// Bytes consumed from the source (the position in the uncompressed segment).
    consumed: u64,
    /// (seq, stored checksum) of a record whose checksum did not verify, for the probe of
    /// what follows it.
    damaged: Option<(u64, u32)>,
    /// Started inside the segment from its sparse index, not at its header.
    resumed: bool,
}

impl<R: Read> SegmentReader<R> {
    /// Reads and checks the header. A file that is empty, too short, foreign, of another
    /// version or with a bad header checksum is an error naming `path` at offset 0.
    pub fn new(mut src: R, path: &Path) -> Result<Self> {
        let mut buf = [0u8; HEADER_LEN];
        let got = read_full(&mut src, &mut buf).map_err(|e| match e.kind() {
            ErrorKind::InvalidData => Error::corrupt(path, 0, Corruption::BadFrame(e.to_string())),
            _ => Error::io("read", path, e),
        })?;
        let header = if got == 0 {
            Err(Corruption::EmptyFile)
        } else {
            SegmentHeader::decode(&buf[..got])
        }
        .map_err(|kind| Error::corrupt(path, 0, kind))?;
        Ok(SegmentReader {
            src,
            path: path.to_path_buf(),
            header,
            offset: HEADER_LEN as u64,
            next_seq: header.first_seq,
            last_crc: header.prev_crc,
            count: 0,
            times: TimeRange {
                max: header.prev_max_time,
                ..TimeRange::default()
            },
            end: None,
            consumed: got as u64,
            damaged: None,
            resumed: false,
        })
    }

    /// A reader of the segment whose header is `header` from the record that `at` of its
    /// sparse index describes, `src` positioned there (docs/FORMAT.md, "Sparse index"). The
    /// first record must carry `at.seq` and chain from `at.prev_crc`, or the reader reports a
    /// break there: the caller then reads the segment from its header instead.
    pub(crate) fn resume(
        src: R,
        path: &Path,
        header: SegmentHeader,
        first_time: u64,
        at: &super::sparse_index::IndexEntry,
    ) -> Self {
        assert!(at.seq >= header.first_seq && at.offset >= HEADER_LEN as u64);
        SegmentReader {
            src,
            path: path.to_path_buf(),
            header,
            offset: at.offset,
            next_seq: at.seq,
            last_crc: at.prev_crc,
            count: at.seq - header.first_seq,
            times: TimeRange {
                first: first_time,
                last: at.prev_time,
                max: at.max_time,
            },
            end: None,
            consumed: at.offset,
            damaged: None,
            resumed: true,
        }
    }

    /// Whether this reader started inside the segment (see [`Self::resume`]).
    pub(crate) fn resumed(&self) -> bool {
        self.resumed
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records verified so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checksum of the last verified record.
    pub fn last_crc(&self) -> u32 {
        self.last_crc
    }

    /// Sequence number after the last verified record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Version 2: the time range of the records verified so far (first and last zero before
    /// the first record); `None` in version 1.
    pub fn times(&self) -> Option<TimeRange> {
        self.header.framing.timed().then_some(self.times)
    }

    /// How the records ended, once `next_record` has returned `None`.
    pub fn end(&self) -> Option<&SegmentEnd> {
        self.end.as_ref()
    }

    /// Reads the next record into `payload`. `Ok(None)` at the end of the records (see
    /// [`Self::end`] for how they ended); `Err` only for an I/O error of the source.
    pub fn next_record(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordInfo>> {
        if self.end.is_some() {
            return Ok(None);
        }
        match self.read_record(payload) {
            Ok(Step::Record(info)) => Ok(Some(info)),
            Ok(Step::End(end)) => {
                self.end = Some(end);
                Ok(None)
            }
            // A decoder's InvalidData is damage in the compressed file, not an I/O failure.
            Err(Failure::Io(e)) if e.kind() == ErrorKind::InvalidData => {
                self.end = Some(SegmentEnd::Broken {
                    offset: self.offset,
                    kind: Corruption::BadFrame(e.to_string()),
                    data_after: true,
                });
                Ok(None)
            }
            Err(Failure::Io(e)) => Err(Error::io("read", &self.path, e)),
            Err(Failure::Broken(offset, kind)) => {
                let data_after = match self.probe_after_break() {
                    Ok(found) => found,
                    // A damaged compressed stream after the break: certainly not a torn tail.
                    Err(e) if e.kind() == ErrorKind::InvalidData => true,
                    Err(e) => return Err(Error::io("read", &self.path, e)),
                };
                self.end = Some(SegmentEnd::Broken {
                    offset,
                    kind,
                    data_after,
                });
                Ok(None)
            }
        }
    }

    /// After the seal of a compressed segment: the stream must end there, and reading to its
    /// end makes the decoder check the frame's end mark, checksum and size.
    pub(crate) fn expect_end_of_stream(&mut self) -> Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match self.src.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(Error::corrupt(
                        &self.path,
                        self.consumed,
                        Corruption::BadFrame("content continues after the seal".into()),
                    ))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::InvalidData => {
                    return Err(Error::corrupt(
                        &self.path,
                        self.consumed,
                        Corruption::BadFrame(e.to_string()),
                    ))
                }
                Err(e) => return Err(Error::io("read", &self.path, e)),
            }
        }
    }

    /// Reads all remaining records, discarding payloads, and returns how they ended.
    pub fn skip_to_end(&mut self) -> Result<SegmentEnd> {
        let mut buf = Vec::new();
        while self.next_record(&mut buf)?.is_some() {}
        Ok(self
            .end
            .clone()
            .expect("end is set once next_record returns None"))
    }

    /// Reads from the source, counting what was consumed.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = read_full(&mut self.src, buf)?;
        self.consumed += got as u64;
        Ok(got)
    }

    /// After a break: does intact data follow? First, if a record failed its checksum, is
    /// the next frame a record (or seal) chained from that record's stored checksum? Then,
    /// is there a valid seal anywhere further on?
    fn probe_after_break(&mut self) -> std::io::Result<bool> {
        let framing = self.header.framing;
        let (hl, sl) = (framing.record_header_len(), framing.seal_len());
        if let Some((seq, stored)) = self.damaged.take() {
            let mut hb = [0u8; MAX_RECORD_HEADER_LEN];
            if self.fill(&mut hb[..hl])? == hl {
                let rh = RecordHeader::decode(&hb, framing);
                if rh.seq == seq + 1 && rh.check_len().is_ok() {
                    let padded = (rh.len as usize + ALIGN - 1) & !(ALIGN - 1);
                    let mut p = vec![0u8; padded];
                    let time = framing.timed().then_some(rh.time);
                    if self.fill(&mut p)? == padded
                        && record_crc(stored, rh.seq, time, &p[..rh.len as usize]) == rh.crc
                    {
                        return Ok(true);
                    }
                } else if rh.seq == SEAL_MARKER {
                    let mut sb = [0u8; MAX_SEAL_LEN];
                    sb[..hl].copy_from_slice(&hb[..hl]);
                    if self.fill(&mut sb[hl..sl])? == sl - hl
                        && Seal::decode(&sb, framing).is_ok_and(|s| s.last_crc == stored)
                    {
                        return Ok(true);
                    }
                }
            }
        }
        self.scan_for_seal()
    }

    /// Reads the rest of the segment looking for a valid seal at an 8-aligned offset whose
    /// end field points just past itself.
    fn scan_for_seal(&mut self) -> std::io::Result<bool> {
        const CHUNK: usize = 64 * 1024;
        let framing = self.header.framing;
        let seal_len = framing.seal_len();
        let mut buf = vec![0u8; CHUNK + seal_len];
        // Align the window start to 8 so that window offsets and file offsets agree mod 8.
        let skip = ((ALIGN as u64 - self.consumed % ALIGN as u64) % ALIGN as u64) as usize;
        if self.fill(&mut buf[..skip])? < skip {
            return Ok(false);
        }
        let mut base = self.consumed; // file offset of buf[0]
        let mut have = 0usize;
        loop {
            let got = self.fill(&mut buf[have..])?;
            have += got;
            let mut i = 0;
            while i + seal_len <= have {
                if buf[i..i + 8] == SEAL_MARKER.to_le_bytes() {
                    let sb = &buf[i..i + seal_len];
                    let end = base + (i + seal_len) as u64;
                    if Seal::decode(sb, framing).is_ok_and(|s| s.end == end) {
                        return Ok(true);
                    }
                }
                i += ALIGN;
            }
            if got == 0 {
                return Ok(false);
            }
            buf.copy_within(i..have, 0);
            base += i as u64;
            have -= i;
        }
    }

    fn read_record(&mut self, payload: &mut Vec<u8>) -> Result<Step, Failure> {
        let at = self.offset;
        let framing = self.header.framing;
        let hl = framing.record_header_len();
        let mut hb = [0u8; MAX_RECORD_HEADER_LEN];
        let got = self.fill(&mut hb[..hl]).map_err(Failure::Io)?;
        if got == 0 {
            // A file cut right after a record: an unsealed segment with no zero tail left.
            return Err(Failure::Broken(at, Corruption::Truncated));
        }
        if got < hl {
            return Err(Failure::Broken(at, Corruption::Truncated));
        }
        let rh = RecordHeader::decode(&hb, framing);
        if rh.seq == 0 {
            if rh.is_clean_end() {
                return Ok(Step::End(SegmentEnd::Open { offset: at }));
            }
            return Err(Failure::Broken(at, Corruption::PartialFrame));
        }
        if rh.seq == SEAL_MARKER {
            return self.read_seal(at, &hb[..hl]).map(Step::End);
        }
        if rh.seq != self.next_seq {
            let kind = Corruption::SequenceGap {
                expected: self.next_seq,
                found: rh.seq,
            };
            return Err(Failure::Broken(at, kind));
        }
        rh.check_len().map_err(|k| Failure::Broken(at, k))?;
        let len = rh.len as usize;
        let padded = (len + ALIGN - 1) & !(ALIGN - 1);
        let end = at + (hl + padded + framing.seal_len()) as u64;
        if end > self.header.capacity {
            return Err(Failure::Broken(
                at,
                Corruption::BadLength { len: len as u64 },
            ));
        }
        payload.resize(padded, 0);
        let got = read_full(&mut self.src, &mut payload[..padded]).map_err(Failure::Io)?;
        self.consumed += got as u64;
        if got < padded {
            return Err(Failure::Broken(at, Corruption::Truncated));
        }
        payload.truncate(len);
        let time = framing.timed().then_some(rh.time);
        let crc = record_crc(self.last_crc, rh.seq, time, payload);
        if crc != rh.crc {
            self.damaged = Some((rh.seq, rh.crc));
            return Err(Failure::Broken(
                at,
                Corruption::RecordChecksum { seq: rh.seq },
            ));
        }
        self.offset = at + (hl + padded) as u64;
        self.next_seq += 1;
        self.last_crc = crc;
        if self.count == 0 {
            self.times.first = rh.time;
        }
        self.times.last = rh.time;
        self.times.max = self.times.max.max(rh.time);
        self.count += 1;
        Ok(Step::Record(RecordInfo {
            seq: rh.seq,
            crc,
            offset: at,
            len: rh.len,
            time,
        }))
    }

    fn read_seal(&mut self, at: u64, first: &[u8]) -> Result<SegmentEnd, Failure> {
        let framing = self.header.framing;
        let seal_len = framing.seal_len();
        let mut sb = [0u8; MAX_SEAL_LEN];
        sb[..first.len()].copy_from_slice(first);
        let got = self
            .fill(&mut sb[first.len()..seal_len])
            .map_err(Failure::Io)?;
        if got < seal_len - first.len() {
            return Err(Failure::Broken(at, Corruption::Truncated));
        }
        let seal = Seal::decode(&sb, framing).map_err(|k| Failure::Broken(at, k))?;
        if seal.count != self.count {
            return Err(Failure::Broken(
                at,
                Corruption::BadSeal("record count disagrees"),
            ));
        }
        if seal.last_crc != self.last_crc {
            return Err(Failure::Broken(
                at,
                Corruption::BadSeal("last checksum disagrees"),
            ));
        }
        if seal.end != at + seal_len as u64 {
            return Err(Failure::Broken(
                at,
                Corruption::BadSeal("end offset disagrees"),
            ));
        }
        if seal.times.is_some() && seal.times != self.times() {
            return Err(Failure::Broken(
                at,
                Corruption::BadSeal("time range disagrees with the records"),
            ));
        }
        Ok(SegmentEnd::Sealed(seal))
    }
}

enum Step {
    Record(RecordInfo),
    End(SegmentEnd),
}

enum Failure {
    Io(std::io::Error),
    Broken(u64, Corruption),
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// True for a segment file that holds nothing: empty (created, never preallocated) or all
/// zeros (prepared ahead of the writer, never activated). A zero header with data after it
/// is not unused: pages written after a header page that never reached the disk.
pub(crate) fn is_unused_file(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut f, &mut head).map_err(|e| Error::io("read", path, e))?;
    Ok(
        got == 0
            || (got == HEADER_LEN && head.iter().all(|&b| b == 0) && data_after(path, 0)? == 0),
    )
}

/// Bytes from `offset` to the last non-zero byte of the segment's record region (0 when all
/// zero after it): the file, up to the capacity its header states when it has one (the
/// watermark page past it is not records, `super::watermark`). Only the file's data regions
/// are read (`SEEK_DATA`/`SEEK_HOLE`): a preallocated segment nobody wrote costs one `lseek`.
pub(crate) fn data_after(path: &Path, offset: u64) -> Result<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let end = super::format::capacity_of(path)?.unwrap_or(u64::MAX);
    if offset >= end {
        return Ok(0);
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let seek = |from: u64, whence: i32| -> Result<Option<u64>> {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let r = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None), // no data past `from`
            e => Err(Error::io("lseek", path, e)),
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut last_nonzero) = (offset, None);
    while let Some(data) = seek(pos, libc::SEEK_DATA)? {
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(u64::MAX).min(end);
        pos = data;
        while pos < hole {
            let want = buf.len().min((hole - pos).min(usize::MAX as u64) as usize);
            let n = f
                .read_at(&mut buf[..want], pos)
                .map_err(|e| Error::io("read", path, e))?;
            if n == 0 {
                return Ok(last_nonzero.map_or(0, |l: u64| l + 1 - offset));
            }
            if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
                last_nonzero = Some(pos + i as u64);
            }
            pos += n as u64;
        }
    }
    Ok(last_nonzero.map_or(0, |l| l + 1 - offset))
}
