//! Replication (contract 11, docs/REPLICATION.md): a follower on loopback holds every record
//! the leader reports replicated, with the same sequence numbers, times and chained
//! checksums; bad peers are refused with nothing written; promotion fences the old leader,
//! which rejoins with its unreplicated tail set aside in quarantine/.
#![cfg(feature = "replication")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use wal_recorder::event;
use wal_recorder::replication::{
    Follower, FollowerOptions, FollowerState, ReplicationConfig, Security,
};
use wal_recorder::{Config, Error, LogReader, Recorder};

const SEG: u64 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// The recorder settings both sides share: small segments, staging in its own tmpfs dir.
fn config(dir: &Path, staging: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = SEG;
    c.scrub_rate = None;
    c.staging_dir = staging.to_path_buf();
    c
}

fn leader_config(dir: &Path, staging: &Path) -> Config {
    let mut c = config(dir, staging);
    c.replication = Some(ReplicationConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Security::Insecure,
    ));
    c
}

fn follower_options(dir: &Path, staging: &Path, name: &str) -> FollowerOptions {
    let mut o = FollowerOptions::new(config(dir, staging), Security::Insecure);
    o.name = name.into();
    o.reconnect_max = Duration::from_millis(200);
    o
}

fn listen_addr(rec: &Recorder) -> SocketAddr {
    rec.replication().expect("replication configured").listen
}

/// Every record of the log in `dir`: (seq, time, crc, payload).
fn records(dir: &Path) -> Vec<(u64, Option<u64>, u32, Vec<u8>)> {
    let mut r = LogReader::open_dir(dir).unwrap();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    while let Some(info) = r.next_record(&mut payload).unwrap() {
        out.push((info.seq, info.time, info.crc, payload.clone()));
    }
    out
}

fn verify_ok(dir: &Path) {
    let out = common::walctl().arg("verify").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "walctl verify {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_follower_holds_every_record_up_to_replicated_seq_with_the_leaders_chain() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    let mut rec = Recorder::open(ld.path(), leader_config(ld.path(), staging.path())).unwrap();
    assert_eq!(rec.replicated_seq(), 0);
    // Records before the follower exists: it catches up from the leader's first one.
    let per_seg = 1000;
    for seq in 1..=3 * per_seg {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    let f = Follower::open(
        fd.path(),
        listen_addr(&rec),
        follower_options(fd.path(), staging.path(), "standby"),
    )
    .unwrap();
    for seq in 3 * per_seg + 1..=5 * per_seg {
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    let last = rec.last_seq();
    rec.wait_replicated(last, WAIT).unwrap();
    assert!(rec.replicated_seq() >= last);
    assert!(
        f.durable_seq() >= last,
        "replicated means durable on the follower"
    );
    assert_eq!(f.state(), FollowerState::Following);
    let status = rec.replication().unwrap();
    assert_eq!(status.followers.len(), 1);
    assert_eq!(status.followers[0].name, "standby");
    assert!(status.followers[0].connected);
    // Local appends to a follower's directory are refused, even after it stops.
    f.close().unwrap();
    match Recorder::open(fd.path(), config(fd.path(), staging.path())) {
        Err(Error::NotLeader(_)) => {}
        other => panic!("a follower's log opened for appends: {:?}", other.err()),
    }
    rec.close().unwrap();
    verify_ok(fd.path());
    assert_eq!(records(fd.path()), records(ld.path()));
}
