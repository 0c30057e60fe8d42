//! Replication from the command line (feature `replication`; docs/REPLICATION.md):
//! `walctl follow`, `walctl promote`, `walctl certs`, and the security options that
//! `walctl record --serve` shares with `follow`.

use std::path::PathBuf;

/// How a replication connection is protected: mutual TLS by default, plain TCP only with
/// `--insecure` on loopback addresses.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    /// Plain TCP without TLS: refused unless the address is a loopback address
    #[arg(long, hide = !cfg!(feature = "replication"))]
    pub insecure: bool,
    /// This side's certificate chain (PEM; `walctl certs` makes one for trials)
    #[arg(long, hide = !cfg!(feature = "replication"), value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This side's private key (PEM)
    #[arg(long, hide = !cfg!(feature = "replication"), value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs the other side's certificate (PEM)
    #[arg(long, hide = !cfg!(feature = "replication"), value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Follower: the name the leader's certificate must carry (default: the leader's IP
    /// address)
    #[arg(long, hide = !cfg!(feature = "replication"), value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

#[cfg(feature = "replication")]
pub use enabled::*;

#[cfg(feature = "replication")]
mod enabled {
    use std::net::{SocketAddr, ToSocketAddrs};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use serde_json::json;
    use wal_recorder::replication::{
        Follower, FollowerOptions, FollowerState, ReplicationStatus, Security, TlsFiles,
    };
    use wal_recorder::Config;

    use super::SecurityArgs;
    use crate::CmdResult;

