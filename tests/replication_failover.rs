//! Replication between processes (contract 11): `walctl record --serve` leading at a paced
//! rate, `walctl follow` behind a TCP proxy that delays and cuts the connection; the leader is
//! SIGKILLed at a random moment, the follower promoted, and every record up to the last
//! `replicated` the leader printed is on it and verifies; the old leader rejoins as a
//! follower of the new one and converges, its unreplicated tail in quarantine/.
#![cfg(feature = "replication")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A TCP proxy in front of `to`: each connection's chunks are forwarded after a random
/// delay (0-2 ms), and every connection is cut after a random 50-400 ms, until `stop`.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

impl Proxy {
    fn start(to: SocketAddr, seed: u64) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), cuts.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed | 1);
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(to) else {
                    continue; // the leader is gone: the follower retries
                };
                let life = Duration::from_millis(50 + rng.below(350));
                let cut = Arc::new(AtomicBool::new(false));
                for (from, into, seed) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        rng.next(),
                    ),
                    (
                        server.try_clone().unwrap(),
                        client.try_clone().unwrap(),
                        rng.next(),
                    ),
                ] {
                    let cut = cut.clone();
                    std::thread::spawn(move || pump(from, into, seed, &cut));
                }
                let (s, c) = (s.clone(), c.clone());
                std::thread::spawn(move || {
                    let until = Instant::now() + life;
                    while Instant::now() < until && !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    cut.store(true, Ordering::Relaxed);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                    c.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        Proxy { addr, stop, cuts }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pump(mut from: TcpStream, mut into: TcpStream, seed: u64, cut: &AtomicBool) {
    let mut rng = Rng(seed | 1);
    let mut buf = vec![0u8; 16 * 1024];
    while !cut.load(Ordering::Relaxed) {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
        }
        if into.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Both);
}

/// Lines of a child's stderr, as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the `walctl: serving ADDR epoch E` line; returns the address.
fn served_addr(lines: &mpsc::Receiver<String>) -> SocketAddr {
    let until = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("the leader announces its address");
        if let Some(rest) = line.strip_prefix("walctl: serving ") {
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
}

/// The number after `word` in a progress line.
fn field(line: &str, word: &str) -> Option<u64> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next()?.parse().ok();
        }
    }
    None
}

