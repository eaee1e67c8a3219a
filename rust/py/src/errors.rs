//! The binding's one error type and its one conversion to a Python exception.
//!
//! A binding function returns [`Result`], so `?` takes both the core's errors and Python's
//! (`PyErr`); PyO3 turns the error into an exception through `From<Error> for PyErr`. The wrapper
//! exists because Rust's orphan rule forbids `From<ferroflow_core::Error> for PyErr` here: both
//! types belong to other crates.
use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyOSError, PyValueError};
use pyo3::{PyErr, Python};

// Defined in Python (`ferroflow/exceptions.py`) under `FerroflowException`; imported on first use.
pyo3::import_exception!(ferroflow.exceptions, CorruptResultError);
pyo3::import_exception!(ferroflow.exceptions, UnsupportedFormatError);
pyo3::import_exception!(ferroflow.exceptions, UntrustedResultError);
pyo3::import_exception!(ferroflow.exceptions, UnsafeKeyError);
pyo3::import_exception!(ferroflow.exceptions, BucketNotFoundError);
pyo3::import_exception!(ferroflow.exceptions, StoragePermissionError);
pyo3::import_exception!(ferroflow.exceptions, StorageUnavailableError);

/// The exceptions that `ferroflow.exceptions` defines and `ferroflow._core` raises.
pub(crate) const EXCEPTION_NAMES: [&str; 7] = [
    "CorruptResultError",
    "UntrustedResultError",
    "UnsupportedFormatError",
    "UnsafeKeyError",
    "BucketNotFoundError",
    "StoragePermissionError",
    "StorageUnavailableError",
];

#[derive(Debug)]
pub(crate) enum Error {
    Core(ferroflow_core::Error),
    Python(PyErr),
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An allocation failed, in the core or in Python: the caller may retry with less memory.
    pub(crate) fn is_out_of_memory(&self, py: Python<'_>) -> bool {
        match self {
            Error::Core(error) => matches!(error, ferroflow_core::Error::OutOfMemory(_)),
            Error::Python(error) => error.is_instance_of::<PyMemoryError>(py),
        }
    }
}

impl From<ferroflow_core::Error> for Error {
    fn from(error: ferroflow_core::Error) -> Self {
        Error::Core(error)
    }
}

impl From<PyErr> for Error {
    fn from(error: PyErr) -> Self {
        Error::Python(error)
    }
}

impl From<Error> for PyErr {
    fn from(error: Error) -> Self {
        match error {
            Error::Core(error) => core_error_to_python(error),
            Error::Python(error) => error,
        }
    }
}

fn core_error_to_python(error: ferroflow_core::Error) -> PyErr {
    use ferroflow_core::Error as Core;
    match error {
        Core::Io { ref source, .. } => {
            // Keep errno so Python raises the matching OSError subclass (FileNotFoundError, ...).
            let message = error.to_string();
            match source.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, message)),
                None => PyOSError::new_err(message),
            }
        }
        Core::Corrupt(message) => CorruptResultError::new_err(message),
        Core::UnsupportedFormat(message) => UnsupportedFormatError::new_err(message),
        Core::Untrusted(message) => UntrustedResultError::new_err(message),
        Core::UnsafeKey(message) => UnsafeKeyError::new_err(message),
        Core::InvalidArgument(message) => PyValueError::new_err(message),
        Core::OutputLimit(message) => PyValueError::new_err(message),
        Core::OutOfMemory(message) => PyMemoryError::new_err(message),
        // A missing object is a missing file to every caller: the same recovery applies.
        Core::NotFound(message) => PyFileNotFoundError::new_err((ENOENT, message)),
        Core::BucketNotFound(message) => BucketNotFoundError::new_err(message),
        Core::PermissionDenied(message) => StoragePermissionError::new_err(message),
        Core::Unavailable(message) => StorageUnavailableError::new_err(message),
    }
}

/// ENOENT (2 on every platform CPython supports), so that the `FileNotFoundError` of a missing
/// object carries the errno a missing file does.
const ENOENT: i32 = 2;
