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
    // Readers work on a follower's log while it follows, as on any log.
    let mut t = wal_recorder::Tailer::open(fd.path(), wal_recorder::logdir::StartAt::First)
        .unwrap()
        .with_staging_dir(Some(staging.path()));
    let mut payload = Vec::new();
    for seq in 1..=last {
        let info = t.next_timeout(&mut payload, WAIT).unwrap().unwrap();
        assert_eq!(info.seq, seq);
        assert_eq!(event::TradeEvent::decode(&payload).unwrap().seq, seq);
    }
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
    assert!(records(fd.path()) == records(ld.path()));
}

fn append_n(rec: &mut Recorder, n: u64) -> u64 {
    for _ in 0..n {
        let seq = rec.last_seq() + 1;
        rec.append_with(64, |b| event::fill(seq, b)).unwrap();
    }
    rec.last_seq()
}

/// Segment files (hot or cold) in `dir`.
fn segment_files(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".wal") || n.ends_with(".wal.lz4")
            })
            .count(),
        Err(_) => 0,
    }
}

#[test]
fn a_follower_killed_and_restarted_catches_up() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    let mut rec = Recorder::open(ld.path(), leader_config(ld.path(), staging.path())).unwrap();
    let addr = listen_addr(&rec);
    let opts = || follower_options(fd.path(), staging.path(), "standby");
    let f = Follower::open(fd.path(), addr, opts()).unwrap();
    let first = append_n(&mut rec, 2500);
    rec.wait_replicated(first, WAIT).unwrap();
    f.close().unwrap();
    // The leader goes on without it: not replicated, never blocked.
    let last = append_n(&mut rec, 4000);
    assert!(rec.replicated_seq() < last);
    let f = Follower::open(fd.path(), addr, opts()).unwrap();
    rec.wait_replicated(last, WAIT).unwrap();
    assert!(f.durable_seq() >= last);
    f.close().unwrap();
    rec.close().unwrap();
    verify_ok(fd.path());
    assert!(records(fd.path()) == records(ld.path()));
}

#[test]
fn mutual_tls_admits_the_sites_certificates_and_refuses_others_with_nothing_written() {
    let (ld, certs, other) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let staging = common::staging_root();
    wal_recorder::replication::generate_certs(certs.path(), &["leader", "follower"], &[]).unwrap();
    // Another site's CA: its follower certificate is well formed but not ours.
    wal_recorder::replication::generate_certs(other.path(), &["follower"], &[]).unwrap();
    let files = |dir: &Path, name: &str, ca: &Path| {
        Security::Tls(wal_recorder::replication::TlsFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            ca: ca.join("ca.pem"),
            server_name: None,
        })
    };
    let mut c = config(ld.path(), staging.path());
    c.replication = Some(ReplicationConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        files(certs.path(), "leader", certs.path()),
    ));
    let mut rec = Recorder::open(ld.path(), c).unwrap();
    let addr = listen_addr(&rec);
    let last = append_n(&mut rec, 1500);
    let follow = |name: &str, security: Security| {
        let dir = tempfile::tempdir().unwrap();
        let mut o = follower_options(dir.path(), staging.path(), name);
        o.security = security;
        let f = Follower::open(dir.path(), addr, o).unwrap();
        (dir, f)
    };
    let (good_dir, good) = follow("good", files(certs.path(), "follower", certs.path()));
    let (foreign_dir, foreign) = follow("foreign", files(other.path(), "follower", other.path()));
    let (plain_dir, plain) = follow("plain", Security::Insecure);
    rec.wait_replicated(last, WAIT).unwrap();
    assert!(good.durable_seq() >= last);
    for (f, what) in [(&foreign, "another CA"), (&plain, "no TLS")] {
        wait_for(what, || f.last_problem().is_some());
        assert_eq!(f.received_seq(), 0, "{what}: nothing received");
        assert_ne!(f.state(), FollowerState::Following, "{what}");
    }
    let names: Vec<String> = rec
        .replication()
        .unwrap()
        .followers
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names, ["good"], "only the certified follower is admitted");
    drop((good, foreign, plain));
    assert_eq!(segment_files(foreign_dir.path()), 0);
    assert_eq!(segment_files(plain_dir.path()), 0);
    rec.close().unwrap();
    assert!(records(good_dir.path()) == records(ld.path()));
    // Plain TCP to an address that is not loopback is refused before anything starts.
    let mut c = config(ld.path(), staging.path());
    c.replication = Some(ReplicationConfig::new(
        "0.0.0.0:0".parse().unwrap(),
        Security::Insecure,
    ));
    assert!(matches!(
        Recorder::open(ld.path(), c),
        Err(Error::Config(_))
    ));
    let d = tempfile::tempdir().unwrap();
    let o = follower_options(d.path(), staging.path(), "f");
    assert!(matches!(
        Follower::open(d.path(), "192.0.2.1:7000".parse().unwrap(), o),
        Err(Error::Config(_))
    ));
}

