//! A tailer's view of a Staged recorder's staging buffers: records appear there the moment
//! the writer commits them, a drain interval (1 ms) before they reach the segment file. The
//! buffers are mapped read-only; a record is taken only when its sequence number (stored
//! last by the writer, with release ordering, loaded here with acquire) is the next one and
//! its chained checksum verifies, so a buffer being written, drained, zeroed or reused for
//! another segment never yields a wrong record: it yields nothing, and the tailer reads the
//! segment file instead (which holds everything drained from a buffer before its reuse).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::segment::format::{
    record_crc, RecordHeader, Seal, SegmentHeader, HEADER_LEN, MAX_RECORD_HEADER_LEN, MAX_SEAL_LEN,
    SEAL_MARKER,
};
use crate::segment::{ReadMap, RecordInfo};

/// How often the staging directory is listed again while no buffer holds the segment (a
/// recorder may start, or restart with new buffers).
const RESCAN: Duration = Duration::from_millis(50);

/// What the buffer holding a segment shows at an offset.
pub(crate) enum Staged {
    /// The next record (its payload copied out).
    Record(RecordInfo),
    /// The segment's seal.
    Sealed,
    /// The buffer holds this segment but nothing complete at the offset yet: the file holds
    /// nothing more either (it is a prefix of the buffer).
    NotYet,
}

pub(crate) struct StagedView {
    dir: PathBuf,
    maps: Vec<ReadMap>,
    /// (segment index, position in `maps`) of the buffer found last.
    found: Option<(u64, usize)>,
    rescan_at: Instant,
}

impl StagedView {
    /// The view of the staging directory `dir` (it may not exist yet).
    pub fn new(dir: PathBuf) -> Self {
        StagedView {
            dir,
            maps: Vec::new(),
            found: None,
            rescan_at: Instant::now(),
        }
    }

    fn scan(&mut self) {
        self.maps.clear();
        self.found = None;
        self.rescan_at = Instant::now() + RESCAN;
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("buf-") {
                continue;
            }
            let path = entry.path();
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = file.metadata().map_or(0, |m| m.len()) as usize;
            if len < HEADER_LEN + MAX_SEAL_LEN {
                continue;
            }
            // SAFETY: a staging buffer is created at its full size and never shrinks.
            if let Ok(map) = unsafe { ReadMap::map(&file, len, &path) } {
                self.maps.push(map);
            }
        }
    }

    fn header(map: &ReadMap) -> Option<SegmentHeader> {
        let mut head = [0u8; HEADER_LEN];
        map.copy_to(0, &mut head);
        SegmentHeader::decode(&head).ok()
    }

    /// The buffer holding segment `index` now, with its header.
    fn buffer(&mut self, index: u64) -> Option<(usize, SegmentHeader)> {
        if let Some((i, at)) = self.found {
            if i == index {
                if let Some(h) = Self::header(&self.maps[at]).filter(|h| h.index == index) {
                    return Some((at, h));
                }
            }
        }
        let mut hit = self.find(index);
        if hit.is_none() && Instant::now() >= self.rescan_at {
            self.scan();
            hit = self.find(index);
        }
        self.found = hit.map(|(at, _)| (index, at));
        hit
    }

    fn find(&self, index: u64) -> Option<(usize, SegmentHeader)> {
        self.maps.iter().enumerate().find_map(|(at, m)| {
            Self::header(m)
                .filter(|h| h.index == index)
                .map(|h| (at, h))
        })
    }

    /// The header of segment `index` if a buffer holds it (before the file has it).
    pub(crate) fn segment_header(&mut self, index: u64) -> Option<SegmentHeader> {
        self.buffer(index).map(|(_, h)| h)
    }

    /// What the buffer of segment `index` holds at `pos`, for a reader expecting the record
    /// `next_seq` chained from `prev_crc`; `None` if no buffer holds the segment (read the
    /// file).
    pub fn step(
        &mut self,
        index: u64,
        pos: u64,
        (next_seq, prev_crc): (u64, u32),
        payload: &mut Vec<u8>,
    ) -> Option<Staged> {
        let (at, header) = self.buffer(index)?;
        let framing = header.framing;
        let (hl, seal_len) = (framing.record_header_len(), framing.seal_len());
        let map = &self.maps[at];
        let pos = pos as usize;
        if pos + seal_len > map.len() {
            return Some(Staged::NotYet);
        }
        let seq = map.load_u64(pos);
        if seq == SEAL_MARKER {
            let mut sb = [0u8; MAX_SEAL_LEN];
            map.copy_to(pos, &mut sb[..seal_len]);
            return Some(match Seal::decode(&sb, framing) {
                Ok(s) if s.last_crc == prev_crc && s.end == (pos + seal_len) as u64 => {
                    Staged::Sealed
                }
                _ => Staged::NotYet,
            });
        }
        if seq != next_seq {
            return Some(Staged::NotYet);
        }
        let mut hb = [0u8; MAX_RECORD_HEADER_LEN];
        map.copy_to(pos, &mut hb[..hl]);
        let rh = RecordHeader::decode(&hb, framing);
        if rh.seq != next_seq || rh.check_len().is_err() {
            return Some(Staged::NotYet);
        }
        let len = rh.len as usize;
        if pos + framing.record_size(len) > map.len() {
            return Some(Staged::NotYet);
        }
        payload.resize(len, 0);
        map.copy_to(pos + hl, payload);
        let time = framing.timed().then_some(rh.time);
        if record_crc(prev_crc, rh.seq, time, payload) != rh.crc {
            return Some(Staged::NotYet);
        }
        // The buffer may have been reused while we copied: the record verified, so it is
        // this record whatever happened since.
        Some(Staged::Record(RecordInfo {
            seq: rh.seq,
            crc: rh.crc,
            offset: pos as u64,
            len: rh.len,
            time,
        }))
    }
}
