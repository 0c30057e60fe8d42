//! `walctl record` as contract 8 describes it.

mod common;

use common::walctl;

fn record(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    walctl()
        .arg("record")
        .arg(dir)
        .args([
            "--segment-size",
            "262144",
            "--max-segments",
            "2",
            "--max-compressed",
            "3",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn record_json_reports_throughput_latency_work_and_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log"); // created by walctl
    let out = record(&log, &["--records", "200000", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 200_000);
    assert_eq!(
        (v["first_seq"].as_u64(), v["last_seq"].as_u64()),
        (Some(1), Some(200_000))
    );
    assert_eq!(v["durable_seq"], 200_000);
    let (rate, secs) = (
        v["records_per_sec"].as_f64().unwrap(),
        v["seconds"].as_f64().unwrap(),
    );
    assert!(
        (rate * secs - 200_000.0).abs() < 200.0,
        "{rate} records/s over {secs} s"
    );
    let l = &v["latency_ns"];
    let p: Vec<u64> = ["p50", "p99", "p999", "p9999", "max"]
        .iter()
        .map(|k| l[k].as_u64().unwrap())
        .collect();
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {p:?}"
    );
    let m = &v["maintainer"];
    let persisted = m["persisted"].as_u64().unwrap();
    assert!(persisted >= 60, "{m}");
    assert_eq!(m["frozen"].as_u64().unwrap(), persisted - 2);
    assert_eq!(m["freed"].as_u64().unwrap(), persisted - 5);
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.5, "{v}");

    let out = walctl()
        .arg("verify")
        .arg(&log)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["last_seq"], 200_000);
    assert_eq!((r["hot"].as_u64(), r["cold"].as_u64()), (Some(2), Some(3)));

    let out = walctl()
        .arg("stats")
        .arg(&log)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (st["hot_segments"].as_u64(), st["cold_segments"].as_u64()),
        (Some(2), Some(3))
    );
    let content = st["cold_uncompressed_bytes"].as_u64().unwrap();
    assert!((3 * 260_000..=3 * 262_144).contains(&content), "{st}");
    assert!(st["compression_ratio"].as_f64().unwrap() > 1.5, "{st}");
    assert_eq!(st["last_seq"], 200_000);
}

#[test]
fn record_on_an_existing_log_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    assert!(record(dir.path(), &["--records", "5000"]).status.success());
    let out = record(dir.path(), &["--records", "5000", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["first_seq"].as_u64(), v["last_seq"].as_u64()),
        (Some(5001), Some(10_000))
    );
    let out = walctl()
        .arg("cat")
        .arg(dir.path())
        .args(["--from", "5000", "--to", "5001"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("5000 64 ") && text.contains("\n5001 64 "),
        "{text}"
    );
}

#[test]
fn progress_lines_report_appended_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), &["--records", "300000", "--progress"]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines = common::progress_lines(&err);
    assert!(!lines.is_empty(), "{err}");
    assert!(lines.iter().all(|(a, d)| d <= a));
    assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(*lines.last().unwrap(), (300_000, 300_000));
}

#[test]
fn record_bad_usage_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), &["--records", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let out = walctl().args(["record", "/dev/null/x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/null/x"));
}

/// A disk that fills: `walctl record` stops appending, still closes the log and reports
/// (with `--json`, one object with the error and the last `durable_seq`), and exits 1; every
/// record up to that `durable_seq` verifies.
#[test]
fn record_on_a_disk_that_fills_reports_the_error_and_exits_1() {
    let fs = common::SmallTmpfs::mount(6 << 20);
    let dir = fs.path().join("log");
    let out = walctl()
        .arg("record")
        .arg(&dir)
        .args(["--records", "5000000", "--segment-size", "1048576"])
        .args(["--max-segments", "100", "--max-compressed", "100", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let error = v["error"].as_str().expect("an error field");
    assert!(!error.is_empty());
    let durable = v["durable_seq"].as_u64().unwrap();
    assert!(durable > 0, "{v}");
    assert!(v["records"].as_u64().unwrap() < 5_000_000);
    let r = wal_recorder::logdir::verify(&dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert!(r.last_seq.unwrap() >= durable);
}
