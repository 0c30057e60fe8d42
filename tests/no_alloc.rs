//! Contract 6: `Recorder::append` makes no heap allocation in steady state, rollovers into a
//! prepared segment included. A counting global allocator counts the allocations of the
//! writer's thread (the test's) while it appends through several rollovers, in both write
//! paths; the maintainer's thread is not counted (it may allocate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wal_recorder::config::{Config, WritePath};
use wal_recorder::event;
use wal_recorder::recorder::Recorder;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn appends_allocate_nothing(path: WritePath) {
    // The counter counts: an allocation on this thread while counted is seen.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    let boxed = std::hint::black_box(Box::new(7u64));
    COUNTED.with(|c| c.set(false));
    drop(boxed);
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > before,
        "the counting allocator is not in use"
    );
    let dir = tempfile::tempdir().unwrap();
    let staging = tempfile::Builder::new()
        .prefix("walrec-test-")
        .tempdir_in("/dev/shm")
        .expect("this test needs a tmpfs at /dev/shm");
    let mut c = Config::new(dir.path());
    c.segment_size = 256 * 1024;
    c.write_path = path;
    c.staging_dir = staging.path().to_path_buf();
    c.staging_buffers = 8;
    c.prepared_segments = 4;
    c.max_segments = 100;
    c.scrub_rate = None;
    let mut rec = Recorder::open(dir.path(), c).unwrap();
    let per_segment =
        wal_recorder::segment::format::Framing::Plain.records_per_segment(256 * 1024, 64);
    // Warm up: the first appends and rollover may size what steady state reuses.
    let mut seq = 0;
    let mut append = |rec: &mut Recorder, n: u64, counted: bool| {
        for _ in 0..n {
            seq += 1;
            // Before a rollover the next segment must be prepared (contract 6's condition);
            // waiting for it is not counted.
            if seq % per_segment == 1 && seq > 1 {
                while rec.prepared_ready() == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            COUNTED.with(|c| c.set(counted));
            let s = rec.append_with(64, |b| event::fill(seq, b));
            COUNTED.with(|c| c.set(false));
            assert_eq!(s.unwrap(), seq);
        }
    };
    append(&mut rec, per_segment + 10, false);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    append(&mut rec, 5 * per_segment, true);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let rollovers = rec.writer_stats().rollovers;
    rec.close().unwrap();
    assert!(rollovers >= 5, "{path:?}: only {rollovers} rollovers");
    assert_eq!(
        allocations, 0,
        "{path:?}: appends allocated {allocations} times"
    );
}

#[test]
fn staged_appends_and_rollovers_allocate_nothing() {
    appends_allocate_nothing(WritePath::Staged);
}

#[test]
fn direct_appends_and_rollovers_allocate_nothing() {
    appends_allocate_nothing(WritePath::Direct);
}
