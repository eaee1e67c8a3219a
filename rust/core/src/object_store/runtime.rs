//! The one tokio runtime that drives every object store request of the process.
//!
//! Created on first use with [`WORKER_THREADS`] worker threads: the work is waiting on the
//! network, and the calling threads themselves poll the futures they block on, so a few threads
//! serve any number of callers. It is never shut down (its threads end with the process).
//!
//! A forked child has none of its parent's threads, so a runtime inherited through `fork` can
//! never run anything. The runtime is therefore kept per process id: the first use in a child
//! starts a new one, and the parent's copy is left untouched (dropping it would wait on threads
//! that do not exist in the child).
use crate::error::{Error, Result};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use tokio::runtime::{Builder, Handle, Runtime};

const WORKER_THREADS: usize = 2;

struct ProcessRuntime {
    pid: u32,
    runtime: &'static Runtime,
}

static RUNTIME: Mutex<Option<ProcessRuntime>> = Mutex::new(None);

/// The runtime of this process, started on first use.
pub(super) fn runtime() -> Result<&'static Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(current) = slot.as_ref().filter(|current| current.pid == pid) {
        return Ok(current.runtime);
    }
    let runtime = Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("ferroflow-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the object store's I/O threads", e))?;
    // Leaked on purpose: callers hold `&'static` references, and a parent's runtime must never
    // be dropped in a forked child (see the module documentation).
    let runtime: &'static Runtime = Box::leak(Box::new(runtime));
    *slot = Some(ProcessRuntime { pid, runtime });
    Ok(runtime)
}

/// Runs `future` to completion on the calling thread, with the runtime's I/O behind it.
pub(super) fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(blocking_runtime()?.block_on(future))
}

/// The runtime, for a caller about to block on it: refused inside async code, where tokio would
/// panic, as a blocking call there would stall its executor.
pub(super) fn blocking_runtime() -> Result<&'static Runtime> {
    if Handle::try_current().is_ok() {
        return Err(Error::InvalidArgument(
            "ferroflow's object store calls block; call them from a plain thread, not from async \
             code running on a tokio runtime (use spawn_blocking or a thread pool)"
                .into(),
        ));
    }
    runtime()
}