/// A fake leader that accepts one connection and answers with `bytes`.
fn fake_leader(bytes: Vec<u8>) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = l.accept() {
            let mut hello = [0u8; 64];
            let _ = s.read(&mut hello);
            let _ = s.write_all(&bytes);
            let _ = s.read(&mut hello); // until the follower hangs up
        }
    });
    addr
}

#[test]
fn a_follower_disconnects_from_garbage_and_oversized_frames_with_nothing_written() {
    let staging = common::staging_root();
    let oversized = {
        let mut b = (64u32 << 20).to_le_bytes().to_vec();
        b.push(5); // records
        b.extend_from_slice(&[0xab; 4096]);
        b
    };
    for (what, bytes) in [
        ("garbage", b"HTTP/1.1 200 OK\r\n\r\nhello".to_vec()),
        ("oversized", oversized),
    ] {
        let d = tempfile::tempdir().unwrap();
        let f = Follower::open(
            d.path(),
            fake_leader(bytes),
            follower_options(d.path(), staging.path(), "f"),
        )
        .unwrap();
        wait_for(what, || f.last_problem().is_some());
        let problem = f.last_problem().unwrap();
        assert!(problem.contains("frame"), "{what}: {problem}");
        assert_eq!(f.received_seq(), 0);
        drop(f);
        assert_eq!(segment_files(d.path()), 0, "{what}: nothing written");
    }
}

#[test]
fn a_leader_refuses_garbage_and_keeps_serving_its_followers() {
    use std::io::{Read, Write};
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    let mut rec = Recorder::open(ld.path(), leader_config(ld.path(), staging.path())).unwrap();
    let addr = listen_addr(&rec);
    for bytes in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (u32::MAX).to_le_bytes().to_vec(),
    ] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&bytes).unwrap();
        // The leader hangs up (after a refusal frame, at most).
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let f = Follower::open(
        fd.path(),
        addr,
        follower_options(fd.path(), staging.path(), "real"),
    )
    .unwrap();
    let last = append_n(&mut rec, 1000);
    rec.wait_replicated(last, WAIT).unwrap();
    assert_eq!(rec.replication().unwrap().followers.len(), 1);
    f.close().unwrap();
    rec.close().unwrap();
}

#[test]
fn a_follower_of_another_log_is_refused_and_writes_nothing() {
    let (a, b, fd) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let staging = common::staging_root();
    let mut log_a = Recorder::open(a.path(), leader_config(a.path(), staging.path())).unwrap();
    let mut log_b = Recorder::open(b.path(), leader_config(b.path(), staging.path())).unwrap();
    let last_a = append_n(&mut log_a, 500);
    append_n(&mut log_b, 800);
    let opts = || follower_options(fd.path(), staging.path(), "f");
    let f = Follower::open(fd.path(), listen_addr(&log_a), opts()).unwrap();
    log_a.wait_replicated(last_a, WAIT).unwrap();
    f.close().unwrap();
    let before = records(fd.path());
    let f = Follower::open(fd.path(), listen_addr(&log_b), opts()).unwrap();
    wait_for("the refusal", || f.state() == FollowerState::Stopped);
    let why = f.error().unwrap();
    assert!(why.contains("log"), "{why}");
    drop(f);
    assert!(records(fd.path()) == before, "nothing of log B written");
    log_a.close().unwrap();
    log_b.close().unwrap();
}

