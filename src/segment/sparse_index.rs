//! The sparse index of a cold segment, `index/<index>.idx` beside the log (docs/FORMAT.md,
//! "Sparse index"): for each 64 KiB of the segment's content, the first record that starts in
//! it, with what a reader needs to start there instead of at the segment's header (its
//! offset, the compressed block holding it, its sequence number, the chained checksum before
//! it, the time of the record before it and the log's running maximum time). A seek decodes
//! one block and scans at most one interval instead of the whole segment.
//!
//! The freeze builds it from the bytes it compresses and writes it after the cold file is
//! durable. It is a cache: never trusted over the records (the first record read from an
//! entry must verify against the entry's checksum, or the reader starts over from the
//! segment's header), not synced, checked by its own CRC32C and by the cold file's size. A
//! segment without a usable index is read from its start, as before the index existed.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{RecordHeader, SegmentHeader, HEADER_LEN, MAX_RECORD_HEADER_LEN, SEAL_MARKER};

/// Content bytes per index interval.
pub const INTERVAL: u64 = 64 * 1024;
/// The directory of the index files, inside the log directory.
pub const INDEX_DIR: &str = "index";
const MAGIC: [u8; 8] = *b"WALRIDX\x01";
/// magic, segment header, first time, file len, content, 8 reserved, count, 4 reserved.
const FILE_HEADER: usize = 8 + HEADER_LEN + 8 + 8 + 8 + 8 + 4 + 4;
const ENTRY_LEN: usize = 56;
/// Entries beyond this are refused on load (a 4 GiB segment has 65 536).
const MAX_ENTRIES: usize = 1 << 20;

/// One place a reader can start at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Compressed offset of the block holding the record's first byte.
    pub block: u64,
    /// Content offset where that block starts.
    pub block_start: u64,
    /// Content offset of the record's frame header.
    pub offset: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// The chained checksum of the record before it (the header's `prev_crc` for the first).
    pub prev_crc: u32,
    /// The time of the record before it in this segment (0: it is the first).
    pub prev_time: u64,
    /// The log's greatest record time before it.
    pub max_time: u64,
}

/// What the indexed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A cold segment: its blocks are compressed (entries name the block to decode from).
    Compressed,
    /// A hot segment, as it is (an entry's block is the record itself).
    Plain,
}

/// A segment's sparse index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseIndex {
    /// The segment's header.
    pub header: SegmentHeader,
    /// Which file it indexes: the `.wal.lz4` or the persisted `.wal`.
    pub content: Content,
    /// The time of the segment's first record (0: none, or records without time).
    pub first_time: u64,
    /// The size of the file it was built for (the index of a file replaced since, of another
    /// size, is not used; one of the same size is checked by the records).
    pub cold_len: u64,
    /// In content order.
    pub entries: Vec<IndexEntry>,
}

