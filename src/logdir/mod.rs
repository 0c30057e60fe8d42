//! The log as a whole: a directory of segments read in index order as one chained stream
//! ([`LogReader`]), and the verification report `walctl verify` prints ([`verify`]).

pub(crate) mod cursor;
mod listing;
mod log_reader;
mod mapped;
pub mod reader_position;
pub mod seek;
mod staged_view;
pub mod summary;
mod tail;
mod tailer;
mod verify;

pub use crate::segment::reader::data_after;
pub use cursor::{cursor_path, CURSOR_FILE};
pub use listing::{list_dir, DirListing, SegmentEntry, Tier};
pub use log_reader::{LogReader, Records, SourceOpener, Warning};
pub use mapped::{MappedRecords, MappedSegment};
pub use tail::{TailDrop, TailRule};
pub use tailer::{Idle, OnDivergence, Redelivery, StartAt, Tailer, Visibility};
pub use verify::{verify, verify_reader, VerifyReport};
