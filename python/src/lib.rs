//! `wal_recorder._native`: the pyo3 classes behind the `wal_recorder` Python package
//! (python/wal_recorder/__init__.py re-exports them and adds the NumPy helpers).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wal_recorder::logdir::{StartAt, Visibility};

pyo3::create_exception!(
    _native,
    WalError,
    PyException,
    "A wal-recorder error; the message is the library's (it names the file)."
);

fn to_py(e: wal_recorder::Error) -> PyErr {
    WalError::new_err(e.to_string())
}

/// One record as Python sees it: (seq, log_time_ns or None, payload).
type PyRecord = (u64, Option<u64>, Py<PyBytes>);

fn record(py: Python<'_>, info: wal_recorder::segment::RecordInfo, payload: &[u8]) -> PyRecord {
    (info.seq, info.time, PyBytes::new(py, payload).unbind())
}

/// A time as nanoseconds since the Unix epoch: an int, or a string as `walctl cat --since`
/// takes it (RFC 3339, e.g. "2026-12-03T09:30:00.250Z").
fn time_ns(t: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(ns) = t.extract::<u64>() {
        return Ok(ns);
    }
    let s: String = t.extract()?;
    wal_recorder::logdir::parse_log_time(&s).map_err(WalError::new_err)
}

/// Appends records to a log (the writer: one thread at a time).
#[pyclass(unsendable, module = "wal_recorder")]
struct Recorder {
    rec: Option<wal_recorder::Recorder>,
}

impl Recorder {
    fn open(&mut self) -> PyResult<&mut wal_recorder::Recorder> {
        self.rec
            .as_mut()
            .ok_or_else(|| WalError::new_err("the recorder is closed"))
    }
}

#[pymethods]
impl Recorder {
    /// Opens (creating or recovering) the log in `dir`.
    #[new]
    #[pyo3(signature = (dir, *, segment_size=None, max_segments=None, max_compressed_segments=None, staging_dir=None, record_time=None))]
    fn new(
        dir: PathBuf,
        segment_size: Option<u64>,
        max_segments: Option<usize>,
        max_compressed_segments: Option<usize>,
        staging_dir: Option<PathBuf>,
        record_time: Option<bool>,
    ) -> PyResult<Self> {
        let mut c = wal_recorder::Config::new(&dir);
        if let Some(v) = segment_size {
            c.segment_size = v;
        }
        if let Some(v) = max_segments {
            c.max_segments = v;
        }
        if let Some(v) = max_compressed_segments {
            c.max_compressed_segments = v;
        }
        if let Some(v) = staging_dir {
            c.staging_dir = v;
        }
        if let Some(v) = record_time {
            c.record_time = v;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| to_py(wal_recorder::Error::io("create", &dir, e)))?;
        let rec = wal_recorder::Recorder::open(&dir, c).map_err(to_py)?;
        Ok(Recorder { rec: Some(rec) })
    }

    /// Appends one record; returns its sequence number.
    fn append(&mut self, payload: &[u8]) -> PyResult<u64> {
        self.open()?.append(payload).map_err(to_py)
    }

    /// Appends one record with its time (nanoseconds since the Unix epoch).
    fn append_at(&mut self, payload: &[u8], time_ns: u64) -> PyResult<u64> {
        self.open()?.append_at(time_ns, payload).map_err(to_py)
    }

    /// Returns once every record appended so far is durable.
    fn sync(&mut self) -> PyResult<()> {
        self.open()?.sync().map_err(to_py)
    }

    /// Every record up to this survives power loss.
    #[getter]
    fn durable_seq(&self) -> u64 {
        self.rec.as_ref().map_or(0, |r| r.durable_seq())
    }

    /// The last sequence number appended.
    #[getter]
    fn last_seq(&self) -> u64 {
        self.rec.as_ref().map_or(0, |r| r.last_seq())
    }

