//! The operator side of the archive tier: archive a closed directory, restore a sequence
//! range into an empty directory, verify the archived log in place (`walctl archive`,
//! `walctl restore`, `walctl verify URL`).

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::manifest::{Manifest, ManifestEntry};
use super::scan::{compress_hot, read_cold, scan_cold_bytes, ColdBytes};
use super::store::{Store, MANIFEST};
use super::uploader::{load_manifest, upload_segment, Done, Fail};
use crate::codec::open_cold_reader;
use crate::config::archive::ArchiveConfig;
use crate::error::{Corruption, Error, Result};
use crate::logdir::{list_dir, verify_reader, LogReader, SegmentEntry, Tier, VerifyReport};

/// Attempts per segment before `walctl archive` gives up on it.
const CLI_ATTEMPTS: u32 = 5;
/// The manifest is stored at least every this many uploads (and at the end).
const MANIFEST_EVERY: usize = 64;

/// What [`archive_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Segments uploaded now.
    pub uploaded: u64,
    /// Segments the store already held, matching.
    pub already: u64,
    /// Bytes uploaded now.
    pub bytes: u64,
    /// Hot segments that were not sealed (an open or crashed log): not archived.
    pub skipped: Vec<String>,
    /// Segments in the manifest afterwards.
    pub manifest_segments: u64,
}

/// What [`restore`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Segments written.
    pub segments: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// First sequence number restored.
    pub first_seq: Option<u64>,
    /// Last sequence number restored.
    pub last_seq: Option<u64>,
}

fn runtime(what: &Path) -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start the archive runtime", what, e))
}

async fn open_checked(cfg: &ArchiveConfig) -> Result<(Store, Manifest)> {
    let store = Store::open(cfg)?;
    let manifest = load_manifest(&store).await?;
    Ok((store, manifest))
}

