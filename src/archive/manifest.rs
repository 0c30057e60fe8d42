//! The manifest object (`<prefix>/manifest.json`): one entry per archived segment with its
//! sequence range, size and checksum, so a reader finds the segments covering a range
//! without listing the bucket. Rewritten after each confirmed upload; a segment is deleted
//! locally only once the manifest that lists it is stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{Error, Result};
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
                json!({
                    "name": e.name(),
                    "index": e.index,
                    "first_seq": e.first_seq,
                    "last_seq": e.last_seq,
                    "size": e.size,
                    "crc32c": format!("{:08x}", e.crc32c),
                })
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
            m.insert(ManifestEntry {
                index: num("index")?,
                first_seq: num("first_seq")?,
                last_seq: num("last_seq")?,
                size: num("size")?,
                crc32c: crc,
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
        }
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