#[test]
fn promotion_fences_the_old_leader_which_rejoins_with_its_unreplicated_tail_quarantined() {
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    let mut old = Recorder::open(
        old_dir.path(),
        leader_config(old_dir.path(), staging.path()),
    )
    .unwrap();
    let f = Follower::open(
        new_dir.path(),
        listen_addr(&old),
        follower_options(new_dir.path(), staging.path(), "standby"),
    )
    .unwrap();
    let replicated = append_n(&mut old, 2200);
    old.wait_replicated(replicated, WAIT).unwrap();
    // The standby is cut off; the old leader writes 1300 records nobody else holds.
    f.close().unwrap();
    let unreplicated = 1300;
    let old_last = append_n(&mut old, unreplicated);
    old.close().unwrap();

    // An operator promotes the standby: epoch 2 from the record after its last one.
    let epoch = wal_recorder::replication::promote_with(
        new_dir.path(),
        config(new_dir.path(), staging.path()),
    )
    .unwrap();
    assert_eq!(epoch, 2);
    let mut new = Recorder::open(
        new_dir.path(),
        leader_config(new_dir.path(), staging.path()),
    )
    .unwrap();
    assert_eq!(new.last_seq(), replicated);
    let new_last = append_n(&mut new, 900);
    assert!(
        new_last < old_last,
        "the two logs now disagree from {replicated} on"
    );

    // The old leader, restarted as a leader of epoch 1: a follower of epoch 2 refuses it.
    let stale = Recorder::open(
        old_dir.path(),
        leader_config(old_dir.path(), staging.path()),
    )
    .unwrap();
    let third = tempfile::tempdir().unwrap();
    let f3 = Follower::open(
        third.path(),
        listen_addr(&new),
        follower_options(third.path(), staging.path(), "third"),
    )
    .unwrap();
    new.wait_replicated(new_last, WAIT).unwrap();
    f3.close().unwrap();
    let third_before = records(third.path());
    let f3 = Follower::open(
        third.path(),
        listen_addr(&stale),
        follower_options(third.path(), staging.path(), "third"),
    )
    .unwrap();
    wait_for("the stale leader refused", || {
        f3.last_problem().is_some_and(|p| p.contains("epoch"))
    });
    drop(f3);
    assert_eq!(
        records(third.path()),
        third_before,
        "nothing of epoch 1 written"
    );
    stale.close().unwrap();

    // The old leader rejoins as a follower: its records after the point where the logs part
    // go to quarantine/ (counted, kept), and it converges on the new leader's log.
    let rejoined = Follower::open(
        old_dir.path(),
        listen_addr(&new),
        follower_options(old_dir.path(), staging.path(), "old"),
    )
    .unwrap();
    let more = append_n(&mut new, 500);
    new.wait_replicated(more, WAIT).unwrap();
    wait_for("the rejoined follower", || rejoined.durable_seq() >= more);
    assert_eq!(rejoined.set_aside(), unreplicated);
    assert_eq!(rejoined.epoch(), 2);
    rejoined.close().unwrap();
    new.close().unwrap();
    verify_ok(old_dir.path());
    assert!(records(old_dir.path()) == records(new_dir.path()));
    let kept: Vec<u64> = (replicated + 1..=old_last).collect();
    assert_eq!(
        common::quarantined_from(old_dir.path(), replicated + 1),
        kept
    );
}

/// A recorder whose retention keeps 2 hot and 2 cold segments, and `hold` more for a
/// follower that is behind.
fn small_retention_leader(dir: &Path, staging: &Path, hold: usize) -> Recorder {
    let mut c = leader_config(dir, staging);
    c.max_segments = 2;
    c.max_compressed_segments = 2;
    c.replication.as_mut().unwrap().hold_segments = hold;
    Recorder::open(dir, c).unwrap()
}

#[test]
fn retention_holds_segments_for_a_follower_within_its_budget_and_beyond_it_the_follower_is_told() {
    let staging = common::staging_root();
    for (hold, caught_up) in [(200, true), (3, false)] {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut rec = small_retention_leader(ld.path(), staging.path(), hold);
        let addr = listen_addr(&rec);
        let opts = || follower_options(fd.path(), staging.path(), "slow");
        let f = Follower::open(fd.path(), addr, opts()).unwrap();
        let first = append_n(&mut rec, 500);
        rec.wait_replicated(first, WAIT).unwrap();
        f.close().unwrap();
        // 30 segments while the follower is away.
        let last = append_n(&mut rec, 30 * 900);
        rec.sync().unwrap();
        // Retention is due for the segments the follower lacks: held, or deleted.
        match caught_up {
            true => wait_for("the hold", || {
                rec.maintainer_stats().held_for_readers.get() > 0
            }),
            false => wait_for("retention", || rec.maintainer_stats().freed.get() > 0),
        }
        let before = records(fd.path());
        let f = Follower::open(fd.path(), addr, opts()).unwrap();
        match caught_up {
            true => {
                rec.wait_replicated(last, WAIT).unwrap();
                f.close().unwrap();
                // The follower holds everything; the leader may delete what it has read now.
                let (mine, theirs) = (records(fd.path()), records(ld.path()));
                assert_eq!((mine[0].0, mine.len() as u64), (1, last));
                assert!(
                    mine.ends_with(&theirs),
                    "the follower's log ends as the leader's"
                );
            }
            false => {
                wait_for("the refusal", || f.state() == FollowerState::Stopped);
                let why = f.error().unwrap();
                assert!(why.contains("not in the log"), "{why}");
                drop(f);
                assert!(records(fd.path()) == before, "nothing written");
            }
        }
        rec.close().unwrap();
    }
}