/// Reads (cold) or compresses (hot) the segment at `entry` for upload; `None` for a hot
/// segment that is not sealed.
fn prepare(entry: &SegmentEntry) -> Result<Option<ColdBytes>> {
    match entry.tier {
        Tier::Cold => read_cold(&entry.path).map(Some),
        Tier::Hot => match compress_hot(&entry.path) {
            Ok(c) => Ok(Some(c)),
            Err(Error::Corrupt {
                kind: Corruption::BadSeal(_) | Corruption::ZeroHeader | Corruption::EmptyFile,
                ..
            }) if is_tail(entry) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Whether no sealed segment follows `entry` (its directory's listing is re-read).
fn is_tail(entry: &SegmentEntry) -> bool {
    let Some(dir) = entry.path.parent() else {
        return false;
    };
    let Ok(listing) = list_dir(dir) else {
        return false;
    };
    listing
        .segments
        .iter()
        .filter(|s| s.index > entry.index)
        .all(|s| {
            s.tier == Tier::Hot && crate::segment::reader::is_unused_file(&s.path).unwrap_or(false)
        })
}

async fn upload_with_retries(
    store: Store,
    cfg: Arc<ArchiveConfig>,
    index: u64,
    seg: ColdBytes,
    known: Option<ManifestEntry>,
) -> std::result::Result<Done, Fail> {
    let mut attempt = 0;
    loop {
        let copy = ColdBytes {
            data: seg.data.clone(),
            ..seg
        };
        match upload_segment(&store, &cfg, index, copy, known, false).await {
            Ok(d) => return Ok(d),
            Err(Fail::Local(e)) => return Err(Fail::Local(e)),
            Err(f) if attempt + 1 >= CLI_ATTEMPTS => return Err(f),
            Err(f) => {
                // Someone is waiting at the command line: never more than 5 s per attempt.
                let max = cfg.retry.max_backoff.min(Duration::from_secs(5));
                let wait = crate::backoff::backoff(cfg.retry.min_backoff, max, attempt);
                log::warn!("segment {index}: {f}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// Uploads every sealed segment of `dir` the store does not hold yet: cold ones as they
/// are, hot ones compressed to the same LZ4 frame. Idempotent. Takes the directory's lock,
/// so it refuses a directory a recorder has open.
pub fn archive_dir(dir: &Path, cfg: ArchiveConfig) -> Result<ArchiveReport> {
    let cfg = Arc::new(cfg.validated()?);
    let _lock = crate::io::lock_dir(dir)?;
    let listing = list_dir(dir)?;
    let rt = runtime(dir)?;
    rt.block_on(async {
        let (store, mut manifest) = open_checked(&cfg).await?;
        let mut report = ArchiveReport::default();
        let mut tasks: JoinSet<(u64, std::result::Result<Done, Fail>)> = JoinSet::new();
        let mut since_manifest = 0usize;
        let mut first_error: Option<Error> = None;
        let handle = |r: std::result::Result<_, tokio::task::JoinError>,
                      manifest: &mut Manifest,
                      report: &mut ArchiveReport,
                      since: &mut usize,
                      first_error: &mut Option<Error>| {
            match r {
                Ok((_, Ok(Done::Uploaded { entry, .. }))) => {
                    report.uploaded += 1;
                    report.bytes += entry.size;
                    manifest.insert(entry);
                    *since += 1;
                }
                Ok((_, Ok(Done::Present { entry }))) => {
                    report.already += 1;
                    manifest.insert(entry);
                }
                Ok((index, Err(f))) => {
                    let e = match f {
                        Fail::Local(e) | Fail::Store(e) => e,
                        Fail::Corrupt(why) => Error::Archive {
                            target: store.target(&crate::segment::names::cold_name(index)),
                            op: "check upload",
                            message: why,
                        },
                    };
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Config(format!("upload task: {e}")));
                }
            }
        };
        for entry in &listing.segments {
            while tasks.len() >= cfg.concurrency {
                let r = tasks.join_next().await.expect("not empty");
                let since = &mut since_manifest;
                handle(r, &mut manifest, &mut report, since, &mut first_error);
            }
            if since_manifest >= MANIFEST_EVERY {
                store.put_small(MANIFEST, manifest.to_json()).await?;
                since_manifest = 0;
            }
            let e = entry.clone();
            let prepared = tokio::task::spawn_blocking(move || prepare(&e))
                .await
                .map_err(|e| Error::Config(format!("segment reader task: {e}")))?;
            let seg = match prepared {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    report.skipped.push(entry.path.display().to_string());
                    continue;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            };
            let known = manifest.segments.get(&entry.index).copied();
            let (s, c, index) = (store.clone(), cfg.clone(), entry.index);
            tasks.spawn(async move { (index, upload_with_retries(s, c, index, seg, known).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let since = &mut since_manifest;
            handle(r, &mut manifest, &mut report, since, &mut first_error);
        }
        if report.uploaded > 0 || report.already > 0 {
            store.put_small(MANIFEST, manifest.to_json()).await?;
        }
        report.manifest_segments = manifest.segments.len() as u64;
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    })
}

/// What to restore: a range of sequence numbers or of log times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreRange {
    /// The records `from..=to`.
    Seq {
        /// The first sequence number wanted.
        from: u64,
        /// The last sequence number wanted.
        to: u64,
    },
    /// What `walctl cat --since since --until until` reads (nanoseconds since the Unix
    /// epoch; see [`Manifest::covering_time`]): only the segments that cover it, found by the
    /// manifest's time ranges.
    Time {
        /// From the first record at or after this time (`None`: from the first).
        since: Option<u64>,
        /// Up to the first record after this time.
        until: u64,
    },
}

/// Downloads the archived segments holding `from..=to` into `dir` (created if missing; it
/// must be empty), each checked against the manifest and decoded in full before it is
/// renamed into place. `walctl verify DIR` then accepts the directory.
pub fn restore(cfg: ArchiveConfig, dir: &Path, from: u64, to: u64) -> Result<RestoreReport> {
    restore_range(cfg, dir, RestoreRange::Seq { from, to })
}

/// As [`restore`], for a range of sequence numbers or of times.
pub fn restore_range(cfg: ArchiveConfig, dir: &Path, range: RestoreRange) -> Result<RestoreReport> {
    let cfg = cfg.validated()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
    let mut rd = std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    if rd.next().is_some() {
        return Err(Error::Config(format!(
            "restore into {}: the directory is not empty",
            dir.display()
        )));
    }
    let rt = runtime(dir)?;
    let (store, manifest) = rt.block_on(open_checked(&cfg))?;
    let target = store.target(MANIFEST);
    if manifest.segments.is_empty() {
        return Err(Error::Archive {
            target,
            op: "restore",
            message: "no manifest (or an empty one): nothing is archived here".into(),
        });
    }
    let (from, to) = match range {
        RestoreRange::Seq { from, to } => (from, to),
        RestoreRange::Time { since, until } => {
            let run = manifest.covering_time(since, until, &target)?;
            let first = run
                .first()
                .expect("covering_time errs rather than find nothing");
            (first.first_seq, run.last().map_or(0, |e| e.last_seq))
        }
    };
    let entries = manifest.covering(from, to, &target)?;
    if entries.is_empty() {
        let first = manifest.segments.values().next().map_or(0, |e| e.first_seq);
        let last = manifest.segments.values().last().map_or(0, |e| e.last_seq);
        return Err(Error::NotArchived {
            target,
            message: format!(
                "no archived record in {from}..={to} (the archive holds {first}..={last})"
            ),
        });
    }
    let mut report = RestoreReport::default();
    let result = rt.block_on(async {
        let mut tasks: JoinSet<Result<ManifestEntry>> = JoinSet::new();
        let mut done = Vec::new();
        for e in entries {
            while tasks.len() >= cfg.concurrency {
                done.push(
                    tasks
                        .join_next()
                        .await
                        .expect("not empty")
                        .map_err(join_err)??,
                );
            }
            let (store, dir) = (store.clone(), dir.to_path_buf());
            tasks.spawn(async move { fetch_segment(&store, e, &dir).await.map(|()| e) });
        }
        while let Some(r) = tasks.join_next().await {
            done.push(r.map_err(join_err)??);
        }
        Ok::<_, Error>(done)
    });
    let done = match result {
        Ok(d) => d,
        Err(e) => {
            remove_tmp(dir);
            return Err(e);
        }
    };
    crate::segment::sync_dir(dir)?;
    for e in &done {
        // Seeks into a restored segment decode one block, as in the log it came from.
        if let Err(err) = crate::codec::reindex_cold(dir, e.index) {
            log::warn!(
                "{err}; seeks into segment {} decode it from its start",
                e.index
            );
        }
        report.segments += 1;
        report.records += e.records();
        report.bytes += e.size;
    }
    report.first_seq = done.iter().map(|e| e.first_seq).min();
    report.last_seq = done.iter().map(|e| e.last_seq).max();
    Ok(report)
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Config(format!("archive task: {e}"))
}

fn remove_tmp(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Downloads one segment, checks it against its manifest entry and decodes it, then writes
/// it durably into `dir`.
async fn fetch_segment(store: &Store, e: ManifestEntry, dir: &Path) -> Result<()> {
    let name = e.name();
    let target = store.target(&name);
    let bytes = fetch_checked(store, &e).await?;
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    tokio::task::spawn_blocking(move || {
        let seg = scan_cold_bytes(bytes, Path::new(&target))?;
        if (seg.first_seq, seg.last_seq) != (e.first_seq, e.last_seq) {
            return Err(Error::Archive {
                target,
                op: "restore",
                message: format!(
                    "holds {}..={} where the manifest says {}..={}",
                    seg.first_seq, seg.last_seq, e.first_seq, e.last_seq
                ),
            });
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|err| Error::io("create", &tmp, err))?;
        f.write_all(&seg.data)
            .map_err(|err| Error::io("write", &tmp, err))?;
        f.sync_data()
            .map_err(|err| Error::io("fdatasync", &tmp, err))?;
        std::fs::rename(&tmp, &path).map_err(|err| Error::io("rename", &path, err))
    })
    .await
    .map_err(join_err)?
}

/// The bytes of an archived segment, checked against its manifest entry.
async fn fetch_checked(store: &Store, e: &ManifestEntry) -> Result<Vec<u8>> {
    let target = store.target(&e.name());
    let bytes = store.get(&e.name()).await?.ok_or_else(|| Error::Archive {
        target: target.clone(),
        op: "get",
        message: "listed in the manifest but missing from the store".into(),
    })?;
    let crc = crc32c::crc32c(&bytes);
    if bytes.len() as u64 != e.size || crc != e.crc32c {
        return Err(Error::corrupt(
            PathBuf::from(&target),
            0,
            Corruption::BadFrame(format!(
                "{} bytes with checksum {crc:08x}; the manifest says {} bytes, {:08x}",
                bytes.len(),
                e.size,
                e.crc32c
            )),
        ));
    }
    Ok(bytes)
}

/// Verifies the archived log at `cfg.url` without a local copy: every segment listed in the
/// manifest is downloaded in turn, checked against the manifest and read through the same
/// chain checks as `walctl verify DIR`.
pub fn verify_url(cfg: ArchiveConfig) -> Result<VerifyReport> {
    let cfg = cfg.validated()?;
    let rt = Arc::new(runtime(Path::new(&cfg.url))?);
    let (store, manifest) = rt.block_on(open_checked(&cfg))?;
    if manifest.segments.is_empty() {
        return Err(Error::Archive {
            target: store.target(MANIFEST),
            op: "verify",
            message: "no manifest (or an empty one): nothing is archived here".into(),
        });
    }
    let entries: Vec<SegmentEntry> = manifest
        .segments
        .values()
        .map(|e| SegmentEntry {
            index: e.index,
            path: PathBuf::from(store.target(&e.name())),
            tier: Tier::Cold,
            file_len: e.size,
            stamp: Default::default(),
        })
        .collect();
    let opener = Box::new(move |entry: &SegmentEntry| {
        let e = manifest.segments[&entry.index];
        let bytes = rt.block_on(fetch_checked(&store, &e))?;
        open_cold_reader(Cursor::new(bytes), &entry.path)
    });
    Ok(verify_reader(LogReader::from_sources(
        entries,
        Vec::new(),
        opener,
    )))
}
