//! A consistent snapshot of the counters and histograms, and its exports: Prometheus text
//! exposition (`wal_` prefix, base units: seconds and bytes) and HdrHistogram's standard
//! percentile distribution (`.hgrm`), which HdrHistogram's plotting tools read.

use std::fmt::Write;

#[cfg(feature = "fs1-metrics")]
use super::HISTOGRAMS;
use super::{Hist, HistSet};

/// Counters and gauges, maintained with or without `fs1-metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Segments persisted.
    pub persisted: u64,
    /// Hot→cold transitions (freezes that succeeded).
    pub frozen: u64,
    /// Cold segments deleted.
    pub freed: u64,
    /// Freezes that failed (retried).
    pub compress_failures: u64,
    /// Persists that failed (retried).
    pub persist_failures: u64,
    /// Unlinks that failed (retried).
    pub unlink_failures: u64,
    /// fsync failures (health failed).
    pub fsync_failures: u64,
    /// ENOSPC during freezes.
    pub enospc: u64,
    /// Bytes into compression.
    pub bytes_in: u64,
    /// Bytes out of compression.
    pub bytes_out: u64,
    /// Hot segments now.
    pub hot: u64,
    /// Cold segments now.
    pub cold: u64,
    /// Writer rollovers.
    pub rollovers: u64,
    /// Writer stalls (no prepared segment).
    pub writer_stalls: u64,
    /// Sealed segments kept back because the persist ring was full.
    pub persist_ring_full: u64,
    /// 1 if the maintainer fell back to blocking system calls.
    pub fell_back_to_blocking: u64,
    /// Cold segments kept beyond the limit for readers that have not read them.
    pub held_for_readers: u64,
    /// Bytes over a disk limit with nothing left that retention may delete.
    pub budget_excess_bytes: u64,
    /// Hot segments beyond `max_segments`.
    pub hot_backlog_segments: u64,
    /// LZ4 acceleration of the latest freeze (1: none).
    pub freeze_acceleration: u64,
    /// Freezes compressed with acceleration above 1.
    pub accelerated_freezes: u64,
    /// Segments the background scrub verified in full.
    pub scrubbed_segments: u64,
    /// Bytes the scrub read.
    pub scrubbed_bytes: u64,
    /// Scrub passes over the whole log.
    pub scrub_passes: u64,
    /// Damaged segments the scrub found.
    pub scrub_corruptions: u64,
    /// Last appended sequence number.
    pub last_seq: u64,
    /// Durable sequence number.
    pub durable_seq: u64,
    /// Every record up to here is durable on the required followers (0 without replication).
    pub replicated_seq: u64,
    /// Followers connected now (0 without replication).
    pub followers_connected: u64,
    /// The archive tier's counters (all zero without an archive).
    pub archive: ArchiveCounters,
}

/// Counters and gauges of the archive tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveCounters {
    /// Segments uploaded and confirmed.
    pub uploaded: u64,
    /// Segments found already archived after a restart.
    pub already_archived: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Failed attempts (retried).
    pub failures: u64,
    /// Uploads found wrong in the store (redone).
    pub corrupt_uploads: u64,
    /// Local segments that could not be read for upload.
    pub local_errors: u64,
    /// Segments waiting for a confirmed upload (gauge).
    pub backlog: u64,
    /// Their bytes on disk (gauge).
    pub backlog_bytes: u64,
    /// Cold segments kept over the retention limit for the archive (gauge).
    pub waiting: u64,
}

/// See the module docs.
#[derive(Clone, Default)]
pub struct MetricsSnapshot {
    /// Counters and gauges.
    pub counters: Counters,
    /// Histograms (empty without `fs1-metrics`).
    pub histograms: HistSet,
}

