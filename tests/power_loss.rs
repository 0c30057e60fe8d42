//! Power loss, for real (contract 7): `walctl record` runs on a loop-mounted ext4 image; the
//! file system is shut down with `FS_IOC_GOINGDOWN` and the no-flush flag (what was not
//! fsynced is lost, as in a power cut), then unmounted and mounted again. Every record up to
//! the last `durable_seq` the child reported must be there, and recovery must succeed.
//! Ten cuts per write path, on ext4 and on xfs (the shutdown ioctl is the same number).
//! Needs root, loop devices, mkfs.ext4 and mkfs.xfs; without them this test fails loudly.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{spawn_record_watched, staging_root, verify_json, wait_for};
use wal_recorder::config::{Config, WritePath};
use wal_recorder::recorder::Recorder;

/// `_IOR('X', 125, __u32)`
const FS_IOC_GOINGDOWN: libc::c_ulong = 0x8004_587D;
/// Shut down without flushing the journal.
const GOINGDOWN_NOLOGFLUSH: u32 = 2;

fn sh(cmd: &mut Command) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {program}: {e}: this test needs {program} (scripts/test.sh installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed (this test needs root, loop devices and mkfs.ext4): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount(image: &Path, at: &Path) {
    sh(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(image)
        .arg(at));
}

/// Unmounts, retrying while the killed child's io_uring teardown (asynchronous in the
/// kernel) still holds files open.
fn umount(at: &Path) {
    for _ in 0..100 {
        if Command::new("umount").arg(at).status().unwrap().success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sh(Command::new("umount").arg(at));
}

fn shutdown_fs(at: &Path) {
    let d = std::fs::File::open(at).unwrap();
    let flag = GOINGDOWN_NOLOGFLUSH;
    // SAFETY: the ioctl reads one u32 through a valid pointer.
    let rc = unsafe { libc::ioctl(d.as_raw_fd(), FS_IOC_GOINGDOWN as _, &flag) };
    assert_eq!(
        rc,
        0,
        "FS_IOC_GOINGDOWN: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn staged_records_up_to_durable_seq_survive_power_cuts_on_ext4() {
    power_cuts(WritePath::Staged, "ext4");
}

#[test]
fn direct_records_up_to_durable_seq_survive_power_cuts_on_ext4() {
    power_cuts(WritePath::Direct, "ext4");
}

#[test]
fn staged_records_up_to_durable_seq_survive_power_cuts_on_xfs() {
    power_cuts(WritePath::Staged, "xfs");
}

#[test]
fn direct_records_up_to_durable_seq_survive_power_cuts_on_xfs() {
    power_cuts(WritePath::Direct, "xfs");
}

/// Ten power cuts on a loop-mounted `fs` (ext4 or xfs), each after durable progress.
fn power_cuts(path: WritePath, fs: &str) {
    let staging = staging_root();
    let name = if path == WritePath::Staged {
        "staged"
    } else {
        "direct"
    };
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("fs.img");
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(Command::new("truncate").arg("-s").arg("1G").arg(&image));
    match fs {
        "xfs" => sh(Command::new("mkfs.xfs").arg("-q").arg("-f").arg(&image)),
        _ => sh(Command::new("mkfs.ext4").arg("-q").arg("-F").arg(&image)),
    }
    let log = mnt.join("log");
    let mut last_durable = 0;
    let delays = [200u64, 300, 400, 500, 600, 700, 800, 900, 1000, 1100];
    for (trial, delay_ms) in delays.into_iter().enumerate() {
        mount(&image, &mnt);
        let (mut child, progress, reader) = spawn_record_watched(
            &log,
            &[
                // Staged: buffered drains (the default) and O_DIRECT ones, alternately.
                "--direct-io",
                if trial % 2 == 1 { "true" } else { "false" },
                "--write-path",
                name,
                "--staging-dir",
                staging.path().to_str().unwrap(),
                "--records",
                "1000000000",
                "--segment-size",
                "1048576",
                "--max-segments",
                "4",
                "--max-compressed",
                "8",
                "--sync-interval-ms",
                "1",
            ],
        );
        // Cut the power while records are being made durable: once the child has made some
        // durable past the last trial (its open may take a while), then after the delay.
        wait_for("the child making records durable", || {
            progress.lock().unwrap().1 > last_durable
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        shutdown_fs(&mnt);
        child.kill().unwrap();
        child.wait().unwrap();
        // A power cut empties tmpfs too: the staging buffers are gone.
        for e in std::fs::read_dir(staging.path()).unwrap() {
            std::fs::remove_dir_all(e.unwrap().path()).unwrap();
        }
        let (_, durable) = reader.join().unwrap();
        umount(&mnt);
        mount(&image, &mnt);

        let (code, v) = verify_json(&log);
        assert_eq!(code, Some(0), "trial {trial}: {v}");
        let last = v["last_seq"].as_u64().unwrap_or(0);
        assert!(
            durable > last_durable,
            "trial {trial}: durable_seq never advanced ({durable})"
        );
        assert!(
            last >= durable,
            "trial {trial}: durable_seq {durable} reported, the log ends at {last}: {v}"
        );
        eprintln!(
            "trial {trial}: durable {durable} last after power cut {last} warnings {}",
            v["warnings"]
        );
        let mut cfg = Config::new(&log);
        cfg.segment_size = 1 << 20;
        cfg.write_path = path;
        cfg.staging_dir = staging.path().to_path_buf();
        let rec = Recorder::open(&log, cfg).unwrap();
        assert_eq!(rec.last_seq(), last);
        assert_eq!(rec.recovered().replayed_records, 0);
        rec.close().unwrap();
        last_durable = durable;
        umount(&mnt);
    }
}
