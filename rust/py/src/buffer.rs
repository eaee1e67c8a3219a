//! Bytes in and out of Python without extra copies: [`InputBuffer`] borrows any C-contiguous
//! Python buffer for the length of a call, [`new_bytes_filled`] creates `bytes` objects and fills
//! them in place, with the GIL released when the work is large.
use std::ptr::NonNull;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::Result;
use crate::gil::{self, Work};

/// A read-only view of a C-contiguous Python buffer (bytes, bytearray, memoryview, NumPy array of
/// any dtype, `pickle.PickleBuffer`), held without copying while the GIL is released.
pub(crate) enum InputBuffer<'py> {
    /// `bytes` are read in place: cheaper than the buffer protocol for many small pieces.
    Bytes(Bound<'py, PyBytes>),
    /// Any other exporter, held exported (and so unresizable) until dropped.
    Exported(PyUntypedBuffer),
}

impl<'py> InputBuffer<'py> {
    /// Borrows `object`'s buffer; `what` names it in errors ("data", "segment 2").
    pub(crate) fn borrow(object: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(bytes) = object.cast::<PyBytes>() {
            return Ok(InputBuffer::Bytes(bytes.clone()));
        }
        let buffer = PyUntypedBuffer::get(object).map_err(|error| {
            PyTypeError::new_err(format!(
                "{what} ({}) is not a buffer: pass bytes, bytearray, memoryview, a NumPy array or \
                 pickle.PickleBuffer ({error})",
                type_name(object)
            ))
        })?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{what} ({}) is not C-contiguous (a strided view, or a transposed or Fortran-order \
                 array); pass numpy.ascontiguousarray(...) or bytes(...) of it",
                type_name(object)
            )));
        }
        Ok(InputBuffer::Exported(buffer))
    }

    /// Borrows the buffer of every item of `iterable`, the argument named `argument`, whose
    /// items errors call `item` ("segment 0", "segment 1", ...).
    pub(crate) fn borrow_each(
        iterable: &Bound<'py, PyAny>,
        argument: &str,
        item: &str,
    ) -> PyResult<Vec<Self>> {
        let items = iterable.try_iter().map_err(|error| {
            if error.is_instance_of::<PyTypeError>(iterable.py()) {
                PyTypeError::new_err(format!(
                    "{argument} must be an iterable of buffers, e.g. a list of bytes, not {}",
                    type_name(iterable)
                ))
            } else {
                error
            }
        })?;
        items
            .enumerate()
            .map(|(index, object)| Self::borrow(&object?, &format!("{item} {index}")))
            .collect()
    }

    /// Borrows the buffers of a blob's or a file's `segments`, refusing a lone buffer: iterating
    /// a bytes object or an array would make each of its bytes or elements a segment.
    pub(crate) fn borrow_segments(segments: &Bound<'py, PyAny>) -> PyResult<Vec<Self>> {
        // SAFETY: `segments` is a live object (the `Bound` holds a reference and we hold the
        // GIL); PyObject_CheckBuffer only reads its type's buffer slot.
        if unsafe { ffi::PyObject_CheckBuffer(segments.as_ptr()) } == 1 {
            return Err(PyTypeError::new_err(format!(
                "segments must be a list of buffers, not a single {} object; pass [data]",
                type_name(segments)
            )));
        }
        Self::borrow_each(segments, "segments", "segment")
    }

    /// The buffer's bytes. Python guarantees they stay in place while the buffer is held; like
    /// every C extension reading a buffer without the GIL, this assumes no other thread writes
    /// into a mutable exporter (a bytearray, an array) meanwhile.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let buffer = match self {
            InputBuffer::Bytes(bytes) => return bytes.as_bytes(),
            InputBuffer::Exported(buffer) => buffer,
        };
        let len = buffer.len_bytes();
        // An empty buffer may have a null pointer, which a slice must never have.
        let start = match NonNull::new(buffer.buf_ptr().cast::<u8>()) {
            Some(start) if len > 0 => start,
            _ => NonNull::dangling(),
        };
        // SAFETY: a held, C-contiguous buffer is `len_bytes` readable bytes at `buf_ptr`, which
        // stay in place while `self` (and so the export) lives, as long as the returned slice.
        unsafe { std::slice::from_raw_parts(start.as_ptr(), len) }
    }
}

/// A borrowed buffer detached from the GIL's lifetime, so that other threads can hold it: it
/// keeps the object alive (and an exported buffer exported) until dropped.
#[allow(dead_code)] // the fields are held for their Drop: the reference, the export
pub(crate) enum HeldBuffer {
    Bytes(Py<PyBytes>),
    Exported(PyUntypedBuffer),
}

impl InputBuffer<'_> {
    /// The buffer's address and length, and the buffer detached from the GIL's lifetime; the
    /// memory stays in place while the [`HeldBuffer`] lives.
    pub(crate) fn hold(self) -> (*const u8, usize, HeldBuffer) {
        let bytes = self.as_bytes();
        let (data, len) = (bytes.as_ptr(), bytes.len());
        let held = match self {
            InputBuffer::Bytes(bytes) => HeldBuffer::Bytes(bytes.unbind()),
            InputBuffer::Exported(buffer) => HeldBuffer::Exported(buffer),
        };
        (data, len, held)
    }
}