/// A follower's hello, encoded by hand as docs/REPLICATION.md describes it: an empty log
/// (next seq 0) that has never seen a leader.
fn raw_hello(name: &str) -> Vec<u8> {
    let mut body = vec![1u8]; // Hello
    body.extend_from_slice(b"WALREPL1");
    body.extend_from_slice(&0u128.to_le_bytes()); // log id: none yet
    body.extend_from_slice(&0u64.to_le_bytes()); // epoch
    body.extend_from_slice(&0u64.to_le_bytes()); // next seq: empty
    body.extend_from_slice(&0u32.to_le_bytes()); // checksum before it
    body.extend_from_slice(&(name.len() as u16).to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn health_says_when_a_required_follower_is_missing_or_behind() {
    use std::io::{Read, Write};
    let ld = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(ld.path(), leader_config(ld.path(), staging.path())).unwrap();
    append_n(&mut rec, 100);
    assert_eq!(rec.health(), wal_recorder::Health::Degraded);
    let problem = rec.replication().unwrap().problem.unwrap();
    assert!(problem.contains("0 of 1 required followers"), "{problem}");
    // A peer that is welcomed and takes the records, but never acknowledges one.
    let mut s = std::net::TcpStream::connect(listen_addr(&rec)).unwrap();
    s.write_all(&raw_hello("mute")).unwrap();
    let reader = std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    wait_for("the mute follower to count as connected", || {
        rec.replication()
            .unwrap()
            .followers
            .iter()
            .any(|f| f.connected)
    });
    append_n(&mut rec, 100);
    wait_for("behind", || {
        rec.replication()
            .unwrap()
            .problem
            .is_some_and(|p| p.contains("followers behind"))
    });
    assert_eq!(rec.health(), wal_recorder::Health::Degraded);
    assert_eq!(rec.replicated_seq(), 0);
    rec.close().unwrap();
    reader.join().unwrap();
}

/// An acknowledgement frame, encoded by hand.
fn raw_ack(epoch: u64, durable: u64) -> Vec<u8> {
    let mut frame = 25u32.to_le_bytes().to_vec();
    frame.push(6); // Ack
    for v in [epoch, durable, durable] {
        frame.extend_from_slice(&v.to_le_bytes());
    }
    frame
}

#[test]
fn a_leader_refuses_acknowledgements_of_another_epoch_and_counts_none_of_them() {
    use std::io::{Read, Write};
    let ld = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let mut rec = Recorder::open(ld.path(), leader_config(ld.path(), staging.path())).unwrap();
    let last = append_n(&mut rec, 100);
    let mut s = std::net::TcpStream::connect(listen_addr(&rec)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&raw_hello("stale")).unwrap();
    wait_for("the peer to count as connected", || {
        rec.replication()
            .unwrap()
            .followers
            .iter()
            .any(|f| f.connected)
    });
    // Epoch 7 claims everything durable; this leader's epoch is 1.
    s.write_all(&raw_ack(7, last)).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink); // the leader hangs up
    wait_for("the disconnection", || {
        rec.replication()
            .unwrap()
            .followers
            .iter()
            .all(|f| !f.connected)
    });
    assert_eq!(
        rec.replicated_seq(),
        0,
        "nothing counted from a stale epoch"
    );
    rec.close().unwrap();
}

#[test]
fn a_tls_peer_without_a_client_certificate_is_refused() {
    use std::io::{Read, Write};
    let (ld, certs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    wal_recorder::replication::generate_certs(certs.path(), &["leader"], &[]).unwrap();
    let mut c = config(ld.path(), staging.path());
    c.replication = Some(ReplicationConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Security::Tls(wal_recorder::replication::TlsFiles {
            cert: certs.path().join("leader.pem"),
            key: certs.path().join("leader.key"),
            ca: certs.path().join("ca.pem"),
            server_name: None,
        }),
    ));
    let mut rec = Recorder::open(ld.path(), c).unwrap();
    append_n(&mut rec, 100);
    // A client that trusts the leader's CA but presents no certificate of its own.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(certs.path().join("ca.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(listen_addr(&rec)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let wrote = tls
        .write_all(&raw_hello("anonymous"))
        .and_then(|_| tls.flush());
    let mut buf = [0u8; 64];
    let read = tls.read(&mut buf);
    assert!(
        wrote.is_err() || !matches!(read, Ok(n) if n > 0),
        "the leader answered a peer without a certificate"
    );
    assert!(rec.replication().unwrap().followers.is_empty());
    rec.close().unwrap();
}
