//! Atomic replacement of a file: write a temporary file beside the target, then rename it over
//! the target. Readers see the old content or the new, never a mix, even if the writer is killed.
use crate::error::{Error, Result};
use crate::frame::CHUNK;
use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Seek, Write};

/// Where a write goes: a file (buffered), which a signed blob's writer seeks back in.
pub trait WriteSeek: Write + Seek {}
impl<T: Write + Seek + ?Sized> WriteSeek for T {}
use std::path::{Path, PathBuf};

/// Writes `segments` one after another to `path`, atomically, without joining them first;
/// returns the number of bytes written.
pub fn atomic_write(path: &Path, segments: &[&[u8]], durable: bool) -> Result<u64> {
    atomic_write_with(path, durable, |out| {
        segments
            .iter()
            .try_for_each(|segment| out.write_all(segment))
    })?;
    Ok(segments.iter().map(|segment| segment.len() as u64).sum())
}

/// Replaces `path` with what `write` produces; creates missing folders.
///
/// On any failure the temporary file is removed and an existing target is left as it was.
/// `durable` adds fsync of the file before the rename and of the folder after it: the rename
/// alone survives a killed process, the fsyncs make the new content survive a power loss.
pub fn atomic_write_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn WriteSeek) -> io::Result<()>,
) -> Result<()> {
    let writing = |e| Error::io(format!("writing {}", path.display()), e);
    let folder = parent_folder(path)?;
    // The folder usually exists: look for missing ones only when the file cannot be created.
    let (temp, created_folders) = match TempFile::create_beside(path, folder) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let created = create_folders(folder)?;
            (TempFile::create_beside(path, folder), created)
        }
        first_try => (first_try, Vec::new()),
    };
    let temp = temp.map_err(|e| {
        Error::io(
            format!("creating a temporary file in {}", folder.display()),
            e,
        )
    })?;

    let mut out = BufWriter::with_capacity(CHUNK, temp.file());
    write(&mut out).map_err(writing)?;
    let file = out.into_inner().map_err(|e| writing(e.into_error()))?;
    if durable {
        file.sync_data().map_err(writing)?;
    }
    temp.rename_to(path)?;
    if durable {
        // The rename is a change to the folder; new folders are changes to their parents.
        sync_folder(folder)?;
        for created in &created_folders {
            sync_folder(created.parent().unwrap_or(Path::new(".")))?;
        }
    }
    Ok(())
}

fn parent_folder(path: &Path) -> Result<&Path> {
    if path.file_name().is_none() {
        return Err(Error::InvalidArgument(format!(
            "{} does not name a file",
            path.display()
        )));
    }
    Ok(match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    })
}

/// Creates `folder` and its missing ancestors; returns the ones it created, outermost first.
fn create_folders(folder: &Path) -> Result<Vec<PathBuf>> {
    let missing: Vec<PathBuf> = folder
        .ancestors()
        .take_while(|f| !f.as_os_str().is_empty() && !f.exists())
        .map(Path::to_path_buf)
        .collect();
    if !missing.is_empty() {
        fs::create_dir_all(folder)
            .map_err(|e| Error::io(format!("creating the folder {}", folder.display()), e))?;
    }
    Ok(missing.into_iter().rev().collect())
}

fn sync_folder(folder: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing the folder {}", folder.display()), e))?;
    // Windows cannot open a folder as a file; NTFS journals the rename itself.
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

/// A temporary file that removes itself unless it was renamed over its target.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// A new file named by [`temporary_file_name`] in the target's folder, so the rename stays on
    /// one file system.
    fn create_beside(target: &Path, folder: &Path) -> io::Result<TempFile> {
        let target_name = target.file_name().unwrap_or_default();
        let mut attempts = 0;
        loop {
            let path = folder.join(temporary_file_name(target_name, unique_number()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("the file is open until the rename")
    }

    fn rename_to(mut self, target: &Path) -> Result<()> {
        // Closed first: Windows cannot rename a file that is open.
        drop(self.file.take());
        fs::rename(&self.path, target)
            .map_err(|e| Error::io(format!("replacing {}", target.display()), e))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            // Nothing more can be done if this fails; the name says what the file is.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Long target names are cut to this many characters in a temporary file's name, leaving room
/// for the 22 added ones under the file system's limit on a name (255 bytes on most).
const TARGET_NAME_CHARS: usize = 100;
const NUMBER_DIGITS: usize = 16;

/// `.<target name>.<16 hex digits>.tmp`: hidden, so listings skip it, and named after its target,
/// so a stray one (left by a killed writer) says which file it was meant to replace.
fn temporary_file_name(target_name: &OsStr, number: u64) -> String {
    let target_name: String = target_name
        .to_string_lossy()
        .chars()
        .take(TARGET_NAME_CHARS)
        .collect();
    format!(".{target_name}.{number:0NUMBER_DIGITS$x}.tmp")
}

/// Whether `name` (a file name, without its folder) has the form [`atomic_write`] gives its
/// temporary files: such a file is a write in progress or the leftover of a killed writer.
/// Clean-up tools use this to find the leftovers without knowing the naming scheme.
pub fn is_temporary_file_name(name: &OsStr) -> bool {
    // Written names are always UTF-8: the target's name goes through `to_string_lossy`.
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some((target_name, number)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(|rest| rest.rsplit_once('.'))
    else {
        return false;
    };
    let is_lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    number.len() == NUMBER_DIGITS
        && number.bytes().all(is_lower_hex)
        && (1..=TARGET_NAME_CHARS).contains(&target_name.chars().count())
}

/// Random per call: std seeds each thread's hasher keys randomly and changes them for every
/// `RandomState`, so names from concurrent writers, processes and machines sharing a folder
/// do not collide (and `create_new` catches the one-in-2^64 case).
fn unique_number() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}
