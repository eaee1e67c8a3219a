//! When the binding releases the GIL: every call that does byte work or waits on the system
//! describes it as a [`Work`] and runs it through [`run`], so the decision is made here alone.
//!
//! Releasing the GIL lets other Python threads run during long work, but giving it up and taking
//! it back is a hand-off that, when another thread is waiting for it, costs tens of
//! microseconds: more than small jobs take.
use pyo3::Python;

/// From this many bytes of work on, the binding releases the GIL; below, it keeps it.
pub(crate) const DETACH_FROM: usize = 64 << 10;

/// What a call is about to do outside Python, as far as the GIL is concerned.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Work {
    /// Work whose time is bounded by this many bytes: hashing, checksums, copies, decoding into
    /// an output of known length, reading a file that is already open and sized (a result file
    /// is usually in the page cache).
    Bytes(usize),
    /// Compressing: an encoder's set-up alone (lzma's and bz2's match tables fill MiBs) can take
    /// milliseconds, whatever the input's length.
    Compressing,
    /// Decompressing into an output of unknown length: a few bytes can decode to gigabytes.
    DecompressingUnbounded,
    /// Calls that can wait for any length of time: opening, creating, renaming, syncing or
    /// mapping a file (a network file system, a FIFO, a busy disk), or taking a lock that
    /// another thread holds.
    Blocking,
}

impl Work {
    /// Byte work over pieces of these lengths.
    pub(crate) fn bytes_of(lengths: impl IntoIterator<Item = usize>) -> Work {
        Work::Bytes(lengths.into_iter().fold(0, usize::saturating_add))
    }

    /// The binding's one decision on the GIL.
    pub(crate) fn releases_gil(self) -> bool {
        match self {
            Work::Bytes(bytes) => bytes >= DETACH_FROM,
            Work::Compressing | Work::DecompressingUnbounded | Work::Blocking => true,
        }
    }
}

/// Runs `job`, which does `work`, with the GIL released when [`Work::releases_gil`] says so.
pub(crate) fn run<T: Send>(py: Python<'_>, work: Work, job: impl FnOnce() -> T + Send) -> T {
    if work.releases_gil() {
        py.detach(job)
    } else {
        job()
    }
}
