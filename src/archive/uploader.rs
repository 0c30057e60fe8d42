//! The archiver: its own thread running a small current-thread tokio runtime, never the
//! maintainer's loop. It takes cold segments offered by the maintainer, uploads them
//! (`concurrency` at a time), checks each object's size and checksum in the store, records
//! it in the manifest, and only then confirms it to the maintainer, which may delete it.
//! Failures back off per segment and are retried for as long as it takes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::manifest::{Manifest, ManifestEntry};
use super::scan::{read_cold, ColdBytes};
use super::store::{Check, ObjectFacts, Store, MANIFEST};
use crate::config::archive::ArchiveConfig;
use crate::error::{Error, Result};
use crate::maintainer::archive_gate::ArchiverLink;
use crate::maintainer::Health;
use crate::segment::names::{cold_name, cold_path};
use crate::telemetry::{self, Hist, LocalHists};

/// How often the archiver looks at its ring when nothing else wakes it.
const TICK: Duration = Duration::from_millis(20);

/// The archiver's counters, read by anyone with relaxed loads.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    /// Segments uploaded and confirmed.
    pub uploaded: AtomicU64,
    /// Segments found already in the store, matching, after a restart.
    pub already_archived: AtomicU64,
    /// Bytes uploaded (confirmed uploads only).
    pub bytes: AtomicU64,
    /// Failed attempts (store unreachable, refused, timed out); each is retried.
    pub failures: AtomicU64,
    /// Uploads whose check found the wrong size or checksum in the store; each is redone.
    pub corrupt_uploads: AtomicU64,
    /// Attempts that could not read or verify the local segment.
    pub local_errors: AtomicU64,
    /// Manifest objects written.
    pub manifest_writes: AtomicU64,
    /// Segments waiting for a confirmed upload (gauge).
    pub backlog: AtomicU64,
    /// Bytes of those segments on disk (gauge).
    pub backlog_bytes: AtomicU64,
    /// Segments whose last attempt failed on the local file (gauge).
    pub unreadable: AtomicU64,
    /// Whether the backlog is over `backlog_cap_bytes` (gauge).
    pub over_cap: AtomicBool,
}

impl ArchiveStats {
    /// The counters as the telemetry exports them (`waiting` is the maintainer's).
    pub fn counters(&self) -> crate::telemetry::ArchiveCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::telemetry::ArchiveCounters {
            uploaded: g(&self.uploaded),
            already_archived: g(&self.already_archived),
            bytes: g(&self.bytes),
            failures: g(&self.failures),
            corrupt_uploads: g(&self.corrupt_uploads),
            local_errors: g(&self.local_errors),
            backlog: g(&self.backlog),
            backlog_bytes: g(&self.backlog_bytes),
            waiting: 0,
        }
    }
}

impl ArchiveStats {
    /// Degraded while the backlog is over its cap or a local segment cannot be archived.
    pub fn health(&self) -> Health {
        if self.over_cap.load(Ordering::Relaxed) || self.unreadable.load(Ordering::Relaxed) > 0 {
            Health::Degraded
        } else {
            Health::Ok
        }
    }
}

struct Shared {
    stats: ArchiveStats,
    /// Set by `stop`: finish the backlog until this instant, then leave.
    stop_at: Mutex<Option<Instant>>,
    stopped: AtomicBool,
}

/// What one upload task achieved.
pub(crate) enum Done {
    /// Uploaded and checked in `ns` nanoseconds.
    Uploaded { entry: ManifestEntry, ns: u64 },
    /// The store already held it (a restart after the upload).
    Present { entry: ManifestEntry },
}

/// Why one upload task failed.
pub(crate) enum Fail {
    /// The local segment could not be read or does not verify.
    Local(Error),
    /// The store failed or refused the request.
    Store(Error),
    /// The object in the store is not what was sent.
    Corrupt(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Local(e) | Fail::Store(e) => write!(f, "{e}"),
            Fail::Corrupt(why) => write!(f, "object in the store does not match: {why}"),
        }
    }
}

