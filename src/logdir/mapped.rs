//! Zero-copy reading of sealed hot segments: the file is mapped read-only and each record's
//! payload is borrowed from the mapping, with the chain checked exactly as the reader checks
//! it (header checksum, each record's chained CRC32C from the header's `prev_crc`, sequence
//! numbers one apart, the seal's count and last checksum). Cold segments, and hot ones not
//! sealed yet, are read through [`super::LogReader`] (decoded or copied).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error, Result};
use crate::segment::format::{
    record_crc, RecordHeader, Seal, SegmentHeader, TimeRange, ALIGN, HEADER_LEN, SEAL_MARKER,
};
use crate::segment::{RecordInfo, SealedMap};

/// A sealed, persisted hot segment mapped for reading.
pub struct MappedSegment {
    map: SealedMap,
    header: SegmentHeader,
    seal: Seal,
    path: PathBuf,
}

impl MappedSegment {
    /// Maps `path` if it is a sealed, persisted hot segment; `Ok(None)` if it is not (still
    /// being written, or a file recovery will finish): read it with [`super::LogReader`]
    /// instead. Decided from a `pread` of the header and the seal before anything is mapped:
    /// the file must be shorter than the capacity its header states (persist truncates a
    /// segment only after its fdatasync, and never again, so its length is final) and end with
    /// a valid seal whose end is that length. A file that is still at its capacity may yet be
    /// truncated, and a mapping of it could fault past the new end (SIGBUS): never mapped.
    pub fn open(path: &Path) -> Result<Option<Self>> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        if len < HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        let mut tail = [0u8; crate::segment::format::MAX_SEAL_LEN];
        let read = |buf: &mut [u8], at: u64| match file.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::io("read", path, e)),
        };
        if !read(&mut head, 0)? {
            return Ok(None); // shrank since the stat: not final
        }
        let header = SegmentHeader::decode(&head).map_err(|kind| Error::corrupt(path, 0, kind))?;
        let seal_len = header.framing.seal_len();
        if len < (HEADER_LEN + seal_len) as u64 || len >= header.capacity {
            return Ok(None); // not truncated by persist yet: its length is not final
        }
        if !read(&mut tail[..seal_len], len - seal_len as u64)? {
            return Ok(None);
        }
        let Ok(seal) = Seal::decode(&tail, header.framing) else {
            return Ok(None);
        };
        if seal.end != len {
            return Ok(None);
        }
        // SAFETY: sealed and truncated below its capacity by persist, after its fdatasync:
        // its length is final and nothing writes it again (the maintainer only unlinks it).
        let map = unsafe { SealedMap::map(&file, len as usize, path)? };
        assert_eq!(map.as_slice().len() as u64, len, "mapped the whole file");
        Ok(Some(MappedSegment {
            map,
            header,
            seal,
            path: path.to_path_buf(),
        }))
    }

    /// The segment's header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Records in the segment (from its seal).
    pub fn count(&self) -> u64 {
        self.seal.count
    }

    /// The records, each payload borrowed from the mapping. A break in the chain ends the
    /// iteration with `Err` naming the file and the offset.
    pub fn records(&self) -> MappedRecords<'_> {
        MappedRecords {
            seg: self,
            at: HEADER_LEN,
            next_seq: self.header.first_seq,
            prev_crc: self.header.prev_crc,
            seen: 0,
            times: TimeRange {
                max: self.header.prev_max_time,
                ..TimeRange::default()
            },
            done: false,
        }
    }
}

/// Iterator over a [`MappedSegment`]'s records.
pub struct MappedRecords<'a> {
    seg: &'a MappedSegment,
    at: usize,
    next_seq: u64,
    prev_crc: u32,
    seen: u64,
    times: TimeRange,
    done: bool,
}

impl<'a> MappedRecords<'a> {
    fn broken(&mut self, kind: Corruption) -> Option<Result<(RecordInfo, &'a [u8])>> {
        self.done = true;
        Some(Err(Error::corrupt(&self.seg.path, self.at as u64, kind)))
    }
}

impl<'a> Iterator for MappedRecords<'a> {
    type Item = Result<(RecordInfo, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b: &'a [u8] = self.seg.map.as_slice();
        let framing = self.seg.header.framing;
        let (hl, seal_len) = (framing.record_header_len(), framing.seal_len());
        if b.len() - self.at < hl {
            return self.broken(Corruption::Truncated);
        }
        let rh = RecordHeader::decode(&b[self.at..self.at + hl], framing);
        if rh.seq == SEAL_MARKER {
            let seal = self.seg.seal;
            if self.at + seal_len != b.len() || seal.count != self.seen {
                return self.broken(Corruption::BadSeal("seal count or end disagrees"));
            }
            if seal.last_crc != self.prev_crc {
                return self.broken(Corruption::BadSeal("seal does not chain"));
            }
            if framing.timed() && seal.times != Some(self.times) {
                return self.broken(Corruption::BadSeal("time range disagrees with the records"));
            }
            self.done = true;
            return None;
        }
        if let Err(kind) = rh.check_len() {
            return self.broken(kind);
        }
        let start = self.at + hl;
        let padded = (rh.len as usize + ALIGN - 1) & !(ALIGN - 1);
        if b.len() - start < padded + seal_len {
            return self.broken(Corruption::Truncated);
        }
        let payload = &b[start..start + rh.len as usize];
        if rh.seq != self.next_seq {
            return self.broken(Corruption::SequenceGap {
                expected: self.next_seq,
                found: rh.seq,
            });
        }
        let time = framing.timed().then_some(rh.time);
        if record_crc(self.prev_crc, rh.seq, time, payload) != rh.crc {
            return self.broken(Corruption::RecordChecksum { seq: rh.seq });
        }
        if self.seen == 0 {
            self.times.first = rh.time;
        }
        self.times.last = rh.time;
        self.times.max = self.times.max.max(rh.time);
        let info = RecordInfo {
            seq: rh.seq,
            crc: rh.crc,
            offset: self.at as u64,
            len: rh.len,
            time,
        };
        self.at = start + padded;
        self.next_seq += 1;
        self.prev_crc = rh.crc;
        self.seen += 1;
        Some(Ok((info, payload)))
    }
}
