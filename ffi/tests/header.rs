//! The checked-in header is what cbindgen makes of the sources now (CI fails when it is
//! stale: regenerate with `WAL_BLESS_HEADER=1 cargo test -p wal-recorder-ffi --test header`).

#[test]
fn the_checked_in_header_is_fresh() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads ffi/src")
        .write(&mut generated);
    let path = format!("{crate_dir}/include/wal_recorder.h");
    if std::env::var_os("WAL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{path} is stale: run WAL_BLESS_HEADER=1 cargo test -p wal-recorder-ffi --test header"
    );
}
