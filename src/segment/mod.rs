//! One segment file: its byte layout ([`format`](mod@format)), its names ([`names`]), the writer that
//! fills it without system calls ([`writer`]) and the streaming reader that checks it
//! ([`reader`]).

#[allow(missing_docs)] // offsets and encoders, documented by the byte map
pub mod format;
mod in_place;
mod mmap;
pub mod names;
pub mod reader;
pub mod sparse_index;
pub mod watermark;
pub mod writer;

pub(crate) use crate::io::sync_dir;
pub use in_place::{seal_in_place, truncate_sealed};
pub(crate) use in_place::{seal_in_place_with, truncate_sealed_with};
pub(crate) use mmap::populate_write;
pub(crate) use mmap::{ReadMap, SealedMap, SharedMap};
pub use reader::{RecordInfo, SegmentEnd, SegmentReader};
pub use writer::{
    create_segment_file, AppendError, ChainPoint, PreparedSegment, SealedSegment, SegmentWriter,
};
