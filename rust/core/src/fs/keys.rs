//! Storage keys: relative names of results under a storage folder.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Joins `key` to `base`, refusing any key that could name something outside `base`.
///
/// Both `/` and `\` separate folders, so a key means the same layout on every platform.
/// Empty and `.` parts are dropped. Refused: `..` parts, absolute keys (leading separator),
/// drive letters (`C:`), NUL characters and keys that name no file.
/// Symbolic links inside `base` are followed: whoever controls `base` controls them.
pub fn resolve_key(base: &Path, key: &str) -> Result<PathBuf> {
    Ok(key_parts(key)?
        .iter()
        .fold(base.to_path_buf(), |path, part| path.join(part)))
}

/// The folder names and file name of `key`, checked as [`resolve_key`] describes; object stores
/// use the same rules, so a key names the same result in a folder and in a bucket.
pub(crate) fn key_parts(key: &str) -> Result<Vec<&str>> {
    let refuse = |why: &str| {
        Err(Error::UnsafeKey(format!(
            "storage key {key:?} {why}; use a relative key such as \"results/abc123\" that stays inside the storage folder"
        )))
    };
    if key.contains('\0') {
        return refuse("contains a NUL character");
    }
    if key.starts_with(['/', '\\']) || Path::new(key).has_root() {
        return refuse("is an absolute path");
    }
    let parts: Vec<&str> = key
        .split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.iter().any(|part| has_drive_prefix(part)) {
        return refuse(
            "contains a drive letter (\"C:\"), which would leave the storage folder on Windows",
        );
    }
    if parts.contains(&"..") {
        return refuse("contains '..', which would leave the storage folder");
    }
    if parts.is_empty() {
        return refuse("names no file");
    }
    Ok(parts)
}

fn has_drive_prefix(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}
