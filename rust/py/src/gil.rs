//! When the binding releases the GIL. Releasing it lets other Python threads run during long
//! byte work, but giving it up and taking it back is a hand-off that, when another thread is
//! waiting for it, costs tens of microseconds: more than small jobs take.
use pyo3::prelude::*;

/// From this many bytes of work on, the binding releases the GIL; below, it keeps it.
pub(crate) const DETACH_FROM: usize = 64 << 10;

/// Runs `work` with the GIL released if it handles at least [`DETACH_FROM`] bytes.
pub(crate) fn detach_if_large<T: Send>(
    py: Python<'_>,
    bytes: usize,
    work: impl FnOnce() -> T + Send,
) -> T {
    if bytes < DETACH_FROM {
        work()
    } else {
        py.detach(work)
    }
}
