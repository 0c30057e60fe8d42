//! The archive tier against a real S3-compatible server: moto's, started on 127.0.0.1 by
//! tests/s3/moto_server.py with authentication on (`.ci/run` installs it). Without python3
//! and moto these tests fail, loudly.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{verify_json, wait_for, walctl};
use wal_recorder::archive::{archive_dir, restore, verify_url, ArchiveConfig, RetryPolicy};
use wal_recorder::config::Config;
use wal_recorder::event;
use wal_recorder::logdir::LogReader;
use wal_recorder::maintainer::Health;
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

/// A moto S3 server of our own, with one bucket and an access key allowed `s3:*`.
struct Moto {
    child: Child,
    endpoint: String,
    key: String,
    secret: String,
    bucket: String,
}

impl Moto {
    fn start() -> Moto {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/moto_server.py");
        // scripts/test.sh installs moto in a virtual environment of its own and names it here.
        let python = std::env::var("WAL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("wal-archive")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("running {python}: {e}: the archive tests need python3 with moto (scripts/test.sh installs it)")
            });
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("moto did not start with {python}: is it installed? scripts/test.sh installs it in target/test-venv");
        });
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Moto {
            endpoint: s("endpoint"),
            key: s("access_key"),
            secret: s("secret_key"),
            bucket: s("bucket"),
            child,
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Fast-failing settings so a stopped server shows within a second.
    fn config(&self, prefix: &str) -> ArchiveConfig {
        let mut c = ArchiveConfig::new(self.url(prefix))
            .with_option("aws_endpoint", &self.endpoint)
            .with_option("aws_access_key_id", &self.key)
            .with_option("aws_secret_access_key", &self.secret)
            .with_option("aws_region", "us-east-1");
        c.request_timeout = Duration::from_millis(1500);
        c.connect_timeout = Duration::from_millis(500);
        c.retry = RetryPolicy {
            request_retries: 0,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
        };
        c.close_timeout = Duration::from_secs(20);
        c
    }

    /// `walctl` with the credentials in the standard environment variables.
    fn walctl(&self) -> Command {
        let mut c = walctl();
        c.env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", "us-east-1");
        c
    }

    /// `walctl archive DIR URL --json`, which must succeed.
    fn archive(&self, dir: &Path, url: &str) -> serde_json::Value {
        run_ok(self.walctl().arg("archive").arg(dir).arg(url).arg("--json"))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// The server stops answering (its connections hang, as on a network partition).
    fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SEG: u64 = 64 * 1024;

fn config(dir: &Path, archive: ArchiveConfig) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.min_sleep = Duration::from_micros(20);
    c.max_sleep = Duration::from_millis(1);
    c.sync_interval = Duration::from_millis(2);
    c.archive = Some(archive);
    c
}

fn append_events(rec: &mut Recorder, n: u64) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        let seq = rec.last_seq() + 1;
        last = rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    last
}

/// Every record of `dir` is the synthetic event of its sequence number; returns
/// (first, last, count).
fn read_all(dir: &Path) -> (u64, u64, u64) {
    let mut r = LogReader::open_dir(dir).unwrap();
    let mut buf = Vec::new();
    let (mut first, mut last, mut n) = (None, 0, 0);
    while let Some(info) = r.next_record(&mut buf).unwrap() {
        assert!(
            event::matches(info.seq, &buf),
            "record {} differs",
            info.seq
        );
        first.get_or_insert(info.seq);
        last = info.seq;
        n += 1;
    }
    (first.unwrap(), last, n)
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split('.').next()?.parse().ok()
        })
        .collect();
    v.sort();
    v
}

/// After `walctl archive DIR` (the hot tail), the store alone gives back records 1..=last.
fn assert_archive_holds_the_whole_log(moto: &Moto, dir: &Path, prefix: &str, last: u64) {
    let url = moto.url(prefix);
    moto.archive(dir, &url);
    let out = tempfile::tempdir().unwrap();
    restore(moto.config(prefix), out.path(), 0, u64::MAX).unwrap();
    assert_eq!(read_all(out.path()), (1, last, last));
}

