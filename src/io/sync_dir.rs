//! Directory fsync: what makes a file's creation, rename or removal durable.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// fsyncs a directory so that a file created, renamed or removed in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open dir", dir, e))?;
    d.sync_all().map_err(|e| Error::io("fsync dir", dir, e))
}
