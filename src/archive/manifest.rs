//! The manifest object (`<prefix>/manifest.json`): one entry per archived segment with its
//! sequence range, size, checksum and (in a log with time) time range, so a reader finds the
//! segments covering a range of sequence numbers or of times without listing the bucket. Rewritten after each confirmed upload; a segment is deleted
//! locally only once the manifest that lists it is stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::logdir::format_rfc3339;
use crate::segment::format::TimeRange;
use crate::segment::names::cold_name;

/// `format` field of the manifest.
pub const MANIFEST_FORMAT: &str = "wal-recorder-manifest";
/// `version` field of the manifest.
pub const MANIFEST_VERSION: u64 = 1;

/// One archived segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Segment index (the object is `<prefix>/<index>.wal.lz4`).
    pub index: u64,
    /// First sequence number in the segment.
    pub first_seq: u64,
    /// Last sequence number in the segment (`first_seq - 1` if it holds no record).
    pub last_seq: u64,
    /// Size of the object in bytes.
    pub size: u64,
    /// CRC32C of the object's bytes.
    pub crc32c: u32,
    /// Its records' times (format version 2 with at least one record; the seal's): the
    /// first, the last and the running maximum of the log up to its last record.
    pub times: Option<TimeRange>,
}

impl ManifestEntry {
    /// The object's name under the prefix.
    pub fn name(&self) -> String {
        cold_name(self.index)
    }

    /// Records in the segment.
    pub fn records(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq)
    }

    /// The same object as `other` (times aside: a manifest written before they were kept
    /// lacks them).
    pub(crate) fn same_object(&self, other: &ManifestEntry) -> bool {
        (
            self.index,
            self.first_seq,
            self.last_seq,
            self.size,
            self.crc32c,
        ) == (
            other.index,
            other.first_seq,
            other.last_seq,
            other.size,
            other.crc32c,
        )
    }
}

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Entries by segment index.
    pub segments: BTreeMap<u64, ManifestEntry>,
}

impl Manifest {
    /// Adds or replaces an entry.
    pub fn insert(&mut self, e: ManifestEntry) {
        self.segments.insert(e.index, e);
    }