    /// Persists everything and closes (a second close does nothing).
    fn close(&mut self) -> PyResult<()> {
        match self.rec.take() {
            Some(r) => r.close().map_err(to_py),
            None => Ok(()),
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }
}

/// Iterates over a log's records in order: (seq, log_time_ns or None, payload).
#[pyclass(unsendable, module = "wal_recorder")]
struct Reader {
    reader: wal_recorder::LogReader,
    until: Option<u64>,
    payload: Vec<u8>,
}

#[pymethods]
impl Reader {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRecord>> {
        let Some(info) = self.reader.next_record(&mut self.payload).map_err(to_py)? else {
            return Ok(None);
        };
        if let (Some(until), Some(t)) = (self.until, info.time) {
            if t > until {
                return Ok(None);
            }
        }
        Ok(Some(record(py, info, &self.payload)))
    }
}

/// The records of the log in `dir` from sequence number `from_seq` (or the first at or after
/// the time `since`: nanoseconds or an RFC 3339 string) up to the time `until`.
#[pyfunction]
#[pyo3(signature = (dir, from_seq=None, since=None, until=None))]
fn read(
    dir: PathBuf,
    from_seq: Option<u64>,
    since: Option<&Bound<'_, PyAny>>,
    until: Option<&Bound<'_, PyAny>>,
) -> PyResult<Reader> {
    let reader = match (from_seq, since) {
        (Some(_), Some(_)) => return Err(WalError::new_err("give from_seq or since, not both")),
        (Some(seq), None) => wal_recorder::LogReader::open_at(&dir, seq),
        (None, Some(t)) => wal_recorder::LogReader::open_at_time_ns(&dir, time_ns(t)?),
        (None, None) => wal_recorder::LogReader::open_dir(&dir),
    }
    .map_err(to_py)?;
    Ok(Reader {
        reader,
        until: until.map(time_ns).transpose()?,
        payload: Vec::new(),
    })
}

/// The first `width` bytes of each record's payload from `from_seq` (or the first) on, at
/// most `limit` records, back to back in one bytes object (what `numpy.frombuffer` maps
/// without another copy); shorter payloads are padded with zeros.
#[pyfunction]
#[pyo3(signature = (dir, width, from_seq=None, limit=None))]
fn read_fixed<'py>(
    py: Python<'py>,
    dir: PathBuf,
    width: usize,
    from_seq: Option<u64>,
    limit: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut r = match from_seq {
        Some(seq) => wal_recorder::LogReader::open_at(&dir, seq),
        None => wal_recorder::LogReader::open_dir(&dir),
    }
    .map_err(to_py)?;
    let mut out = Vec::new();
    let mut payload = Vec::new();
    let mut n = 0;
    while limit.is_none_or(|l| n < l) {
        if r.next_record(&mut payload).map_err(to_py)?.is_none() {
            break;
        }
        let take = payload.len().min(width);
        out.extend_from_slice(&payload[..take]);
        out.resize(out.len() + width - take, 0);
        n += 1;
    }
    Ok(PyBytes::new(py, &out))
}

/// Follows a live log written by a recorder in this or another process.
#[pyclass(unsendable, module = "wal_recorder")]
struct Tailer {
    tailer: wal_recorder::Tailer,
    payload: Vec<u8>,
}

#[pymethods]
impl Tailer {
    /// `start`: "first", "end", a sequence number, or None (with a `name`: where that reader
    /// last committed; without: "first"). `durable`: deliver only records that are durable.
    #[new]
    #[pyo3(signature = (dir, name=None, start=None, staging_dir=None, durable=false))]
    fn new(
        dir: PathBuf,
        name: Option<String>,
        start: Option<&Bound<'_, PyAny>>,
        staging_dir: Option<PathBuf>,
        durable: bool,
    ) -> PyResult<Self> {
        let start = match start {
            None => None,
            Some(s) => Some(match s.extract::<u64>() {
                Ok(seq) => StartAt::Seq(seq),
                Err(_) => match s.extract::<String>()?.as_str() {
                    "first" => StartAt::First,
                    "end" => StartAt::End,
                    other => {
                        return Err(WalError::new_err(format!(
                            "start {other:?}: use \"first\", \"end\" or a sequence number"
                        )))
                    }
                },
            }),
        };
        let tailer = match (&name, start) {
            (Some(n), None) => wal_recorder::Tailer::resume(&dir, n),
            (Some(n), Some(s)) => {
                wal_recorder::Tailer::open(&dir, s).and_then(|t| t.with_position(n))
            }
            (None, s) => wal_recorder::Tailer::open(&dir, s.unwrap_or(StartAt::First)),
        }
        .map_err(to_py)?;
        let staging = staging_dir
            .unwrap_or_else(|| PathBuf::from(wal_recorder::constants::DEFAULT_STAGING_DIR));
        let tailer = tailer
            .with_staging_dir(Some(&staging))
            .with_visibility(match durable {
                true => Visibility::Durable,
                false => Visibility::Committed,
            });
        Ok(Tailer {
            tailer,
            payload: Vec::new(),
        })
    }

    /// The next record if one is there now, else None.
    fn poll(&mut self, py: Python<'_>) -> PyResult<Option<PyRecord>> {
        let info = self.tailer.poll(&mut self.payload).map_err(to_py)?;
        Ok(info.map(|i| record(py, i, &self.payload)))
    }

    /// The next record, waiting at most `timeout` seconds (None: until one comes; Ctrl-C
    /// interrupts); None when the time ran out.
    #[pyo3(signature = (timeout=None))]
    fn next(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyRecord>> {
        let until =
            timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let slice = match until {
                Some(u) => u
                    .saturating_duration_since(std::time::Instant::now())
                    .min(Duration::from_millis(50)),
                None => Duration::from_millis(50),
            };
            if let Some(info) = self
                .tailer
                .next_timeout(&mut self.payload, slice)
                .map_err(to_py)?
            {
                return Ok(Some(record(py, info, &self.payload)));
            }
            py.check_signals()?;
            if until.is_some_and(|u| std::time::Instant::now() >= u) {
                return Ok(None);
            }
        }
    }

    /// Saves a named tailer's position: everything returned so far is read.
    fn commit(&mut self) -> PyResult<()> {
        self.tailer.commit().map_err(to_py)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iterating follows the log: each step waits for the next record.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRecord>> {
        self.next(py, None)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("WalError", m.py().get_type::<WalError>())?;
    m.add_class::<Recorder>()?;
    m.add_class::<Reader>()?;
    m.add_class::<Tailer>()?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(read_fixed, m)?)?;
    Ok(())
}