fn run_ok(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn record_archive_delete_restore_verify() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), moto.config("rt"))).unwrap();
    let last = append_events(&mut rec, 30_000); // about 37 segments of 64 KiB
    rec.shutdown().unwrap();
    let a = rec.metrics().counters.archive;
    assert!(a.uploaded >= 30, "{a:?}");
    // A request the local S3 server answered late is retried and counted in `failures`
    // (seen once on a loaded machine); what must hold is that nothing is left or corrupt.
    assert_eq!((a.backlog, a.corrupt_uploads), (0, 0), "{a:?}");
    assert!(rec.maintainer_stats().freed.get() >= 30);
    drop(rec);
    // Retention held its limits: the archiver confirmed in time for the close.
    let (_, v) = verify_json(dir.path());
    assert_eq!(
        (v["hot"].as_u64(), v["cold"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );

    // The hot tail goes up with walctl archive, compressed on the way; then the local copy
    // is gone and the store alone holds the log.
    let url = moto.url("rt");
    let arch = moto.archive(dir.path(), &url);
    assert_eq!(arch["uploaded"], 2, "{arch}");
    assert_eq!(arch["already_archived"], 2, "{arch}");
    let again = moto.archive(dir.path(), &url);
    assert_eq!(
        (
            again["uploaded"].as_u64(),
            again["already_archived"].as_u64()
        ),
        (Some(0), Some(4))
    );
    drop(dir);

    let v = run_ok(moto.walctl().arg("verify").arg(&url).arg("--json"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        (v["first_seq"].as_u64(), v["last_seq"].as_u64()),
        (Some(1), Some(last))
    );

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    let r = run_ok(
        moto.walctl()
            .arg("restore")
            .arg(&url)
            .arg(&target)
            .arg("--json"),
    );
    assert_eq!(r["records"].as_u64(), Some(last), "{r}");
    let (code, v) = verify_json(&target);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["records"].as_u64(), Some(last));
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(read_all(&target), (1, last, last));

    // A range: only the covering segments, and they verify on their own.
    let part = out.path().join("part");
    let r = restore(moto.config("rt"), &part, 10_000, 12_000).unwrap();
    assert!(
        r.first_seq.unwrap() <= 10_000 && r.last_seq.unwrap() >= 12_000,
        "{r:?}"
    );
    assert!(r.segments <= 4, "{r:?}");
    let (first, last_part, _) = read_all(&part);
    assert_eq!((Some(first), Some(last_part)), (r.first_seq, r.last_seq));

    // Restoring over a non-empty directory is refused.
    let e = restore(moto.config("rt"), &part, 0, u64::MAX).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
}

#[test]
fn store_stopped_mid_run_delays_deletion_and_loses_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut ac = moto.config("outage");
    ac.backlog_cap_bytes = 32 * 1024; // a couple of cold segments
    let mut rec = Recorder::open(dir.path(), config(dir.path(), ac)).unwrap();
    append_events(&mut rec, 5_000);
    wait_for("the first uploads", || {
        rec.metrics().counters.archive.uploaded >= 3
    });

    moto.pause();
    let frozen_before = wal_recorder::maintainer::Counter::get(&rec.maintainer_stats().frozen);
    let last = append_events(&mut rec, 15_000);
    wait_for("failed uploads", || {
        rec.metrics().counters.archive.failures >= 2
    });
    // From here on nothing can be confirmed, so nothing may leave the disk.
    let oldest_in_outage = segment_files(dir.path())[0];
    wait_for("more freezes", || {
        wal_recorder::maintainer::Counter::get(&rec.maintainer_stats().frozen) >= frozen_before + 6
    });
    wait_for("retention to hold segments back", || {
        rec.metrics().counters.archive.waiting >= 4
    });
    wait_for("degraded health over the backlog cap", || {
        rec.health() == Health::Degraded
    });
    // The writer was never blocked, and nothing past the manifest was deleted.
    assert_eq!(rec.last_seq(), last);
    let oldest_local = segment_files(dir.path())[0];
    assert_eq!(
        oldest_local, oldest_in_outage,
        "a segment was deleted while the store was down"
    );

    moto.resume();
    wait_for("the backlog to drain", || {
        let c = rec.metrics().counters;
        c.archive.backlog == 0 && c.archive.waiting == 0
    });
    wait_for("health back to ok", || rec.health() == Health::Ok);
    rec.close().unwrap();

    // Every segment that left the disk is in the store: the archive plus what is left
    // locally is the whole log.
    let url = moto.url("outage");
    let v = run_ok(moto.walctl().arg("verify").arg(&url).arg("--json"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["first_seq"].as_u64(), Some(1), "{v}");
    assert!(v["segments"].as_u64().unwrap() > oldest_local, "{v}");
    assert_archive_holds_the_whole_log(&moto, dir.path(), "outage", last);
}

#[test]
fn a_corrupted_upload_is_detected_and_redone() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut ac = moto.config("corrupt");
    ac.fault_truncate_uploads = 3; // the first three uploads send half their bytes
    let mut rec = Recorder::open(dir.path(), config(dir.path(), ac)).unwrap();
    let last = append_events(&mut rec, 10_000);
    rec.shutdown().unwrap();
    let a = rec.metrics().counters.archive;
    assert_eq!(a.corrupt_uploads, 3, "{a:?}");
    assert_eq!(a.backlog, 0, "{a:?}");
    drop(rec);
    let url = moto.url("corrupt");
    moto.archive(dir.path(), &url);
    let v = verify_url(moto.config("corrupt")).unwrap();
    assert!(v.ok, "{:?}", v.errors);
    assert_eq!(v.last_seq, Some(last));

    // Someone truncates an object in the store: verify names it, archive redoes it.
    let newest = *segment_files(dir.path()).last().unwrap();
    let name = format!("{newest:020}.wal.lz4");
    let local = std::fs::read(dir.path().join(&name)).ok();
    let bytes = match local {
        Some(b) => b,
        None => {
            // A hot tail: archive compressed it; take the restored copy.
            let tmp = tempfile::tempdir().unwrap();
            restore(moto.config("corrupt"), tmp.path(), last, last).unwrap();
            std::fs::read(tmp.path().join(&name)).unwrap()
        }
    };
    put_raw(
        &moto,
        &format!("corrupt/{name}"),
        bytes[..bytes.len() / 2].to_vec(),
    );
    let out = moto.walctl().arg("verify").arg(&url).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name), "{err}");
    let again = moto.archive(dir.path(), &url);
    assert_eq!(again["uploaded"], 1, "{again}");
    let v = verify_url(moto.config("corrupt")).unwrap();
    assert!(v.ok, "{:?}", v.errors);
}

