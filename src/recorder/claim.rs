//! Zero-copy appends in two calls: [`Recorder::try_claim`] reserves a record's payload in
//! the active segment and [`Recorder::commit`] publishes it. This is
//! [`Recorder::append_with`] split where a closure cannot reach (a C or Python caller, or a
//! decoder that fills the payload over several calls), as Aeron's `tryClaim` and
//! `BufferClaim::commit`.

use super::{append_error, Recorder};
use crate::error::{Error, Result};

/// The reserved record: where it starts, to check at commit that nothing moved it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimed {
    len: usize,
    segment: u64,
    offset: u64,
}

impl Recorder {
    /// Reserves a record of `len` payload bytes in the active segment and returns them to be
    /// filled in place; [`Self::commit`] publishes the record, until then readers do not
    /// see it. No system call, as with [`Self::append`] (a rollover here takes the next
    /// prepared segment, and waits for one as an append does when the maintainer is behind).
    ///
    /// One claim at a time: a second `try_claim`, an append, [`Self::abort_claim`] or a close
    /// abandons the open claim, and its bytes are zeroed.
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<&mut [u8]> {
        self.make_room(len)?;
        let w = self
            .active
            .as_mut()
            .expect("make_room leaves an active segment");
        let claimed = Claimed {
            len,
            segment: w.header().index,
            offset: w.used_len(),
        };
        let payload = match w.claim(len) {
            Ok(p) => p.as_mut_ptr(),
            Err(e) => return Err(append_error(w, e, len)),
        };
        self.claim = Some(claimed);
        // SAFETY: `payload` is the `len` bytes `claim` just returned, inside the active
        // segment's mapping, which stays mapped while it is active; the returned slice
        // borrows `self` mutably, so no call that could roll over, close or write there
        // runs while it lives.
        Ok(unsafe { std::slice::from_raw_parts_mut(payload, len) })
    }

    /// Publishes the claimed record with the bytes written into it since
    /// [`Self::try_claim`]; returns its sequence number. A log with time stamps it now.
    #[inline]
    pub fn commit(&mut self) -> Result<u64> {
        self.commit_with_time(None)
    }

    /// [`Self::commit`] with the caller's own time (see [`Self::append_at`]).
    #[inline]
    pub fn commit_at(&mut self, time_ns: u64) -> Result<u64> {
        self.commit_with_time(Some(time_ns))
    }

    /// Abandons the open claim, if any: its bytes are zeroed and no record is written.
    #[inline]
    pub fn abort_claim(&mut self) {
        if let Some(c) = self.claim.take() {
            self.clear_claimed(c);
        }
    }

    #[inline]
    fn commit_with_time(&mut self, time_ns: Option<u64>) -> Result<u64> {
        let Some(c) = self.claim.take() else {
            return Err(Error::NoClaim(self.dir.clone()));
        };
        if self.maintainer.stats().is_failed() {
            self.clear_claimed(c);
            return Err(self.failed_error());
        }
        let w = self.active.as_ref().expect("a claim is abandoned at close");
        // Every path that moves the write position abandons the claim first; committing
        // at another place would publish zeros in place of the caller's bytes.
        assert!(
            w.header().index == c.segment && w.used_len() == c.offset,
            "a claim moved: segment {} offset {} claimed, now segment {} offset {}",
            c.segment,
            c.offset,
            w.header().index,
            w.used_len()
        );
        // The payload is in place: the fill leaves it as the caller wrote it.
        self.write_frame(time_ns, c.len, |_| {})
    }

    /// Zeroes an abandoned claim's bytes: a shorter record written next must not leave the
    /// caller's bytes where the record after it starts.
    #[cold]
    fn clear_claimed(&mut self, c: Claimed) {
        if let Some(w) = self.active.as_mut() {
            if w.header().index == c.segment && w.used_len() == c.offset {
                w.clear_claim(c.len);
            }
        }
    }
}
