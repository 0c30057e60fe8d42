//! A fixed, allocation-free log-linear latency histogram for `walctl record`: 128 linear
//! sub-buckets per power of two (under 1 % error), so recording is an index and an add. The
//! library's HDR histograms live behind `fs1-metrics`; walctl keeps its own so the default
//! build links no hdrhistogram.

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Self {
        // A zeroed box may be fresh, untouched pages (calloc): write every bucket once so
        // recording never page-faults the writer.
        let mut counts = Box::new([0; BUCKETS]);
        for c in counts.iter_mut() {
            // SAFETY: a valid, aligned reference; volatile only so the store is not elided.
            unsafe { std::ptr::write_volatile(c, 0) };
        }
        Histogram {
            counts,
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() - SUB_BITS + 1; // v >> exp is in SUB/2..SUB
        let sub = (v >> exp) as usize;
        exp as usize * SUB / 2 + sub + SUB / 2
    }

    fn value_at(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let j = i - SUB / 2;
        let exp = j / (SUB / 2) - 1;
        let sub = j % (SUB / 2) + SUB / 2;
        // Upper end of the bucket: a percentile never under-reports.
        (((sub + 1) as u64) << exp) - 1
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value_at(i).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q {q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.quantile(1.0), 100_000);
    }
}