/// The test's own S3 client (not the archive's), and a runtime to drive it.
fn raw_client(moto: &Moto) -> (object_store::aws::AmazonS3, tokio::runtime::Runtime) {
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_bucket_name(&moto.bucket)
        .with_region("us-east-1")
        .with_access_key_id(&moto.key)
        .with_secret_access_key(&moto.secret)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (s3, rt)
}

/// Writes an object behind the archive's back.
fn put_raw(moto: &Moto, key: &str, data: Vec<u8>) {
    use object_store::ObjectStore;
    let (s3, rt) = raw_client(moto);
    rt.block_on(s3.put(&key.into(), data.into())).unwrap();
}

#[test]
fn wrong_credentials_or_a_missing_bucket_fail_at_open() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let bad = moto
        .config("creds")
        .with_option("aws_secret_access_key", "not-the-secret");
    let e = Recorder::open(dir.path(), config(dir.path(), bad))
        .err()
        .unwrap();
    let Error::Archive {
        target, message, ..
    } = &e
    else {
        panic!("{e}");
    };
    assert!(target.starts_with(&moto.url("creds")), "{e}");
    assert!(message.contains("credentials"), "{e}");
    assert!(
        segment_files(dir.path()).is_empty(),
        "a refused open leaves no file"
    );

    let mut missing = moto.config("x");
    missing.url = "s3://no-such-bucket/x".into();
    let e = Recorder::open(dir.path(), config(dir.path(), missing))
        .err()
        .unwrap();
    assert!(e.to_string().contains("bucket does not exist"), "{e}");

    let out = walctl()
        .env("AWS_ENDPOINT", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIAWRONG")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args(["record", "--records", "10", "--archive", &moto.url("creds")])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials"), "{err}");
}

