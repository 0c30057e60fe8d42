//! Replication (feature `replication`; docs/REPLICATION.md): a leader's recorder ships every
//! committed record to followers on other machines, which write them through their own
//! recorder, chain checked, and acknowledge how far they are durable; the leader reports
//! [`crate::Recorder::replicated_seq`]. Epochs fence a former leader; a rejoining one sets
//! its records after the point where the logs part aside in `quarantine/`.
//!
//! Layering: the leader reads the log as a [`crate::Tailer`] does (files and staging
//! buffers), so the writer's thread does nothing new; the follower is a [`crate::Recorder`]
//! whose appends come from the wire. The epochs file is read by every build, so a recorder
//! without the feature still refuses to append to a follower's log.

pub mod epochs;

#[cfg(feature = "replication")]
mod channel;
#[cfg(feature = "replication")]
mod follower;
#[cfg(feature = "replication")]
mod leader;
#[cfg(feature = "replication")]
mod promote;
#[cfg(feature = "replication")]
mod rejoin;
#[cfg(feature = "replication")]
mod shipper;
#[cfg(feature = "replication")]
mod tls;
#[cfg(feature = "replication")]
mod wire;

#[cfg(feature = "replication")]
pub use follower::{Follower, FollowerOptions, FollowerState};
#[cfg(feature = "replication")]
pub(crate) use leader::Leader;
#[cfg(feature = "replication")]
pub use leader::{FollowerInfo, ReplicationStatus};
#[cfg(feature = "replication")]
pub use promote::{promote, promote_with};
#[cfg(feature = "replication")]
pub use tls::{generate_certs, Security, TlsFiles};

pub use epochs::{EpochStart, ReplicaState, Role};

use std::path::Path;

use crate::error::Result;

/// Whether `dir` is a follower's log (its `epochs` file says so).
pub(crate) fn is_follower(dir: &Path) -> Result<bool> {
    Ok(ReplicaState::load(dir)?.is_some_and(|s| s.role == Role::Follower))
}

/// The leader side's configuration ([`crate::Config::replication`]).
#[cfg(feature = "replication")]
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Where followers connect (`--serve HOST:PORT`).
    pub listen: std::net::SocketAddr,
    /// TLS files, or plain TCP on loopback only.
    pub security: Security,
    /// Followers that must hold a record durably before it counts as replicated. Default 1.
    pub min_replicas: usize,
    /// Cold segments retention keeps beyond its limits for a follower (or reader) that is
    /// behind (it raises `Config::hold_for_readers` to this). Default 64.
    pub hold_segments: usize,
    /// A follower silent this long is disconnected. Default 5 s.
    pub follower_timeout: std::time::Duration,
    /// Longest pause of a shipping thread with nothing to ship (it spins, then yields, then
    /// sleeps doubling up to this). Default 50 µs: the replication lag's floor against one
    /// core's worth of polling.
    pub idle_max: std::time::Duration,
    /// Followers connected at once. Default 8.
    pub max_followers: usize,
}

#[cfg(feature = "replication")]
impl ReplicationConfig {
    /// The defaults, listening on `listen` with `security`.
    pub fn new(listen: std::net::SocketAddr, security: Security) -> Self {
        ReplicationConfig {
            listen,
            security,
            min_replicas: 1,
            hold_segments: 64,
            follower_timeout: std::time::Duration::from_secs(5),
            idle_max: std::time::Duration::from_micros(50),
            max_followers: 8,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        self.security.check(&self.listen)?;
        if self.min_replicas == 0 || self.min_replicas > self.max_followers {
            return Err(crate::Error::Config(format!(
                "min_replicas {} must be in 1..={} (max_followers)",
                self.min_replicas, self.max_followers
            )));
        }
        Ok(())
    }
}
