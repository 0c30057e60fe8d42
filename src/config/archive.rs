//! `ArchiveConfig`: where cold segments go and how hard the archiver tries.

use std::time::Duration;

use crate::error::{Error, Result};

/// How the archiver retries. Each request is retried by `object_store` itself
/// (`request_retries` times, backing off from `min_backoff`); a segment whose upload still
/// fails waits, backing off from `min_backoff` to `max_backoff`, and is tried again for as
/// long as it takes: an unreachable store delays deletion, it never drops a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of one HTTP request inside `object_store`. Default 3.
    pub request_retries: usize,
    /// First wait after a failure. Default 100 ms.
    pub min_backoff: Duration,
    /// Longest wait between two attempts at one segment. Default 30 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            request_retries: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// See the module docs and docs/OPERATIONS.md, "Archive tier".
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// `s3://bucket/prefix` or `file:///absolute/path`. Objects are named
    /// `<prefix>/<index>.wal.lz4`, plus `<prefix>/manifest.json`.
    pub url: String,
    /// Extra `object_store` options (for S3: `aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_allow_http`, ...); they override the `AWS_*` environment
    /// variables, which are read first.
    pub options: Vec<(String, String)>,
    /// Uploads in flight at once. Default 4.
    pub concurrency: usize,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Time limit of one request (connect included). Default 30 s.
    pub request_timeout: Duration,
    /// Time limit to connect. Default 5 s.
    pub connect_timeout: Duration,
    /// Objects at least this large are sent as multipart uploads. Default 16 MiB.
    pub multipart_threshold: u64,
    /// Size of one part of a multipart upload (S3 needs at least 5 MiB). Default 8 MiB.
    pub part_size: usize,
    /// Disk the archive backlog may use: while cold segments waiting for their upload hold
    /// more than this, health is degraded (nothing is deleted unarchived, the writer is not
    /// blocked, so the disk keeps filling). Default 4 GiB.
    pub backlog_cap_bytes: u64,
    /// How long closing a recorder waits for the backlog to upload before it leaves the
    /// rest to the next open. Default 10 s.
    pub close_timeout: Duration,
    /// Pin the archiver thread (and its helper threads) to this core, best effort. Default
    /// none: a recorder then uses its maintainer's core (`Config::core`).
    pub core: Option<usize>,
    /// Run the archiver at `SCHED_IDLE`, so it only uses CPU its core would leave idle and
    /// never delays the maintainer sharing that core. Default true.
    pub idle_priority: bool,
    /// Test hook: the first `n` single-part uploads send half the bytes, as a broken proxy
    /// would; the size check after the upload must catch them.
    #[doc(hidden)]
    pub fault_truncate_uploads: u32,
}

impl ArchiveConfig {
    /// The defaults, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ArchiveConfig {
            url: url.into(),
            options: Vec::new(),
            concurrency: 4,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            backlog_cap_bytes: 4 << 30,
            close_timeout: Duration::from_secs(10),
            core: None,
            idle_priority: true,
            fault_truncate_uploads: 0,
        }
    }

    /// Adds an `object_store` option (see [`Self::options`]).
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    pub(crate) fn validated(self) -> Result<Self> {
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(Error::Config("archive concurrency must be 1..=64".into()));
        }
        if self.part_size < 5 << 20 {
            return Err(Error::Config(
                "archive part_size must be at least 5 MiB (the S3 minimum)".into(),
            ));
        }
        if self.retry.min_backoff.is_zero() || self.retry.max_backoff < self.retry.min_backoff {
            return Err(Error::Config(
                "archive retry: need 0 < min_backoff <= max_backoff".into(),
            ));
        }
        Ok(self)
    }
}
