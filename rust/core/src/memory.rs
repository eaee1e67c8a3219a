//! Large buffers that are about to be filled (a result read from a file or from the network):
//! backed by huge pages where the system allows it.
//!
//! A new buffer is mapped on first touch, one page at a time: filling 32 MiB of fresh 4 KiB
//! pages is 8192 page faults, each also zeroing its page, and that — not the copy itself — is
//! most of the time it takes to read a large result into a new object (measured on a 2-core
//! virtual machine: 26 ms with 4 KiB pages, 4.5 ms with 2 MiB pages, for a 32 MiB `pread`).
//! Transparent huge pages are often enabled only for memory that asks for them
//! (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise`, the default of several
//! distributions); [`advise_huge_pages`] asks. Where they are off (`never`) or unknown (other
//! systems) it does nothing and buffers are filled as before.

/// From this many bytes on, a buffer about to be filled asks for huge pages: below, it holds at
/// most one whole 2 MiB page, and the cost of its faults is small next to the call.
pub const HUGE_PAGES_FROM: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and (with 4 KiB base pages) arm64.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB-aligned blocks of `buffer` with transparent huge
/// pages when they are first touched; a buffer shorter than [`HUGE_PAGES_FROM`] is left alone.
///
/// Only advice: the contents are unchanged, a refusal is ignored, and only the aligned blocks
/// inside `buffer` are advised, so memory of the allocator or of other objects around it keeps
/// its pages. Call it before the buffer is written: pages already touched stay small. The advice
/// stays on that address range after the buffer is freed, so memory the allocator later reuses
/// there may get huge pages too, which costs nothing but a little memory in 2 MiB steps.
pub fn advise_huge_pages(buffer: &mut [u8]) {
    if buffer.len() < HUGE_PAGES_FROM {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = buffer.as_mut_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + buffer.len()) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: the range lies within `buffer`, memory this process owns; MADV_HUGEPAGE only
            // changes how its pages are backed, never what it holds.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_buffers_keep_what_they_hold() {
        for len in [
            0,
            1,
            HUGE_PAGES_FROM - 1,
            HUGE_PAGES_FROM,
            3 * HUGE_PAGES_FROM + 12345,
        ] {
            let mut buffer: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            advise_huge_pages(&mut buffer[len.min(7)..]);
            assert!(buffer
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8));
        }
    }
}