/// The bytes of each buffer, in order.
pub(crate) fn slices<'a>(buffers: &'a [InputBuffer<'_>]) -> Vec<&'a [u8]> {
    buffers.iter().map(InputBuffer::as_bytes).collect()
}

/// Byte work over all of `slices`.
pub(crate) fn work_on(slices: &[&[u8]]) -> Work {
    Work::bytes_of(slices.iter().map(|bytes| bytes.len()))
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map_or_else(|_| "unknown type".to_owned(), |name| name.to_string())
}

/// New `bytes` objects of the given lengths, filled by `fill`, which does `work`, through
/// [`gil::run`].
///
/// The buffers start uninitialised, which saves a pass over large results: `fill` must write
/// every byte that anything will read, before reading it. Callers fill the buffers whole, except
/// `decompress_into_bytes`, which reads back only the prefix its decoder reports written.
pub(crate) fn new_bytes_filled<'py>(
    py: Python<'py>,
    lengths: &[usize],
    work: Work,
    fill: impl Send + FnOnce(&mut [&mut [u8]]) -> ferroflow_core::Result<()>,
) -> Result<Vec<Bound<'py, PyBytes>>> {
    let mut objects = Vec::with_capacity(lengths.len());
    let mut buffers = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let (object, data) = uninitialised_bytes(py, len)?;
        // SAFETY: `data` is `len` bytes owned by `object`, which lives in `objects` past every
        // use of the slice. CPython allows a bytes object to be written until it is shared, and
        // nobody else sees it before this function returns; `fill` writes the bytes that are
        // read (see above).
        buffers.push(unsafe { std::slice::from_raw_parts_mut(data, len) });
        objects.push(object);
    }
    gil::run(py, work, || fill(&mut buffers))?;
    Ok(objects)
}

/// A new, unshared bytes object of `len` uninitialised bytes, and the address of its bytes,
/// advised to be backed by huge pages when large (see `ferroflow_core::memory`): the caller
/// fills it before anything reads it.
fn uninitialised_bytes(py: Python<'_>, len: usize) -> PyResult<(Bound<'_, PyBytes>, *mut u8)> {
    let size = isize::try_from(len)
        .map_err(|_| PyValueError::new_err("a result is too large for a Python bytes object"))?;
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new reference to a new, unshared,
    // uninitialised bytes object of `n` bytes, or NULL with an exception set, which
    // `from_owned_ptr_or_err` turns into the error. The object is a `bytes`, as the cast says.
    let object = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), size))?
            .cast_into_unchecked::<PyBytes>()
    };
    // SAFETY: `object` is a live bytes object, so PyBytes_AsString returns its data pointer
    // (never NULL for a bytes object).
    let data = unsafe { ffi::PyBytes_AsString(object.as_ptr()).cast::<u8>() };
    // SAFETY: `len` bytes at `data`, owned by `object`, which nothing else sees yet; the advice
    // changes how they are backed, not what they hold.
    ferroflow_core::memory::advise_huge_pages(unsafe { std::slice::from_raw_parts_mut(data, len) });
    Ok((object, data))
}

/// A new bytes object that the core fills from another thread, with the GIL released: a
/// segment received from a bucket straight into the object it becomes.
pub(crate) struct NewBytes {
    object: Py<PyBytes>,
    data: *mut u8,
    len: usize,
}

// SAFETY: the object is new and unshared (only this value refers to it until `into_object`),
// so its bytes are written from the one thread that holds this value, and a `Py` may be moved
// between threads (dropping it without the GIL defers the reference count change).
unsafe impl Send for NewBytes {}

impl NewBytes {
    pub(crate) fn new(py: Python<'_>, len: usize) -> PyResult<NewBytes> {
        let (object, data) = uninitialised_bytes(py, len)?;
        Ok(NewBytes {
            object: object.unbind(),
            data,
            len,
        })
    }

    /// The object, once filled, and the address and length of its bytes.
    pub(crate) fn into_parts(self) -> (Py<PyBytes>, *mut u8, usize) {
        (self.object, self.data, self.len)
    }
}

impl std::fmt::Debug for NewBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBytes").field("len", &self.len).finish()
    }
}

impl ferroflow_core::object_store::SegmentMemory for NewBytes {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes at `data`, owned by `object`, which this value keeps alive and
        // which nothing else sees yet (see `Send`); borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A new `bytes` object holding a copy of `data`, copied with the GIL released when it is large.
pub(crate) fn bytes_copied<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyBytes>> {
    let mut objects = new_bytes_filled(py, &[data.len()], Work::Bytes(data.len()), |out| {
        out[0].copy_from_slice(data);
        Ok(())
    })?;
    Ok(objects.remove(0))
}