    impl SecurityArgs {
        /// The security asked for, or the usage error.
        pub fn security(&self) -> Result<Security, String> {
            match (
                self.insecure,
                &self.tls_cert,
                &self.tls_key,
                &self.tls_ca,
            ) {
                (true, None, None, None) => Ok(Security::Insecure),
                (true, ..) => Err("--insecure and --tls-* exclude each other".into()),
                (false, Some(cert), Some(key), Some(ca)) => Ok(Security::Tls(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                    server_name: self.tls_server_name.clone(),
                })),
                (false, ..) => Err(
                    "replication needs --tls-cert, --tls-key and --tls-ca (mutual TLS), or --insecure on a loopback address"
                        .into(),
                ),
            }
        }
    }

    /// `HOST:PORT` as one socket address (the first the name resolves to).
    pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
        s.to_socket_addrs()
            .map_err(|e| format!("{s}: {e}"))?
            .next()
            .ok_or_else(|| format!("{s}: resolves to no address"))
    }

    /// Prints the library's log lines (a refused peer, a lost connection) to stderr.
    struct StderrLog;

    impl log::Log for StderrLog {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Info && m.target().starts_with("wal_recorder")
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!(
                    "walctl: {}: {}",
                    r.level().as_str().to_lowercase(),
                    r.args()
                );
            }
        }
        fn flush(&self) {}
    }

    static LOGGER: StderrLog = StderrLog;

    /// Sends the library's log lines to stderr (once per process).
    pub fn log_to_stderr() {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    }

    #[derive(clap::Args)]
    pub struct FollowArgs {
        /// The follower's log directory (created if missing)
        dir: PathBuf,
        /// The leader's replication address (`walctl record --serve HOST:PORT`)
        #[arg(long, value_name = "HOST:PORT")]
        leader: String,
        #[command(flatten)]
        security: SecurityArgs,
        /// The name the leader knows this follower by
        #[arg(long, default_value = "follower")]
        name: String,
        /// tmpfs directory for the follower's staging buffers
        #[arg(long, default_value = "/dev/shm")]
        staging_dir: PathBuf,
        /// Segment file size of a new follower log
        #[arg(long, default_value = "64M", value_parser = crate::units::parse_size)]
        segment_size: u64,
        /// Hot segments kept before the oldest is compressed
        #[arg(long, default_value_t = 8)]
        max_segments: usize,
        /// Compressed segments kept before the oldest is deleted
        #[arg(long, default_value_t = 64)]
        max_compressed: usize,
        /// Stop (exit 0) once every record up to this one from the leader is durable here
        #[arg(long, value_name = "SEQ")]
        until: Option<u64>,
        /// Print `received <seq> durable <seq> leader <seq> epoch <e> <state>` to stderr
        /// every 100 ms
        #[arg(long)]
        progress: bool,
    }

    /// `walctl follow`: follows until stopped (SIGINT, SIGTERM: exit 0), until `--until`
    /// is durable (exit 0), or until the leader refuses it for good (exit 1).
    pub fn run_follow(a: FollowArgs) -> CmdResult {
        let (leader, security) = match (parse_addr(&a.leader), a.security.security()) {
            (Ok(l), Ok(s)) => (l, s),
            (Err(why), _) | (_, Err(why)) => {
                eprintln!("walctl: {why}");
                return Ok(ExitCode::from(2));
            }
        };
        crate::stop_signal::install();
        log_to_stderr();
        let mut config = Config::new(&a.dir);
        config.segment_size = a.segment_size;
        config.max_segments = a.max_segments;
        config.max_compressed_segments = a.max_compressed;
        config.staging_dir = a.staging_dir.clone();
        let mut options = FollowerOptions::new(config, security);
        options.name = a.name.clone();
        let f = match Follower::open(&a.dir, leader, options) {
            Ok(f) => f,
            Err(wal_recorder::Error::Config(why)) => {
                eprintln!("walctl: {why}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        };
        eprintln!(
            "walctl: {}: following {leader} as {:?}",
            a.dir.display(),
            a.name
        );
        let mut last_progress = Instant::now();
        let failed = loop {
            if crate::stop_signal::stopped() {
                break None;
            }
            if f.state() == FollowerState::Stopped {
                break Some(f.error().unwrap_or_else(|| "the follower stopped".into()));
            }
            // Records the leader sent or announced: a rejoining former leader may hold more of
            // its own before it sets them aside.
            if a.until
                .is_some_and(|u| f.durable_seq() >= u && f.leader_seq() >= u)
            {
                break None;
            }
            if a.progress && last_progress.elapsed() >= Duration::from_millis(100) {
                progress(&f);
                last_progress = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        progress(&f);
        let set_aside = f.set_aside();
        f.close()?;
        if set_aside > 0 {
            eprintln!(
                "walctl: {}: {set_aside} records of a former leader set aside in quarantine/",
                a.dir.display()
            );
        }
        match failed {
            Some(why) => Err(format!("{}: {why}", a.dir.display()).into()),
            None => Ok(ExitCode::SUCCESS),
        }
    }

    fn progress(f: &Follower) {
        eprintln!(
            "received {} durable {} leader {} epoch {} {:?}",
            f.received_seq(),
            f.durable_seq(),
            f.leader_seq(),
            f.epoch(),
            f.state()
        );
    }

    /// `walctl promote DIR`: the follower's log becomes the leader of a new epoch.
    pub fn run_promote(dir: &Path, staging_dir: &Path) -> CmdResult {
        let mut config = Config::new(dir);
        config.staging_dir = staging_dir.to_path_buf();
        match wal_recorder::replication::promote_with(dir, config) {
            Ok(epoch) => {
                println!(
                    "{}: promoted: leader of epoch {epoch}; `walctl record {} --serve HOST:PORT` (or a Recorder with Config::replication) appends and ships from here",
                    dir.display(),
                    dir.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(wal_recorder::Error::Config(why)) => {
                eprintln!("walctl: {why}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `walctl certs OUT`: a private CA and a certificate per name.
    pub fn run_certs(out: &Path, names: &[String], hosts: &[String]) -> CmdResult {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        wal_recorder::replication::generate_certs(out, &names, hosts)?;
        println!(
            "{}: ca.pem, ca.key and, for each of {}, <name>.pem and <name>.key",
            out.display(),
            names.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    }

    /// The replication part of `walctl record --json`.
    pub fn status_json(s: &ReplicationStatus) -> serde_json::Value {
        json!({
            "listen": s.listen.to_string(), "epoch": s.epoch,
            "replicated_seq": s.replicated_seq, "min_replicas": s.min_replicas,
            "problem": s.problem,
            "followers": s.followers.iter().map(|f| json!({
                "name": f.name, "addr": f.addr.to_string(), "durable_seq": f.durable_seq,
                "received_seq": f.received_seq, "connected": f.connected,
            })).collect::<Vec<_>>(),
        })
    }
}