/// (name, help, value) of every counter and gauge, for the exports.
fn counter_rows(c: &Counters) -> Vec<(&'static str, &'static str, bool, u64)> {
    let a = &c.archive;
    vec![
        (
            "wal_segments_persisted_total",
            "segments made durable and closed",
            true,
            c.persisted,
        ),
        (
            "wal_segments_frozen_total",
            "hot to cold transitions (successful compressions)",
            true,
            c.frozen,
        ),
        (
            "wal_segments_freed_total",
            "cold segments deleted by retention or request",
            true,
            c.freed,
        ),
        (
            "wal_compression_failures_total",
            "failed freezes, retried later",
            true,
            c.compress_failures,
        ),
        (
            "wal_persist_failures_total",
            "failed persists, retried later",
            true,
            c.persist_failures,
        ),
        (
            "wal_unlink_failures_total",
            "failed unlinks, retried later",
            true,
            c.unlink_failures,
        ),
        (
            "wal_fsync_failures_total",
            "fsync errors (health failed)",
            true,
            c.fsync_failures,
        ),
        (
            "wal_enospc_total",
            "disk full during a freeze",
            true,
            c.enospc,
        ),
        (
            "wal_compress_in_bytes_total",
            "bytes read into compression",
            true,
            c.bytes_in,
        ),
        (
            "wal_compress_out_bytes_total",
            "compressed bytes written",
            true,
            c.bytes_out,
        ),
        ("wal_segments_hot", "hot segments on disk", false, c.hot),
        ("wal_segments_cold", "cold segments on disk", false, c.cold),
        (
            "wal_writer_rollovers_total",
            "segment rollovers of the writer",
            true,
            c.rollovers,
        ),
        (
            "wal_writer_stalls_total",
            "rollovers that found no prepared segment",
            true,
            c.writer_stalls,
        ),
        (
            "wal_persist_ring_full_total",
            "sealed segments kept back by a full persist ring",
            true,
            c.persist_ring_full,
        ),
        (
            "wal_io_blocking_fallback",
            "1 if io_uring was unavailable and blocking calls are used",
            false,
            c.fell_back_to_blocking,
        ),
        (
            "wal_budget_excess_bytes",
            "bytes over a disk limit with only hot or unarchived segments left (degraded)",
            false,
            c.budget_excess_bytes,
        ),
        (
            "wal_hot_backlog_segments",
            "hot segments beyond max_segments (degraded beyond twice it)",
            false,
            c.hot_backlog_segments,
        ),
        (
            "wal_freeze_acceleration",
            "LZ4 acceleration of the latest freeze (1: none; raised while the hot backlog grows)",
            false,
            c.freeze_acceleration,
        ),
        (
            "wal_accelerated_freezes_total",
            "freezes compressed with LZ4 acceleration above 1",
            true,
            c.accelerated_freezes,
        ),
        (
            "wal_retention_held_for_readers_segments",
            "cold segments kept beyond the limit for readers that have not read them",
            false,
            c.held_for_readers,
        ),
        (
            "wal_scrubbed_segments_total",
            "segments the background scrub verified in full",
            true,
            c.scrubbed_segments,
        ),
        (
            "wal_scrubbed_bytes_total",
            "bytes of segment files the scrub read",
            true,
            c.scrubbed_bytes,
        ),
        (
            "wal_scrub_passes_total",
            "scrub passes over the whole log",
            true,
            c.scrub_passes,
        ),
        (
            "wal_scrub_corruptions_total",
            "damaged segments the scrub found (health degraded)",
            true,
            c.scrub_corruptions,
        ),
        (
            "wal_last_seq",
            "last appended sequence number",
            false,
            c.last_seq,
        ),
        (
            "wal_durable_seq",
            "every record up to here survives power loss",
            false,
            c.durable_seq,
        ),
        (
            "wal_replication_replicated_seq",
            "every record up to here is durable on the required followers",
            false,
            c.replicated_seq,
        ),
        (
            "wal_replication_followers_connected",
            "followers connected to this leader",
            false,
            c.followers_connected,
        ),
        (
            "wal_archive_uploaded_total",
            "segments uploaded to the archive and checked",
            true,
            a.uploaded,
        ),
        (
            "wal_archive_already_archived_total",
            "segments found already archived after a restart",
            true,
            a.already_archived,
        ),
        (
            "wal_archive_uploaded_bytes_total",
            "bytes uploaded to the archive",
            true,
            a.bytes,
        ),
        (
            "wal_archive_failures_total",
            "failed archive requests, retried",
            true,
            a.failures,
        ),
        (
            "wal_archive_corrupt_uploads_total",
            "uploads found with the wrong size or checksum in the store, redone",
            true,
            a.corrupt_uploads,
        ),
        (
            "wal_archive_local_errors_total",
            "local segments that could not be read for upload",
            true,
            a.local_errors,
        ),
        (
            "wal_archive_backlog_segments",
            "segments waiting for a confirmed upload",
            false,
            a.backlog,
        ),
        (
            "wal_archive_backlog_bytes",
            "bytes on disk of the segments waiting for upload",
            false,
            a.backlog_bytes,
        ),
        (
            "wal_archive_retention_waiting_segments",
            "cold segments kept over the retention limit until archived",
            false,
            a.waiting,
        ),
    ]
}