/// Uploads a checked cold segment as object `<index>.wal.lz4` and checks it; skips the
/// upload if `known` (the manifest's entry) matches and the object checks out.
pub(crate) async fn upload_segment(
    store: &Store,
    cfg: &ArchiveConfig,
    index: u64,
    seg: ColdBytes,
    known: Option<ManifestEntry>,
    truncate: bool,
) -> std::result::Result<Done, Fail> {
    let name = cold_name(index);
    let entry = ManifestEntry {
        index,
        first_seq: seg.first_seq,
        last_seq: seg.last_seq,
        size: seg.data.len() as u64,
        crc32c: seg.crc32c,
        times: seg.times,
    };
    if known.is_some_and(|k| k.same_object(&entry)) {
        let check = store.check(&name, entry.size, entry.crc32c).await;
        if check.map_err(Fail::Store)? == Check::Ok {
            return Ok(Done::Present { entry });
        }
    }
    let facts = ObjectFacts {
        crc32c: entry.crc32c,
        first_seq: entry.first_seq,
        last_seq: entry.last_seq,
    };
    let mut data = seg.data;
    if truncate {
        data.truncate(data.len() / 2);
    }
    let start = Instant::now();
    store
        .put_segment(&name, data, facts, cfg)
        .await
        .map_err(Fail::Store)?;
    match store
        .check(&name, entry.size, entry.crc32c)
        .await
        .map_err(Fail::Store)?
    {
        Check::Ok => Ok(Done::Uploaded {
            entry,
            ns: start.elapsed().as_nanos() as u64,
        }),
        Check::Missing => Err(Fail::Corrupt("missing right after its upload".into())),
        Check::Mismatch(why) => Err(Fail::Corrupt(why)),
    }
}

/// Reads the manifest; an empty one if the store has none yet. Being the first request, it
/// is also the check that the store answers: wrong credentials or a missing bucket fail
/// here. (Not a listing: S3 answers a missing object with 404 only to callers allowed to
/// list, and moto's signature check rejects listings with a `/` in the prefix.)
pub(crate) async fn load_manifest(store: &Store) -> Result<Manifest> {
    match store.get(MANIFEST).await? {
        None => Ok(Manifest::default()),
        Some(bytes) => Manifest::from_json(&bytes, &store.target(MANIFEST)),
    }
}

/// A segment waiting for its confirmed upload.
struct Pending {
    size: u64,
    attempts: u32,
    not_before: Instant,
    in_flight: bool,
    local_error: bool,
}

fn backoff(cfg: &ArchiveConfig, attempts: u32) -> Duration {
    crate::backoff::backoff(cfg.retry.min_backoff, cfg.retry.max_backoff, attempts)
}

type TaskResult = (u64, std::result::Result<Done, Fail>);

struct Loop {
    store: Store,
    cfg: Arc<ArchiveConfig>,
    dir: PathBuf,
    link: ArchiverLink,
    shared: Arc<Shared>,
    manifest: Manifest,
    /// Uploads checked and in the manifest, waiting for the manifest to be stored.
    unlisted: Vec<u64>,
    manifest_retry: Option<(u32, Instant)>,
    confirm_outbox: VecDeque<u64>,
    queue: BTreeMap<u64, Pending>,
    tasks: JoinSet<TaskResult>,
    faults_left: u32,
    hists: LocalHists,
}