/// `walctl CMD DIR ARGS` with the segment settings both sides share, stderr piped.
fn spawn(cmd: &str, dir: &Path, staging: &Path, args: &[&str]) -> Child {
    common::walctl()
        .arg(cmd)
        .arg(dir)
        .args(["--insecure", "--segment-size", "1M", "--max-segments", "4"])
        .arg("--staging-dir")
        .arg(staging)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn leader(dir: &Path, staging: &Path, extra: &[&str]) -> Child {
    let args = [&["--serve", "127.0.0.1:0", "--progress"], extra].concat();
    spawn("record", dir, staging, &args)
}

fn follower(dir: &Path, staging: &Path, leader: SocketAddr, extra: &[&str]) -> Child {
    let leader = leader.to_string();
    let args = [&["--leader", leader.as_str()], extra].concat();
    spawn("follow", dir, staging, &args)
}

fn verify(dir: &Path, staging: &Path) -> serde_json::Value {
    let out = common::walctl()
        .args(["verify", "--json", "--staging-dir"])
        .arg(staging)
        .arg(dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{}: {v}", dir.display());
    v
}

fn records(dir: &Path) -> Vec<(u64, u32, Vec<u8>)> {
    let mut r = wal_recorder::LogReader::open_dir(dir).unwrap();
    let (mut out, mut payload) = (Vec::new(), Vec::new());
    while let Some(info) = r.next_record(&mut payload).unwrap() {
        out.push((info.seq, info.crc, payload.clone()));
    }
    out
}

#[test]
fn sigkilled_leader_promoted_follower_holds_every_replicated_record_and_the_old_leader_rejoins() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed | 1);
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let staging = common::staging_root();
    let staging = staging.path();

    // 1. The leader records at 100 000 records/s; the follower follows through the proxy.
    let mut lead = leader(
        old_dir.path(),
        staging,
        &["--records", "100000000", "--rate", "100000"],
    );
    let lines = stderr_lines(&mut lead);
    let proxy = Proxy::start(served_addr(&lines), rng.next());
    let mut follow = follower(new_dir.path(), staging, proxy.addr, &["--name", "standby"]);
    let follow_lines = stderr_lines(&mut follow);

    // 2. SIGKILL the leader once its followers hold a random number of records.
    let kill_after = 20_000 + rng.below(200_000);
    let (mut replicated, mut appended) = (0, 0);
    let (start, mut leader_said) = (Instant::now(), Vec::new());
    let until = Instant::now() + WAIT;
    while replicated < kill_after {
        if Instant::now() > until || follow.try_wait().unwrap().is_some() {
            let said: Vec<String> = follow_lines.try_iter().collect();
            panic!("replicated only {replicated}; the follower said {said:?}; the leader said {leader_said:?}");
        }
        let line = lines.recv_timeout(WAIT).expect("progress lines");
        if !line.starts_with("appended") {
            leader_said.push(format!("{:?} {line}", start.elapsed()));
        }
        if let Some(r) = field(&line, "replicated") {
            assert!(r >= replicated, "replicated_seq went back: {line}");
            replicated = r;
        }
        appended = appended.max(field(&line, "appended").unwrap_or(0));
    }
    lead.kill().unwrap();
    lead.wait().unwrap();
    // What it printed last, once dead, is the bound: nothing after the kill is printed.
    while let Ok(line) = lines.try_recv() {
        replicated = replicated.max(field(&line, "replicated").unwrap_or(0));
        appended = appended.max(field(&line, "appended").unwrap_or(0));
    }
    let cuts = proxy.cuts.load(Ordering::Relaxed);
    drop(proxy);
    eprintln!("killed the leader at replicated {replicated}, appended {appended}; {cuts} cuts");

    // 3. The follower is stopped and promoted: it holds every replicated record.
    follow.kill().unwrap(); // its staging buffers outlive it
    follow.wait().unwrap();
    let out = common::walctl()
        .arg("promote")
        .arg(new_dir.path())
        .arg("--staging-dir")
        .arg(staging)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verify(new_dir.path(), staging);
    let promoted_last = v["last_seq"].as_u64().unwrap();
    assert!(
        promoted_last >= replicated,
        "the promoted follower ends at {promoted_last}, the leader reported {replicated} replicated"
    );
    // 4. The new leader appends; the old one rejoins as its follower and converges.
    let mut new_lead = leader(
        new_dir.path(),
        staging,
        &["--records", "50000", "--await-followers", "30"],
    );
    let new_lines = stderr_lines(&mut new_lead);
    let new_addr = served_addr(&new_lines);
    let target = promoted_last + 50_000;
    let mut rejoin = follower(
        old_dir.path(),
        staging,
        new_addr,
        &["--name", "old", "--until", &target.to_string()],
    );
    let rejoin_lines = stderr_lines(&mut rejoin);
    let until = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = rejoin.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            rejoin.kill().unwrap();
            let said: Vec<String> = rejoin_lines.try_iter().collect();
            let leader_said: Vec<String> = new_lines.try_iter().collect();
            panic!(
                "the rejoined follower did not reach {target}: the new leader said {leader_said:?}; the follower said {:?}",
                &said[..said.len().min(14)]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said: Vec<String> = rejoin_lines.try_iter().collect();
    assert!(
        status.success(),
        "the old leader rejoined and followed to {target}: {said:?}"
    );
    assert!(new_lead.wait().unwrap().success());
    verify(old_dir.path(), staging);
    let (old_log, new_log) = (records(old_dir.path()), records(new_dir.path()));
    if old_log != new_log {
        let at = old_log.iter().zip(&new_log).position(|(a, b)| a != b);
        let show =
            |r: &[(u64, u32, Vec<u8>)]| (r.len(), r.first().map(|x| x.0), r.last().map(|x| x.0));
        panic!(
            "the rejoined log differs: old {:?} new {:?}, first difference at {at:?}: {:?} vs {:?}; it said {said:?}",
            show(&old_log),
            show(&new_log),
            at.map(|i| (old_log[i].0, old_log[i].1)),
            at.map(|i| (new_log[i].0, new_log[i].1)),
        );
    }
    // What the old leader held past the point where the logs part is in quarantine/,
    // counted; it held at least what it last printed as appended.
    let set_aside = said
        .iter()
        .find_map(|l| {
            l.split(": ")
                .nth(2)?
                .strip_suffix(" records of a former leader set aside in quarantine/")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let quarantined = common::quarantined_from(old_dir.path(), promoted_last + 1);
    assert_eq!(quarantined.len() as u64, set_aside, "{said:?}");
    assert_eq!(
        quarantined,
        (promoted_last + 1..promoted_last + 1 + set_aside).collect::<Vec<_>>()
    );
    if appended > promoted_last {
        assert!(set_aside >= appended - promoted_last, "{said:?}");
    }
}

/// The README's mutual-TLS commands: `walctl certs`, `record --serve` with the leader's
/// certificate, `follow --until` with the follower's, then `verify`.
#[test]
fn walctl_leader_and_follower_over_mutual_tls() {
    let d = tempfile::tempdir().unwrap();
    let staging = common::staging_root();
    let pki = d.path().join("pki");
    assert!(common::walctl()
        .arg("certs")
        .arg(&pki)
        .status()
        .unwrap()
        .success());
    let tls = |name: &str| {
        vec![
            "--tls-cert".to_string(),
            pki.join(format!("{name}.pem")).display().to_string(),
            "--tls-key".to_string(),
            pki.join(format!("{name}.key")).display().to_string(),
            "--tls-ca".to_string(),
            pki.join("ca.pem").display().to_string(),
        ]
    };
    let mut lead = common::walctl()
        .arg("record")
        .arg(d.path().join("leader"))
        .args([
            "--serve",
            "127.0.0.1:0",
            "--records",
            "200000",
            "--rate",
            "200000",
        ])
        .args(["--await-followers", "30", "--staging-dir"])
        .arg(staging.path())
        .args(tls("leader"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut lead);
    let addr = served_addr(&lines);
    let follow = common::walctl()
        .arg("follow")
        .arg(d.path().join("follower"))
        .args([
            "--leader",
            &addr.to_string(),
            "--until",
            "200000",
            "--staging-dir",
        ])
        .arg(staging.path())
        .args(tls("follower"))
        .output()
        .unwrap();
    assert!(
        follow.status.success(),
        "{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    let status = lead.wait().unwrap();
    let said: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "the leader: {status}: {said:?}");
    let v = verify(&d.path().join("follower"), staging.path());
    assert_eq!(v["last_seq"], 200000);
    assert!(records(&d.path().join("follower")) == records(&d.path().join("leader")));
}