impl SparseIndex {
    /// The entry to start at for the first record with sequence number `seq` or more: the
    /// last one at or before it.
    pub fn for_seq(&self, seq: u64) -> Option<&IndexEntry> {
        let n = self.entries.partition_point(|e| e.seq <= seq);
        n.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The entry to start at for the first record whose time is `t` or later: the last one
    /// before which every record of the log is earlier than `t`.
    pub fn for_time(&self, t: u64) -> Option<&IndexEntry> {
        let n = self.entries.partition_point(|e| e.max_time < t);
        n.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FILE_HEADER + self.entries.len() * ENTRY_LEN + 8);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.header.encode());
        let plain = u64::from(self.content == Content::Plain);
        for v in [self.first_time, self.cold_len, plain, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 4]);
        for e in &self.entries {
            for v in [
                e.block,
                e.block_start,
                e.offset,
                e.seq,
                e.prev_time,
                e.max_time,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&e.prev_crc.to_le_bytes());
            b.extend_from_slice(&[0u8; 4]);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&[0u8; 4]);
        b
    }

    /// Decodes a file's bytes; `None` for anything that is not an intact index.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < FILE_HEADER + 8 || b[..8] != MAGIC {
            return None;
        }
        let body = b.len() - 8;
        if crc32c::crc32c(&b[..body]) != u32::from_le_bytes(b[body..body + 4].try_into().ok()?) {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let header = SegmentHeader::decode(&b[8..8 + HEADER_LEN]).ok()?;
        let at = 8 + HEADER_LEN;
        let count = u32::from_le_bytes(b[at + 32..at + 36].try_into().ok()?) as usize;
        if count > MAX_ENTRIES || FILE_HEADER + count * ENTRY_LEN != body {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let e = FILE_HEADER + i * ENTRY_LEN;
            entries.push(IndexEntry {
                block: u64_at(e),
                block_start: u64_at(e + 8),
                offset: u64_at(e + 16),
                seq: u64_at(e + 24),
                prev_time: u64_at(e + 32),
                max_time: u64_at(e + 40),
                prev_crc: u32::from_le_bytes(b[e + 48..e + 52].try_into().ok()?),
            });
        }
        // What a reader relies on: entries in content order, each inside its block.
        let ordered = entries.windows(2).all(|w| {
            w[0].offset < w[1].offset && w[0].seq < w[1].seq && w[0].max_time <= w[1].max_time
        });
        let inside = entries
            .iter()
            .all(|e| e.block_start <= e.offset && e.seq >= header.first_seq);
        let content = match u64_at(at + 16) {
            0 => Content::Compressed,
            1 => Content::Plain,
            _ => return None,
        };
        (ordered && inside).then_some(SparseIndex {
            header,
            content,
            first_time: u64_at(at),
            cold_len: u64_at(at + 8),
            entries,
        })
    }
}

/// Where the index of segment `index` of `dir` lives.
pub fn index_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(INDEX_DIR).join(format!("{index}.idx"))
}