#[test]
fn large_segments_go_up_in_parts() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path());
    c.segment_size = 16 << 20;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let last = append_events(&mut rec, 500_000); // 2-3 segments, ~7 MiB compressed each
    rec.close().unwrap();
    let mut ac = moto.config("big");
    ac.multipart_threshold = 5 << 20;
    ac.part_size = 5 << 20;
    let r = archive_dir(dir.path(), ac).unwrap();
    assert!(r.uploaded >= 2, "{r:?}");
    let v = verify_url(moto.config("big")).unwrap();
    assert!(v.ok, "{:?}", v.errors);
    assert_eq!(v.last_seq, Some(last));
    // S3 gives multipart objects an ETag ending in -<parts>.
    let etag = head_etag(&moto, &format!("big/{:020}.wal.lz4", 0));
    assert!(etag.contains("-2"), "{etag}");
}

fn head_etag(moto: &Moto, key: &str) -> String {
    use object_store::ObjectStore;
    let (s3, rt) = raw_client(moto);
    rt.block_on(s3.head(&key.into())).unwrap().e_tag.unwrap()
}

#[test]
fn a_directory_target_works_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let mut rec = Recorder::open(dir.path(), config(dir.path(), ArchiveConfig::new(&url))).unwrap();
    let last = append_events(&mut rec, 8_000);
    rec.close().unwrap();
    archive_dir(dir.path(), ArchiveConfig::new(&url)).unwrap();
    assert!(store.path().join("manifest.json").exists());
    let out = tempfile::tempdir().unwrap();
    restore(ArchiveConfig::new(&url), out.path(), 0, u64::MAX).unwrap();
    assert_eq!(read_all(out.path()), (1, last, last));
}

#[test]
fn closing_while_the_store_is_down_leaves_the_backlog_for_the_next_open() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut ac = moto.config("restart");
    ac.close_timeout = Duration::from_millis(500);
    let mut rec = Recorder::open(dir.path(), config(dir.path(), ac.clone())).unwrap();
    append_events(&mut rec, 5_000); // about 6 segments: some frozen and uploaded
    wait_for("a first upload", || {
        rec.metrics().counters.archive.uploaded >= 1
    });
    moto.pause();
    let last = append_events(&mut rec, 10_000);
    wait_for("failed uploads", || {
        rec.metrics().counters.archive.failures >= 1
    });
    // Close gives up on the store after close_timeout; the backlog stays on disk.
    rec.shutdown().unwrap();
    assert!(rec.metrics().counters.archive.backlog > 0);
    drop(rec);
    let held = segment_files(dir.path());
    assert!(
        held.len() > 4,
        "retention kept the unarchived segments: {held:?}"
    );

    moto.resume();
    let rec = Recorder::open(dir.path(), config(dir.path(), ac)).unwrap();
    wait_for("the backlog to upload and retention to catch up", || {
        let c = rec.metrics().counters;
        c.cold == 2 && c.archive.backlog == 0 && c.archive.waiting == 0
    });
    rec.close().unwrap();
    let (_, v) = verify_json(dir.path());
    assert_eq!(v["cold"].as_u64(), Some(2), "{v}");
    assert_archive_holds_the_whole_log(&moto, dir.path(), "restart", last);
}

