//! `Hasher`, `hash_buffers` and `HASH_ALGORITHMS`: hashing many buffers with the GIL released.
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ferroflow_core::hash::{self, HashAlgorithm};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::codecs::InputBuffer;
use crate::errors::to_pyerr;
use crate::gil::{detach_if_large, DETACH_FROM};

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

    /// Runs `work` (on `len` bytes) on the state: with the GIL held when the work is small and no
    /// other thread has the state, otherwise with the GIL released, waiting for its turn if needed.
    fn with_state<R: Send>(
        &self,
        py: Python<'_>,
        len: usize,
        work: impl FnOnce(&mut hash::Hasher) -> R + Send,
    ) -> R {
        if len < DETACH_FROM {
            match self.state.try_lock() {
                Ok(mut state) => return work(&mut state),
                Err(TryLockError::Poisoned(poisoned)) => return work(&mut poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        py.detach(|| work(&mut lock(&self.state)))
    }
}

/// No code path panics while holding the lock, but a poisoned state would still be whole: use it.
fn lock(state: &Mutex<hash::Hasher>) -> MutexGuard<'_, hash::Hasher> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn buffers_of<'py>(iterable: &Bound<'py, PyAny>) -> PyResult<Vec<InputBuffer<'py>>> {
    iterable
        .try_iter()?
        .map(|item| InputBuffer::get(&item?))
        .collect()
}

fn total_len(slices: &[&[u8]]) -> usize {
    slices.iter().map(|bytes| bytes.len()).sum()
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (algorithm="blake3"))]
    fn new(algorithm: &str) -> PyResult<Self> {
        let algorithm = HashAlgorithm::from_name(algorithm).map_err(to_pyerr)?;
        Ok(Hasher::from_state(hash::Hasher::new(algorithm)))
    }

    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let input = InputBuffer::get(data)?;
        let bytes = input.as_bytes();
        self.with_state(py, bytes.len(), |state| state.update(bytes));
        Ok(())
    }

    /// Hashes each buffer of the iterable in turn, as if they were concatenated.
    fn update_many(&self, py: Python<'_>, buffers: &Bound<'_, PyAny>) -> PyResult<()> {
        let inputs = buffers_of(buffers)?;
        let slices: Vec<&[u8]> = inputs.iter().map(InputBuffer::as_bytes).collect();
        self.with_state(py, total_len(&slices), |state| {
            slices.iter().for_each(|bytes| state.update(bytes))
        });
        Ok(())
    }

    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let digest = self.with_state(py, 0, |state| state.digest());
        PyBytes::new(py, &digest)
    }

    fn hexdigest(&self, py: Python<'_>) -> String {
        self.with_state(py, 0, |state| state.hexdigest())
    }

    /// An independent hasher that continues from this one's current state.
    fn copy(&self, py: Python<'_>) -> Self {
        Hasher::from_state(self.with_state(py, 0, |state| state.clone()))
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
pub fn hash_buffers(
    py: Python<'_>,
    buffers: &Bound<'_, PyAny>,
    algorithm: &str,
) -> PyResult<String> {
    let algorithm = HashAlgorithm::from_name(algorithm).map_err(to_pyerr)?;
    let inputs = buffers_of(buffers)?;
    let slices: Vec<&[u8]> = inputs.iter().map(InputBuffer::as_bytes).collect();
    let len = total_len(&slices);
    Ok(detach_if_large(py, len, || {
        hash::hash_buffers(algorithm, slices)
    }))
}