/// Writes the index of segment `index` (a temporary file renamed over the old one; not
/// synced: a lost or torn index is only a slower seek).
pub fn write_index(dir: &Path, index: u64, idx: &SparseIndex) -> std::io::Result<()> {
    let sub = dir.join(INDEX_DIR);
    match std::fs::create_dir(&sub) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let path = index_path(dir, index);
    let tmp = path.with_extension("idx.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&idx.encode())?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

/// The index of segment `index` of `dir` if there is an intact one; `None` otherwise (any
/// read error included: the reader then starts at the segment's header).
pub fn read_index(dir: &Path, index: u64) -> Option<SparseIndex> {
    let idx = SparseIndex::decode(&std::fs::read(index_path(dir, index)).ok()?)?;
    (idx.header.index == index).then_some(idx)
}

/// Builds the entries from a segment's bytes fed in order, reading only record headers (no
/// checksum: the index is checked by whoever uses it). Stops at the seal, a clean end, or
/// anything that is not a record.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    /// Content bytes fed so far.
    fed: u64,
    /// Bytes of a header cut by the end of a piece, from `next` on.
    carry: Vec<u8>,
    header: Option<SegmentHeader>,
    /// Offset of the next record's frame header.
    next: u64,
    next_seq: u64,
    /// The next interval whose first record is wanted.
    interval_end: u64,
    prev_crc: u32,
    prev_time: u64,
    max_time: u64,
    first_time: u64,
    entries: Vec<IndexEntry>,
    done: bool,
    /// Stopped at the seal: the segment's records are all walked.
    sealed: bool,
}

impl IndexBuilder {
    /// A builder for a segment's bytes from offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the segment.
    pub fn feed(&mut self, piece: &[u8]) {
        let base = self.fed;
        self.fed += piece.len() as u64;
        if self.done {
            return;
        }
        let Some(header) = self.header.or_else(|| self.take_header(base, piece)) else {
            return;
        };
        let framing = header.framing;
        let hl = framing.record_header_len();
        while !self.done && self.next < self.fed {
            let mut hb = [0u8; MAX_RECORD_HEADER_LEN];
            if !self.gather(base, piece, &mut hb[..hl]) {
                return; // the header goes on in the next piece
            }
            let rh = RecordHeader::decode(&hb, framing);
            if rh.seq == 0 || rh.seq == SEAL_MARKER || rh.seq != self.next_seq {
                self.sealed = rh.seq == SEAL_MARKER;
                self.done = true;
                return;
            }
            if rh.check_len().is_err() {
                self.done = true;
                return;
            }
            if self.next >= self.interval_end {
                self.entries.push(IndexEntry {
                    block: 0,
                    block_start: 0,
                    offset: self.next,
                    seq: rh.seq,
                    prev_crc: self.prev_crc,
                    prev_time: self.prev_time,
                    max_time: self.max_time,
                });
                self.interval_end = (self.next / INTERVAL + 1) * INTERVAL;
            }
            if framing.timed() {
                if rh.seq == header.first_seq {
                    self.first_time = rh.time;
                }
                self.prev_time = rh.time;
                self.max_time = self.max_time.max(rh.time);
            }
            self.prev_crc = rh.crc;
            self.next_seq += 1;
            self.next += framing.record_size(rh.len as usize) as u64;
        }
    }

    /// Where the next byte fed must come from: after a stop short of the seal (the end of what
    /// an active segment holds so far), [`Self::continue_from_stop`] moves it back to the
    /// record it stopped at.
    pub(crate) fn position(&self) -> u64 {
        self.fed
    }

    /// Stopped at something that is not a record (a zero header: the end of the records
    /// written so far), not at the seal.
    pub(crate) fn stopped(&self) -> bool {
        self.done && !self.sealed
    }

    /// Offset of the record the walk is at (where it stopped, after a stop).
    pub(crate) fn record_offset(&self) -> u64 {
        self.next
    }

    /// Stopped at the seal.
    pub(crate) fn sealed(&self) -> bool {
        self.sealed
    }

    /// After a stop short of the seal: feed again from the record it stopped at (an active
    /// segment's next records, once they are there).
    pub(crate) fn continue_from_stop(&mut self) {
        assert!(self.stopped(), "only after a stop short of the seal");
        self.carry.clear();
        match self.header {
            Some(_) => self.fed = self.next,
            None => self.fed = 0,
        }
        self.done = false;
    }

    /// Walks again from the last entry (dropping it: it is found again), or from the start:
    /// for a walk stuck on a header it read while it was being written.
    pub(crate) fn rewind_to_last_entry(&mut self) {
        match (self.header, self.entries.pop()) {
            (Some(_), Some(e)) => {
                (self.next, self.next_seq, self.prev_crc) = (e.offset, e.seq, e.prev_crc);
                (self.prev_time, self.max_time) = (e.prev_time, e.max_time);
                self.interval_end = e.offset; // the entry is found again there
                self.carry.clear();
                self.fed = e.offset;
                self.done = false;
                self.sealed = false;
            }
            _ => *self = Self::new(),
        }
    }

    /// Entries found so far.
    pub(crate) fn entries(&self) -> usize {
        self.entries.len()
    }

    /// The index of what was walked so far of a hot segment file of `len` bytes (an active
    /// segment: its later records are read from the last entry on).
    pub(crate) fn snapshot_plain(&self, len: u64) -> Option<SparseIndex> {
        let walked = IndexBuilder {
            header: self.header,
            first_time: self.first_time,
            entries: self.entries.clone(),
            ..Self::default()
        };
        walked.finish_plain(len)
    }

    /// Takes the segment header from the first bytes.
    fn take_header(&mut self, base: u64, piece: &[u8]) -> Option<SegmentHeader> {
        let mut hb = [0u8; HEADER_LEN];
        if !self.gather(base, piece, &mut hb) {
            return None;
        }
        match SegmentHeader::decode(&hb) {
            Ok(h) => {
                self.header = Some(h);
                self.next = HEADER_LEN as u64;
                self.next_seq = h.first_seq;
                self.prev_crc = h.prev_crc;
                self.max_time = h.prev_max_time;
                self.interval_end = INTERVAL;
                Some(h)
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }

    /// Fills `out` with the bytes at `self.next` (carried over from earlier pieces and taken
    /// from `piece`, which starts at `base`); false, keeping them, when they go on past it.
    fn gather(&mut self, base: u64, piece: &[u8], out: &mut [u8]) -> bool {
        let end = base + piece.len() as u64;
        let from = self.next + self.carry.len() as u64; // next byte wanted
        if from < base {
            self.done = true; // a gap in what was fed: never happens, but do not guess
            return false;
        }
        let want = out.len() - self.carry.len();
        let at = (from - base) as usize;
        if from + want as u64 > end {
            self.carry.extend_from_slice(&piece[at.min(piece.len())..]);
            return false;
        }
        out[..self.carry.len()].copy_from_slice(&self.carry);
        out[self.carry.len()..].copy_from_slice(&piece[at..at + want]);
        self.carry.clear();
        true
    }

    /// The index of the cold file `cold` whose blocks start at `blocks` ((content offset,
    /// compressed offset) in order, the first at 0); `None` when the bytes fed did not start
    /// with a segment header or no block map is known.
    pub fn finish(self, blocks: &[(u64, u64)], cold_len: u64) -> Option<SparseIndex> {
        let header = self.header?;
        if blocks.first().map(|b| b.0) != Some(0) {
            return None;
        }
        let mut entries = self.entries;
        for e in &mut entries {
            let at = blocks.partition_point(|b| b.0 <= e.offset) - 1;
            (e.block_start, e.block) = blocks[at];
        }
        Some(SparseIndex {
            header,
            content: Content::Compressed,
            first_time: self.first_time,
            cold_len,
            entries,
        })
    }

    /// The index of a hot segment file of `len` bytes, its content as it is: each entry's
    /// block is the record itself.
    pub fn finish_plain(self, len: u64) -> Option<SparseIndex> {
        let mut idx = self.finish(&[(0, 0)], len)?;
        for e in &mut idx.entries {
            (e.block_start, e.block) = (e.offset, e.offset);
        }
        idx.content = Content::Plain;
        Some(idx)
    }
}

/// Builds and writes the sparse index of the persisted hot segment `index` of `dir` (sealed
/// and truncated: nothing is written to it any more), reading its record headers. `Ok(false)`
/// when there is nothing to index: no such file, or one whose index is already there for the
/// file (the hot one, or the cold one a freeze made since, which must not be replaced).
pub fn index_hot(dir: &Path, index: u64) -> std::io::Result<bool> {
    use std::io::Read;
    let path = dir.join(super::names::hot_name(index));
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    let header = match std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0) {
        Ok(()) => SegmentHeader::decode(&head).ok(),
        Err(_) => None,
    };
    // Already indexed: this very file (same size and header: not another segment
    // written under the same index after a repair), or the cold file a freeze made since.
    let done = |i: &SparseIndex| {
        i.content == Content::Compressed || (i.cold_len == len && Some(i.header) == header)
    };
    if read_index(dir, index).is_some_and(|i| done(&i)) {
        return Ok(false);
    }
    let mut builder = IndexBuilder::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        builder.feed(&buf[..n]);
    }
    let Some(idx) = builder.finish_plain(len) else {
        return Ok(false);
    };
    let frozen = || read_index(dir, index).is_some_and(|i| i.content == Content::Compressed);
    if idx.header.index != index || frozen() || !path.exists() {
        return Ok(false); // frozen meanwhile: the freeze indexes the cold file
    }
    write_index(dir, index, &idx)?;
    if !path.exists() && !frozen() {
        // Frozen and deleted while this was written: leave no index of a deleted segment.
        let _ = std::fs::remove_file(index_path(dir, index));
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::format::Framing;
    use crate::segment::{ChainPoint, SegmentWriter};

    /// A sealed segment of `n` records of varied lengths, with time stepping back now and then.
    fn segment(dir: &Path, n: u64) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut w =
            SegmentWriter::create_framed(dir, 3, 4 << 20, Framing::Timed, ChainPoint::START)
                .unwrap();
        let mut times = Vec::new();
        for s in 0..n {
            let t = 1_000_000 + s * 10 - if s % 97 == 0 { 5_000 } else { 0 };
            let len = 10 + (s as usize * 37) % 700;
            w.append_with_at(t, len, |b| b.fill(s as u8)).unwrap();
            times.push((s + 1, t));
        }
        w.seal();
        let used = w.used_len() as usize;
        drop(w);
        let bytes =
            std::fs::read(dir.join(crate::segment::names::hot_name(3))).unwrap()[..used].to_vec();
        (bytes, times)
    }

    #[test]
    fn entries_are_the_first_record_of_each_interval_whatever_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, times) = segment(dir.path(), 9_000);
        // Where each record starts, read with the checking reader.
        let mut r = crate::segment::SegmentReader::new(&bytes[..], Path::new("3.wal")).unwrap();
        let mut starts = Vec::new();
        let mut buf = Vec::new();
        while let Some(i) = r.next_record(&mut buf).unwrap() {
            starts.push(i);
        }
        let blocks: Vec<(u64, u64)> = (0..bytes.len() as u64 / INTERVAL + 1)
            .map(|k| (k * INTERVAL, 1000 + k))
            .collect();
        let mut reference = None;
        for piece in [1usize, 7, 24, 4096, 65_536, 1 << 20] {
            let mut b = IndexBuilder::new();
            for p in bytes.chunks(piece) {
                b.feed(p);
            }
            let idx = b.finish(&blocks, 0).unwrap();
            match &reference {
                None => reference = Some(idx),
                Some(r) => assert_eq!(&idx, r, "pieces of {piece}"),
            }
        }
        let idx = reference.unwrap();
        assert_eq!(idx.first_time, times[0].1);
        assert_eq!(
            idx.entries.len() as u64,
            (bytes.len() as u64 - 1) / INTERVAL
        );
        for e in &idx.entries {
            let k = starts.iter().position(|i| i.offset == e.offset).unwrap();
            assert!(starts[k].offset >= e.offset / INTERVAL * INTERVAL);
            assert!(k == 0 || starts[k - 1].offset < e.offset / INTERVAL * INTERVAL);
            assert_eq!(e.seq, starts[k].seq);
            assert_eq!(e.prev_crc, starts[k - 1].crc);
            assert_eq!(e.prev_time, starts[k - 1].time.unwrap());
            let max = times[..k].iter().map(|t| t.1).max().unwrap();
            assert_eq!(e.max_time, max);
            assert_eq!(
                (e.block_start, e.block),
                (e.offset / INTERVAL * INTERVAL, 1000 + e.offset / INTERVAL)
            );
        }
        assert_eq!(SparseIndex::decode(&idx.encode()), Some(idx.clone()));
        // Lookups: the last entry at or before.
        let third = idx.entries[2];
        assert_eq!(idx.for_seq(third.seq).unwrap().seq, third.seq);
        assert_eq!(idx.for_seq(third.seq - 1).unwrap().seq, idx.entries[1].seq);
        assert!(idx.for_seq(1).is_none());
        assert!(idx.for_time(0).is_none());
        assert_eq!(idx.for_time(u64::MAX).unwrap(), idx.entries.last().unwrap());
    }

    #[test]
    fn a_damaged_index_file_is_not_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _) = segment(dir.path(), 2_000);
        let mut b = IndexBuilder::new();
        b.feed(&bytes);
        let idx = b.finish(&[(0, 15)], 0).unwrap();
        let good = idx.encode();
        for at in [0, 9, 80, good.len() / 2, good.len() - 6] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert_eq!(SparseIndex::decode(&bad), None, "flip at {at}");
        }
        assert_eq!(SparseIndex::decode(&good[..good.len() - 1]), None);
        write_index(dir.path(), 3, &idx).unwrap();
        assert_eq!(read_index(dir.path(), 3), Some(idx));
        assert_eq!(read_index(dir.path(), 4), None);
    }
}