    /// The JSON text.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let segments: Vec<Value> = self
            .segments
            .values()
            .map(|e| {
                let mut v = json!({
                    "name": e.name(),
                    "index": e.index,
                    "first_seq": e.first_seq,
                    "last_seq": e.last_seq,
                    "size": e.size,
                    "crc32c": format!("{:08x}", e.crc32c),
                });
                if let Some(t) = e.times {
                    v["first_time_ns"] = json!(t.first);
                    v["last_time_ns"] = json!(t.last);
                    v["max_time_ns"] = json!(t.max);
                }
                v
            })
            .collect();
        let v = json!({
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "segments": segments,
        });
        serde_json::to_vec_pretty(&v).expect("a JSON value serializes")
    }

    /// Parses the JSON text of the object `target` (named in errors).
    pub(crate) fn from_json(bytes: &[u8], target: &str) -> Result<Self> {
        let bad = |why: String| Error::Archive {
            target: target.to_string(),
            op: "read manifest",
            message: why,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if v["format"] != MANIFEST_FORMAT {
            return Err(bad("not a wal-recorder manifest".into()));
        }
        if v["version"] != MANIFEST_VERSION {
            return Err(bad(format!("unsupported version {}", v["version"])));
        }
        let list = v["segments"]
            .as_array()
            .ok_or_else(|| bad("no segments array".into()))?;
        let mut m = Manifest::default();
        for (i, s) in list.iter().enumerate() {
            let num = |k: &str| {
                s[k].as_u64()
                    .ok_or_else(|| bad(format!("segment entry {i}: no {k}")))
            };
            let crc = s["crc32c"]
                .as_str()
                .and_then(|c| u32::from_str_radix(c, 16).ok())
                .ok_or_else(|| bad(format!("segment entry {i}: no crc32c")))?;
            let times = match s.get("first_time_ns") {
                None => None,
                Some(_) => Some(TimeRange {
                    first: num("first_time_ns")?,
                    last: num("last_time_ns")?,
                    max: num("max_time_ns")?,
                }),
            };
            m.insert(ManifestEntry {
                index: num("index")?,
                first_seq: num("first_seq")?,
                last_seq: num("last_seq")?,
                size: num("size")?,
                crc32c: crc,
                times,
            });
        }
        Ok(m)
    }

    /// The entries holding any record of `from..=to`, in order, including the segments
    /// between them. Errors if the manifest has a gap inside that run.
    pub fn covering(&self, from: u64, to: u64, target: &str) -> Result<Vec<ManifestEntry>> {
        let run: Vec<ManifestEntry> = self
            .segments
            .values()
            .filter(|e| e.records() > 0 && e.last_seq >= from && e.first_seq <= to)
            .copied()
            .collect();
        for w in run.windows(2) {
            if w[1].index != w[0].index + 1 || w[1].first_seq != w[0].last_seq + 1 {
                return Err(Error::Archive {
                    target: target.to_string(),
                    op: "read manifest",
                    message: format!(
                        "segments {} and {} do not follow each other: the archive has a gap",
                        w[0].index, w[1].index
                    ),
                });
            }
        }
        Ok(run)
    }

    /// The entries holding the records that `walctl cat --since since --until until` reads:
    /// from the first segment whose running max time is at or after `since` (the first record
    /// at or after it is there, as a seek by time finds it) up to, not including, the first
    /// later segment whose first record is after `until` (reading stops there at the latest).
    /// `since` `None`: from the first archived record. A time before the first archived
    /// record or after every time, or an archive without time ranges, is an error naming
    /// what it holds.
    pub fn covering_time(
        &self,
        since: Option<u64>,
        until: u64,
        target: &str,
    ) -> Result<Vec<ManifestEntry>> {
        let with: Vec<&ManifestEntry> =
            self.segments.values().filter(|e| e.records() > 0).collect();
        let bad = |message: String| Error::NotArchived {
            target: target.to_string(),
            message,
        };
        let timed: Vec<TimeRange> = with.iter().filter_map(|e| e.times).collect();
        let (Some(first), Some(last)) = (timed.first(), timed.last()) else {
            return Err(bad(
                "the manifest has no time ranges (a log without time, or archived by an \
                 older version): restore by sequence number (--from/--to)"
                    .into(),
            ));
        };
        let held = format!(
            "the archive holds {} ..= {}",
            format_rfc3339(first.first),
            format_rfc3339(last.max)
        );
        let max = |e: &ManifestEntry| e.times.map_or(0, |t| t.max);
        let Some(since) = since else {
            return self.covering_until(&with, 0, until, target);
        };
        let Some(start) = with.iter().position(|e| max(e) >= since) else {
            return Err(bad(format!(
                "no archived record at or after {}; {held}",
                format_rfc3339(since)
            )));
        };
        if start == 0 || with[..start].iter().all(|e| e.times.is_none()) {
            // The first record with time: a time before it is before the archive.
            let first_timed = with[start..].iter().find_map(|e| e.times).map(|t| t.first);
            if first_timed.is_some_and(|f| f > since) {
                return Err(bad(format!(
                    "{} is before the first archived record; {held}",
                    format_rfc3339(since)
                )));
            }
        }
        self.covering_until(&with, start, until, target)
    }

    /// The entries from `with[start]` up to, not including, the first later one whose first
    /// record is after `until`.
    fn covering_until(
        &self,
        with: &[&ManifestEntry],
        start: usize,
        until: u64,
        target: &str,
    ) -> Result<Vec<ManifestEntry>> {
        let end = with[start + 1..]
            .iter()
            .position(|e| e.times.is_some_and(|t| t.first > until))
            .map_or(with.len(), |p| start + 1 + p);
        self.covering(with[start].first_seq, with[end - 1].last_seq, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, first: u64, last: u64) -> ManifestEntry {
        ManifestEntry {
            index,
            first_seq: first,
            last_seq: last,
            size: 100 + index,
            crc32c: 0xdead_0000 | index as u32,
            times: None,
        }
    }

    fn timed(index: u64, first: u64, last: u64, max: u64) -> ManifestEntry {
        let mut e = entry(index, index * 10 + 1, index * 10 + 10);
        e.times = Some(TimeRange { first, last, max });
        e
    }

    #[test]
    fn covering_time_selects_from_the_running_max_to_the_first_segment_after_until() {
        let mut m = Manifest::default();
        m.insert(timed(0, 100, 200, 200));
        m.insert(timed(1, 210, 190, 250)); // its clock stepped back
        m.insert(timed(2, 260, 300, 300));
        m.insert(timed(3, 310, 400, 400));
        let back = Manifest::from_json(&m.to_json(), "t").unwrap();
        assert_eq!(back, m);
        let ids = |v: Vec<ManifestEntry>| v.iter().map(|e| e.index).collect::<Vec<_>>();
        let at = |s, u| ids(m.covering_time(Some(s), u, "t").unwrap());
        assert_eq!(at(100, 100), vec![0]);
        assert_eq!(at(150, 205), vec![0]);
        assert_eq!(at(150, 210), vec![0, 1]);
        assert_eq!(at(201, 259), vec![1]); // the max of 1 reaches 250
        assert_eq!(at(251, 305), vec![2]);
        assert_eq!(at(251, 310), vec![2, 3]);
        assert_eq!(at(400, u64::MAX), vec![3]);
        let until = |u| ids(m.covering_time(None, u, "t").unwrap());
        assert_eq!(until(10), vec![0]); // reading stops at the first record
        assert_eq!(until(260), vec![0, 1, 2]);
        for (s, u) in [(99, 200), (401, 500)] {
            let e = m.covering_time(Some(s), u, "t").unwrap_err().to_string();
            assert!(e.contains("the archive holds"), "{e}");
        }
        let mut plain = Manifest::default();
        plain.insert(entry(0, 1, 10));
        assert!(plain.covering_time(Some(0), 1, "t").is_err());
    }

    #[test]
    fn json_round_trips_and_covering_selects_the_range() {
        let mut m = Manifest::default();
        m.insert(entry(0, 1, 10));
        m.insert(entry(1, 11, 20));
        m.insert(entry(2, 21, 30));
        let back = Manifest::from_json(&m.to_json(), "t").unwrap();
        assert_eq!(back, m);
        let ids = |v: Vec<ManifestEntry>| v.iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(ids(m.covering(12, 21, "t").unwrap()), vec![1, 2]);
        assert_eq!(ids(m.covering(0, u64::MAX, "t").unwrap()), vec![0, 1, 2]);
        assert!(m.covering(31, 40, "t").unwrap().is_empty());
        m.segments.remove(&1);
        assert!(m.covering(1, 30, "t").is_err());
    }

    #[test]
    fn foreign_json_is_a_typed_error() {
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"format":"wal-recorder-manifest","version":9}"#,
        ] {
            let e = Manifest::from_json(bad, "s3://b/manifest.json").unwrap_err();
            assert!(e.to_string().contains("s3://b/manifest.json"), "{e}");
        }
    }
}