/// The manifest keeps each segment's time range; `walctl restore --since --until` downloads
/// only the segments that cover the window (not the whole archive), and the restored log
/// seeks by time and prints the same window as the original.
#[test]
fn restore_by_time_downloads_only_the_segments_that_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let mut c = config(dir.path(), ArchiveConfig::new(&url));
    c.record_time = true;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let t0 = 1_796_290_200_000_000_000u64; // 2026-12-03T09:30:00Z, then 1 ms a record
    let time = |seq: u64| t0 + (seq - 1) * 1_000_000;
    for _ in 0..20_000 {
        let seq = rec.last_seq() + 1;
        rec.append_with_at(time(seq), 64, |b| event::fill(seq, b))
            .unwrap();
    }
    rec.close().unwrap();
    archive_dir(dir.path(), ArchiveConfig::new(&url)).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path().join("manifest.json")).unwrap())
            .unwrap();
    let segments = manifest["segments"].as_array().unwrap();
    assert!(segments.len() > 20, "{}", segments.len());
    for s in segments {
        let (first, last) = (
            s["first_seq"].as_u64().unwrap(),
            s["last_seq"].as_u64().unwrap(),
        );
        assert_eq!(s["first_time_ns"], time(first), "{s}");
        assert_eq!(s["last_time_ns"], time(last), "{s}");
        assert_eq!(s["max_time_ns"], time(last), "{s}");
    }
    // 09:30:07.000 ..= 09:30:07.999: records 7001..=8000.
    let (since, until) = ("2026-12-03T09:30:07Z", "2026-12-03T10:30:07.999+01:00");
    let out = tempfile::tempdir().unwrap();
    let restored = out.path().join("window");
    let report = run_ok(
        walctl()
            .args(["restore", &url])
            .arg(&restored)
            .args(["--since", since, "--until", until, "--json"]),
    );
    let (first, last) = (
        report["first_seq"].as_u64().unwrap(),
        report["last_seq"].as_u64().unwrap(),
    );
    assert!(first <= 7001 && last >= 8000, "{report}");
    // Only the segments that hold the window: a segment holds about 740 records.
    let held = segments
        .iter()
        .filter(|s| s["last_seq"].as_u64() >= Some(7001) && s["first_seq"].as_u64() <= Some(8000))
        .count() as u64;
    assert_eq!(report["segments"], held, "{report}");
    assert!(held < 5);
    // Each restored segment got its sparse index back, for the file restored.
    let listing = wal_recorder::logdir::list_dir(&restored).unwrap();
    assert_eq!(listing.segments.len() as u64, held);
    for s in &listing.segments {
        let idx = wal_recorder::segment::sparse_index::read_index(&restored, s.index);
        assert_eq!(
            idx.map(|i| i.cold_len),
            Some(s.file_len),
            "{}",
            s.path.display()
        );
    }
    let cat = |d: &Path| {
        let out = walctl()
            .arg("cat")
            .arg(d)
            .args(["--since", since, "--until", until])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let window = cat(&restored);
    assert_eq!(window.lines().count(), 1000);
    assert!(
        window.starts_with("7001 64 2026-12-03T09:30:07.000000000Z "),
        "{window}"
    );
    // Seek by time in the restored log.
    let mut r = LogReader::open_at_time_ns(&restored, time(7500)).unwrap();
    let mut buf = Vec::new();
    assert_eq!(r.next_record(&mut buf).unwrap().unwrap().seq, 7500);
    assert!(event::matches(7500, &buf));
    // A time before the archive is refused, naming what it holds.
    let out = walctl()
        .args(["restore", &url])
        .arg(out.path().join("before"))
        .args(["--since", "2026-12-03T09:29:00Z"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {err}");
    assert!(
        err.contains("before the first archived record")
            && err.contains("the archive holds 2026-12-03T09:30:00.000000000Z"),
        "{err}"
    );
}