impl Loop {
    async fn run(mut self) {
        loop {
            self.intake();
            self.start_uploads();
            if self.tasks.is_empty() {
                tokio::time::sleep(TICK).await;
            } else {
                tokio::select! {
                    r = self.tasks.join_next() => if let Some(r) = r { self.finished(r) },
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
            while let Some(r) = self.tasks.try_join_next() {
                self.finished(r);
            }
            self.store_manifest().await;
            self.flush_confirms();
            self.update_gauges();
            self.hists.maybe_publish(false);
            let stop_at = *self.shared.stop_at.lock().expect("stop lock");
            if let Some(at) = stop_at {
                // Drained once the maintainer has stopped (no more offers) and every offer
                // is confirmed.
                let maintainer_done = self.intake();
                let drained = maintainer_done
                    && self.queue.is_empty()
                    && self.unlisted.is_empty()
                    && self.confirm_outbox.is_empty();
                if drained || Instant::now() >= at {
                    break;
                }
            }
        }
        self.link.finish();
        self.tasks.abort_all();
        if !self.queue.is_empty() {
            log::warn!(
                "archiver stopped with {} segment(s) not archived; they stay on disk and are \
                 uploaded after the next open",
                self.queue.len()
            );
        }
        self.hists.maybe_publish(true);
    }

    /// Takes the maintainer's offers; true if it had stopped before (no more will come).
    fn intake(&mut self) -> bool {
        let (dir, queue) = (&self.dir, &mut self.queue);
        self.link.take_offers(|index| {
            let path = cold_path(dir, index);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            queue.entry(index).or_insert(Pending {
                size,
                attempts: 0,
                not_before: Instant::now(),
                in_flight: false,
                local_error: false,
            });
        })
    }

    fn start_uploads(&mut self) {
        let now = Instant::now();
        for (&index, p) in self.queue.iter_mut() {
            if self.tasks.len() >= self.cfg.concurrency {
                break;
            }
            if p.in_flight || p.not_before > now || self.unlisted.contains(&index) {
                continue;
            }
            p.in_flight = true;
            let truncate = self.faults_left > 0;
            self.faults_left = self.faults_left.saturating_sub(1);
            let (store, cfg) = (self.store.clone(), self.cfg.clone());
            let path = cold_path(&self.dir, index);
            let known = self.manifest.segments.get(&index).copied();
            self.tasks.spawn(async move {
                let read = tokio::task::spawn_blocking(move || read_cold(&path)).await;
                let seg = match read {
                    Ok(Ok(seg)) => seg,
                    Ok(Err(e)) => return (index, Err(Fail::Local(e))),
                    Err(e) => {
                        let e = Error::Config(format!("archive reader task failed: {e}"));
                        return (index, Err(Fail::Local(e)));
                    }
                };
                let r = upload_segment(&store, &cfg, index, seg, known, truncate).await;
                (index, r)
            });
        }
    }

    fn finished(&mut self, r: std::result::Result<TaskResult, tokio::task::JoinError>) {
        let (index, result) = match r {
            Ok(r) => r,
            Err(e) => {
                log::error!("archive upload task failed: {e}");
                return;
            }
        };
        let stats = &self.shared.stats;
        let Some(p) = self.queue.get_mut(&index) else {
            return;
        };
        p.in_flight = false;
        match result {
            Ok(done) => {
                let entry = match done {
                    Done::Uploaded { entry, ns } => {
                        self.hists.record(Hist::Upload, ns);
                        stats.uploaded.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(entry.size, Ordering::Relaxed);
                        entry
                    }
                    Done::Present { entry } => {
                        stats.already_archived.fetch_add(1, Ordering::Relaxed);
                        entry
                    }
                };
                p.local_error = false;
                self.manifest.insert(entry);
                self.unlisted.push(index);
            }
            Err(Fail::Local(Error::Io { source, path, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Only retention deletes cold segments, and not before a confirmation: the
                // file was removed by hand. Nothing left to archive.
                log::error!("{}: gone before it was archived", path.display());
                stats.local_errors.fetch_add(1, Ordering::Relaxed);
                self.queue.remove(&index);
            }
            Err(fail) => {
                match &fail {
                    Fail::Local(_) => {
                        stats.local_errors.fetch_add(1, Ordering::Relaxed);
                        p.local_error = true;
                    }
                    Fail::Store(_) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Fail::Corrupt(_) => {
                        stats.corrupt_uploads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let wait = backoff(&self.cfg, p.attempts);
                p.attempts += 1;
                p.not_before = Instant::now() + wait;
                log::warn!(
                    "archiving segment {index} (attempt {}) failed, retrying in {wait:?}: {fail}",
                    p.attempts
                );
            }
        }
    }

    /// Stores the manifest once new uploads are in it; on success they are confirmed.
    async fn store_manifest(&mut self) {
        if self.unlisted.is_empty() {
            return;
        }
        if let Some((_, at)) = self.manifest_retry {
            if Instant::now() < at {
                return;
            }
        }
        let json = self.manifest.to_json();
        match self.store.put_small(MANIFEST, json).await {
            Ok(()) => {
                self.manifest_retry = None;
                self.shared
                    .stats
                    .manifest_writes
                    .fetch_add(1, Ordering::Relaxed);
                for index in self.unlisted.drain(..) {
                    self.queue.remove(&index);
                    self.confirm_outbox.push_back(index);
                }
            }
            Err(e) => {
                self.shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                let attempts = self.manifest_retry.map_or(0, |(a, _)| a);
                let wait = backoff(&self.cfg, attempts);
                log::warn!("writing the archive manifest failed, retrying in {wait:?}: {e}");
                self.manifest_retry = Some((attempts + 1, Instant::now() + wait));
            }
        }
    }

    fn flush_confirms(&mut self) {
        while let Some(&i) = self.confirm_outbox.front() {
            if self.link.confirm(i).is_err() {
                break;
            }
            self.confirm_outbox.pop_front();
        }
    }

    fn update_gauges(&self) {
        let s = &self.shared.stats;
        let bytes: u64 = self.queue.values().map(|p| p.size).sum();
        let unreadable = self.queue.values().filter(|p| p.local_error).count();
        s.backlog.store(self.queue.len() as u64, Ordering::Relaxed);
        s.backlog_bytes.store(bytes, Ordering::Relaxed);
        s.unreadable.store(unreadable as u64, Ordering::Relaxed);
        let over = bytes > self.cfg.backlog_cap_bytes;
        if over != s.over_cap.swap(over, Ordering::Relaxed) && over {
            log::error!(
                "archive backlog {bytes} bytes is over its cap of {} bytes: health degraded",
                self.cfg.backlog_cap_bytes
            );
        }
    }
}

/// Pins and deprioritises the archiver thread (best effort), then builds its runtime.
fn setup_thread(cfg: &ArchiveConfig, dir: &Path) -> Result<tokio::runtime::Runtime> {
    if let Some(core) = cfg.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            log::warn!("could not pin the archiver to core {core}");
        }
    }
    if cfg.idle_priority {
        if let Err(e) = crate::io::set_idle_priority() {
            log::warn!("could not give the archiver idle priority: {e}");
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start the archive runtime", dir, e))
}

/// The archiver thread's handle. See the module docs.
pub struct Archiver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    close_timeout: Duration,
    url: String,
    hist_shared: telemetry::Shared,
}

impl Archiver {
    /// Starts the thread `wal-archiver`, which opens the store and reads the manifest (so
    /// wrong credentials or a missing bucket fail here, returned to the caller), then works.
    /// Everything runs on that thread and on helper threads it creates, which inherit its
    /// core and priority, never the caller's.
    pub(crate) fn start(dir: &Path, cfg: ArchiveConfig, link: ArchiverLink) -> Result<Self> {
        let cfg = cfg.validated()?;
        let store = Store::open(&cfg)?;
        let shared = Arc::new(Shared {
            stats: ArchiveStats::default(),
            stop_at: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        let hist_shared = telemetry::shared();
        let url = store.url().to_string();
        let close_timeout = cfg.close_timeout;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        #[allow(clippy::clone_on_copy)] // a ZST without fs1-metrics
        let hists = LocalHists::new(hist_shared.clone());
        let (thread_shared, thread_dir) = (shared.clone(), dir.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("wal-archiver".into())
            .spawn(move || {
                let started = setup_thread(&cfg, &thread_dir).and_then(|rt| {
                    let manifest = rt.block_on(load_manifest(&store))?;
                    Ok((rt, manifest))
                });
                let (rt, manifest) = match started {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let body = Loop {
                    store,
                    faults_left: cfg.fault_truncate_uploads,
                    cfg: Arc::new(cfg),
                    dir: thread_dir,
                    link,
                    shared: thread_shared,
                    manifest,
                    unlisted: Vec::new(),
                    manifest_retry: None,
                    confirm_outbox: VecDeque::new(),
                    queue: BTreeMap::new(),
                    tasks: JoinSet::new(),
                    hists,
                };
                rt.block_on(body.run());
            })
            .map_err(|e| Error::io("spawn archiver", dir, e))?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::Config("the archiver thread ended at start".into())));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Archiver {
            shared,
            thread: Some(thread),
            close_timeout,
            url,
            hist_shared,
        })
    }

    /// The archive URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &ArchiveStats {
        &self.shared.stats
    }

    /// Ok, or degraded (backlog over its cap, or a local segment that cannot be archived).
    pub fn health(&self) -> Health {
        self.shared.stats.health()
    }

    /// The upload latency histogram (empty without `fs1-metrics`).
    pub fn histograms(&self) -> telemetry::HistSet {
        telemetry::published(&self.hist_shared)
    }

    /// Starts the close: from now on the archiver works through its backlog for at most
    /// `close_timeout`, and ends once the maintainer has stopped and everything it offered
    /// is confirmed.
    pub(crate) fn request_stop(&self) {
        let mut at = self.shared.stop_at.lock().expect("stop lock");
        if at.is_none() {
            *at = Some(Instant::now() + self.close_timeout);
        }
    }

    /// Lets the backlog upload for up to the configured `close_timeout`, then stops. What
    /// is left stays on disk and is offered again after the next open.
    pub fn stop(&mut self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.request_stop();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the archiver thread panicked");
            }
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        self.stop();
    }
}
