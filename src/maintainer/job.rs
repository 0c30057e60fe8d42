//! What every maintainer job shares: the context it runs in and the `user_data` encoding
//! that routes a completion back to its job (slot in the high half, step tag in the low).

use std::os::fd::RawFd;
use std::path::Path;

use crate::config::Config;
use crate::io::IoBackend;
use crate::telemetry::LocalHists;

/// What a job may use while it runs on the maintainer thread.
pub(crate) struct Ctx<'a> {
    pub be: &'a mut dyn IoBackend,
    pub dirfd: RawFd,
    pub dir: &'a Path,
    pub config: &'a Config,
    pub hists: &'a mut LocalHists,
    /// `cold.summary`, where a freeze appends its segment's summary (none if it could not
    /// be opened: open then decodes that segment).
    pub summaries: Option<&'a mut super::summary_log::SummaryLog>,
    /// Where a freeze's chunks are compressed.
    pub compress: &'a mut super::compressor::Compressors,
}

/// `user_data` of step `tag` of the job in `slot`.
pub(crate) fn ud(slot: u32, tag: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(tag)
}

/// (slot, tag) of a `user_data`.
pub(crate) fn split_ud(user_data: u64) -> (u32, u32) {
    ((user_data >> 32) as u32, user_data as u32)
}
