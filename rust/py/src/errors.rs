//! The Python exceptions of `ferroflow._core` and the one mapping from the core's error enum.
use ferroflow_core::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyMemoryError, PyOSError, PyValueError};
use pyo3::PyErr;

create_exception!(
    ferroflow._core,
    CorruptResultError,
    PyValueError,
    "Stored bytes failed verification: the result is corrupted or truncated."
);
create_exception!(
    ferroflow._core,
    UnsupportedFormatError,
    PyValueError,
    "The blob was written in a format version this ferroflow cannot read."
);
create_exception!(
    ferroflow._core,
    UnsafeKeyError,
    PyValueError,
    "A storage key would escape its base folder."
);

pub fn to_pyerr(error: Error) -> PyErr {
    match error {
        Error::Io { ref source, .. } => {
            // Keep errno so Python raises the matching OSError subclass (FileNotFoundError, ...).
            let message = error.to_string();
            match source.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, message)),
                None => PyOSError::new_err(message),
            }
        }
        Error::Corrupt(message) => CorruptResultError::new_err(message),
        Error::UnsupportedFormat(message) => UnsupportedFormatError::new_err(message),
        Error::UnsafeKey(message) => UnsafeKeyError::new_err(message),
        Error::InvalidArgument(message) => PyValueError::new_err(message),
        Error::OutputLimit(message) => PyValueError::new_err(message),
        Error::OutOfMemory(message) => PyMemoryError::new_err(message),
    }
}
