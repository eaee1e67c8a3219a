//! `Hasher`, `hash_buffers` and `HASH_ALGORITHMS`: hashing many buffers without joining them.
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ferroflow_core::hash::{self, HashAlgorithm};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{slices, work_on, InputBuffer};
use crate::errors::Result;
use crate::gil::{self, Work};

pub const HASH_ALGORITHMS: (&str, &str, &str) = (
    HashAlgorithm::Blake3.name(),
    HashAlgorithm::Xxh3_64.name(),
    HashAlgorithm::Xxh3_128.name(),
);

/// An incremental hash over any number of bytes-like objects.
///
/// Safe to share between threads: calls take turns on an internal lock, waited for with the GIL
/// released, so concurrent `update`s never fail and never block other Python threads.
#[pyclass(frozen, module = "ferroflow._core")]
pub struct Hasher {
    algorithm: HashAlgorithm,
    state: Mutex<hash::Hasher>,
}

impl Hasher {
    fn from_state(state: hash::Hasher) -> Self {
        Hasher {
            algorithm: state.algorithm(),
            state: Mutex::new(state),
        }
    }

    /// Runs `job`, which does `work`, on the state: with the GIL held when the work is small and
    /// no other thread has the state, otherwise with the GIL released, waiting for its turn if
    /// needed.
    fn with_state<R: Send>(
        &self,
        py: Python<'_>,
        work: Work,
        job: impl FnOnce(&mut hash::Hasher) -> R + Send,
    ) -> R {
        if !work.releases_gil() {
            match self.state.try_lock() {
                Ok(mut state) => return job(&mut state),
                Err(TryLockError::Poisoned(poisoned)) => return job(&mut poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        // Large work releases the GIL anyway; small work gets here only when another thread has
        // the state, and waiting for it must not stop every Python thread.
        gil::run(py, Work::Blocking, || job(&mut lock(&self.state)))
    }
}

/// Finishing or copying a state: no input bytes, and a state is a few KiB at most.
const STATE_ONLY: Work = Work::Bytes(0);

/// No code path panics while holding the lock, but a poisoned state would still be whole: use it.
fn lock(state: &Mutex<hash::Hasher>) -> MutexGuard<'_, hash::Hasher> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (algorithm="blake3"))]
    fn new(algorithm: &str) -> Result<Self> {
        let algorithm = HashAlgorithm::from_name(algorithm)?;
        Ok(Hasher::from_state(hash::Hasher::new(algorithm)))
    }

    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let input = InputBuffer::borrow(data, "data")?;
        let bytes = input.as_bytes();
        self.with_state(py, Work::Bytes(bytes.len()), |state| state.update(bytes));
        Ok(())
    }

    /// Hashes each buffer of the iterable in turn, as if they were concatenated.
    fn update_many(&self, py: Python<'_>, buffers: &Bound<'_, PyAny>) -> PyResult<()> {
        let inputs = InputBuffer::borrow_each(buffers, "buffers", "buffer")?;
        let slices = slices(&inputs);
        self.with_state(py, work_on(&slices), |state| {
            slices.iter().for_each(|bytes| state.update(bytes))
        });
        Ok(())
    }

    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let digest = self.with_state(py, STATE_ONLY, |state| state.digest());
        PyBytes::new(py, &digest)
    }

    fn hexdigest(&self, py: Python<'_>) -> String {
        self.with_state(py, STATE_ONLY, |state| state.hexdigest())
    }

    /// An independent hasher that continues from this one's current state.
    fn copy(&self, py: Python<'_>) -> Self {
        Hasher::from_state(self.with_state(py, STATE_ONLY, |state| state.clone()))
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.algorithm.name()
    }

    /// Length of the digest in bytes.
    #[getter]
    fn digest_size(&self) -> usize {
        self.algorithm.digest_size()
    }

    fn __repr__(&self) -> String {
        format!("Hasher(algorithm={:?})", self.algorithm.name())
    }
}

/// The hex digest of the concatenation of the buffers, without joining them.
#[pyfunction]
#[pyo3(signature = (buffers, algorithm="blake3"))]
pub fn hash_buffers(py: Python<'_>, buffers: &Bound<'_, PyAny>, algorithm: &str) -> Result<String> {
    let algorithm = HashAlgorithm::from_name(algorithm)?;
    let inputs = InputBuffer::borrow_each(buffers, "buffers", "buffer")?;
    let slices = slices(&inputs);
    Ok(gil::run(py, work_on(&slices), || {
        hash::hash_buffers(algorithm, slices)
    }))
}
