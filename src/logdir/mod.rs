//! The log as a whole: a directory of segments read in index order as one chained stream
//! ([`LogReader`]), and the verification report `walctl verify` prints ([`verify`]).

pub(crate) mod cursor;
pub(crate) mod jump;
mod listing;
mod log_reader;
mod log_time;
mod mapped;
pub mod reader_position;
pub(crate) mod seek;
mod staged_view;
#[doc(hidden)] // the cold summaries' file format (docs/FORMAT.md); tests write it
pub mod summary;
mod tail;
mod tailer;
mod time_seek;
mod verify;

pub use cursor::{cursor_path, CURSOR_FILE};
pub(crate) use listing::highest_watermark;
pub use listing::{list_dir, DirListing, SegmentEntry, Tier};
pub use log_reader::{LogReader, Records, SourceOpener, Warning};
pub use log_time::{format_rfc3339, parse_log_time};
pub use mapped::{MappedRecords, MappedSegment};
pub use tail::{TailDrop, TailRule};
pub use tailer::{Idle, OnDivergence, Redelivery, StartAt, Tailer, Visibility};
#[cfg(feature = "archive")]
pub(crate) use verify::verify_reader;
pub use verify::{verify, VerifyReport};