impl MetricsSnapshot {
    /// Prometheus text exposition format 0.0.4.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        // The archive tier's metrics exist only in builds that have it.
        let rows = counter_rows(&self.counters).into_iter();
        let rows = rows.filter(|r| cfg!(feature = "archive") || !r.0.starts_with("wal_archive_"));
        let rows =
            rows.filter(|r| cfg!(feature = "replication") || !r.0.starts_with("wal_replication_"));
        for (name, help, counter, v) in rows {
            let kind = if counter { "counter" } else { "gauge" };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        self.histograms_prometheus(&mut out);
        out
    }

    /// Percentiles of a histogram: (p50, p90, p99, p99.9, max, count); `None` without
    /// `fs1-metrics`.
    pub fn percentiles(&self, h: Hist) -> Option<[u64; 6]> {
        self.percentiles_impl(h)
    }
}

#[cfg(feature = "fs1-metrics")]
impl MetricsSnapshot {
    fn percentiles_impl(&self, h: Hist) -> Option<[u64; 6]> {
        let x = self.histograms.get(h);
        let q = |p| x.value_at_quantile(p);
        Some([q(0.5), q(0.9), q(0.99), q(0.999), x.max(), x.len()])
    }

    fn histograms_prometheus(&self, out: &mut String) {
        for (i, (key, help)) in HISTOGRAMS.iter().enumerate() {
            if i == Hist::Upload as usize && !cfg!(feature = "archive") {
                continue;
            }
            let h = &self.histograms.all()[i];
            let (name, scale) = match key.strip_suffix("_ns") {
                Some(base) => (format!("wal_{base}_seconds"), 1e-9),
                None => (format!("wal_{key}"), 1.0),
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                let v = h.value_at_quantile(q) as f64 * scale;
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v:e}");
            }
            // An empty histogram's mean is NaN; its sum is 0.
            let sum = match h.len() {
                0 => 0.0,
                n => h.mean() * n as f64 * scale,
            };
            let _ = writeln!(out, "{name}_sum {sum:e}\n{name}_count {}", h.len());
        }
    }

    /// HdrHistogram's percentile distribution of `h`, values divided by `unit_ratio` (for
    /// example 1000.0 for microseconds), as `outputPercentileDistribution` prints it.
    pub fn to_hgrm(&self, h: Hist, unit_ratio: f64) -> String {
        let x = self.histograms.get(h);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for v in x.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
            x.mean() / unit_ratio,
            x.stdev() / unit_ratio
        );
        let _ = writeln!(
            out,
            "#[Max     = {:12.3}, Total count    = {:12}]",
            x.max() as f64 / unit_ratio,
            x.len()
        );
        // HdrHistogram's sub-bucket count: 2 x 10^digits rounded up to a power of two.
        let sub_buckets = (2 * 10u64.pow(u32::from(x.sigfig()))).next_power_of_two();
        let _ = writeln!(
            out,
            "#[Buckets = {:12}, SubBuckets     = {:12}]",
            x.buckets(),
            sub_buckets
        );
        out
    }
}

#[cfg(not(feature = "fs1-metrics"))]
impl MetricsSnapshot {
    fn percentiles_impl(&self, _: Hist) -> Option<[u64; 6]> {
        None
    }

    fn histograms_prometheus(&self, _: &mut String) {}
}
