//! The one error type of the core; the binding maps each variant to a Python exception.
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written; keeps the OS error so Python gets the right `OSError`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Stored bytes failed a check: bad magic, checksum mismatch, truncation, bad compressed stream.
    #[error("{0}")]
    Corrupt(String),
    /// A blob that is unsigned, signed by an unknown key or wrongly signed, where a valid signature
    /// is required: refused before any of its payload is returned.
    #[error("{0}")]
    Untrusted(String),
    /// A blob written by a newer, incompatible format major version.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// A storage key that would escape its base folder.
    #[error("{0}")]
    UnsafeKey(String),
    /// A caller passed an unknown codec, a level out of range, and the like.
    #[error("{0}")]
    InvalidArgument(String),
    /// Decompressed data would exceed the limit the caller set.
    #[error("{0}")]
    OutputLimit(String),
    /// A buffer or codec state could not be allocated; reported instead of aborting the process.
    #[error("{0}")]
    OutOfMemory(String),
    /// An object store has no object under the key: the result is missing, not the store.
    #[error("{0}")]
    NotFound(String),
    /// The bucket (or container) an object store URL names does not exist: a configuration error,
    /// so kept apart from `NotFound`, which callers may answer by computing the result again.
    #[error("{0}")]
    BucketNotFound(String),
    /// The object store refused the credentials, or they do not allow the operation.
    #[error("{0}")]
    PermissionDenied(String),
    /// The object store could not be reached or did not answer in time, after the retries.
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
