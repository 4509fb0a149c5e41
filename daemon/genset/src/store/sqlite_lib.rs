//! Process-wide settings of the SQLite library, applied once before the first connection.
//!
//! The recorder's writer binds each row's text columns (the bodies among them), and SQLite
//! copies each bound text into memory of its own (sqlx binds with `SQLITE_TRANSIENT`) and
//! frees it again when the bindings are cleared: several allocations per recorded exchange. By
//! default each of them goes through glibc's malloc behind a global mutex that SQLite takes
//! to keep memory statistics. Here the statistics are turned off (genset never reads them
//! and sets no soft heap limit) and SQLite allocates through the process's global Rust
//! allocator, the one the binary chose (gensetd: mimalloc). Measured in docs/benchmarks.md
//! (the proxy's closed loop).
//!
//! Statement journals spill to disk later: each recorder batch is one multi-row INSERT inside
//! a transaction, which needs a statement journal, and SQLite keeps one in memory only up to
//! 64 KiB (four 16 KiB pages) before moving it to a temp file. A batch passed that, so every
//! batch created, wrote and unlinked a file in the temp directory. They now stay in memory up
//! to [`STMT_JOURNAL_SPILL`]. `temp_store = MEMORY` would do that too, but it also keeps
//! every sort and temp table in memory without limit (a report's ORDER BY over millions of
//! rows): those keep spilling to disk as before.
#![allow(unsafe_code)] // FFI: sqlite3_config before sqlite3_initialize, and the allocator callbacks it calls.

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::ffi::{c_int, c_void};
use std::sync::Once;

use libsqlite3_sys as ffi;

/// Bytes in front of each block: its usable size, so `xFree` and `xSize` can rebuild the
/// layout. Eight keeps the 8-byte alignment SQLite requires.
const HEADER: usize = 8;
const ALIGN: usize = 8;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Some(l) = usize::try_from(n).ok().and_then(layout) else { return std::ptr::null_mut() };
    // SAFETY: `l` has a non-zero size (HEADER > 0).
    let base = unsafe { alloc(l) };
    if base.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the block is at least HEADER bytes and 8-aligned; the caller's part starts after it.
    unsafe {
        base.cast::<usize>().write(l.size() - HEADER);
        base.add(HEADER).cast()
    }
}

/// The block's start and its caller-visible size.
///
/// # Safety
/// `p` was returned by `x_malloc` or `x_realloc` and not freed.
unsafe fn header(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: per the contract, HEADER bytes before `p` hold the size written at allocation.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        (base, base.cast::<usize>().read())
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite passes only pointers it got from x_malloc/x_realloc.
    unsafe {
        let (base, size) = header(p);
        if let Some(l) = layout(size) {
            dealloc(base, l);
        }
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: same contract as x_malloc.
        return unsafe { x_malloc(n) };
    }
    let Ok(new) = usize::try_from(n) else { return std::ptr::null_mut() };
    let Some(new_layout) = layout(new) else { return std::ptr::null_mut() };
    // SAFETY: `p` came from x_malloc/x_realloc; the old layout is rebuilt from its header and
    // the new size is non-zero and does not overflow (checked by `layout`).
    unsafe {
        let (base, old) = header(p);
        let Some(old_layout) = layout(old) else { return std::ptr::null_mut() };
        let grown = realloc(base, old_layout, new_layout.size());
        if grown.is_null() {
            return std::ptr::null_mut();
        }
        grown.cast::<usize>().write(new);
        grown.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about live blocks it allocated here.
    let (_, size) = unsafe { header(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

const METHODS: ffi::sqlite3_mem_methods = ffi::sqlite3_mem_methods {
    xMalloc: Some(x_malloc),
    xFree: Some(x_free),
    xRealloc: Some(x_realloc),
    xSize: Some(x_size),
    xRoundup: Some(x_roundup),
    xInit: Some(x_init),
    xShutdown: Some(x_shutdown),
    pAppData: std::ptr::null_mut(),
};

/// Statement-journal bytes kept in memory before SQLite moves the journal to a temp file.
pub const STMT_JOURNAL_SPILL: c_int = 8 << 20;

/// Apply the settings once per process. Must run before the first SQLite connection opens;
/// later, SQLite refuses them (`SQLITE_MISUSE`) and keeps its defaults, which is logged and
/// otherwise harmless.
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let methods = METHODS;
        // SAFETY: sqlite3_config is called before sqlite3_initialize (or refused with
        // SQLITE_MISUSE after it), with the argument types each option documents: an int for
        // MEMSTATUS and STMTJRNL_SPILL; for MALLOC a pointer to a sqlite3_mem_methods, which
        // SQLite copies.
        let (stats, malloc, spill) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_STMTJRNL_SPILL, STMT_JOURNAL_SPILL),
            )
        };
        if stats != ffi::SQLITE_OK || malloc != ffi::SQLITE_OK || spill != ffi::SQLITE_OK {
            tracing::debug!(stats, malloc, spill, "SQLite was initialised before genset configured it; keeping its defaults");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_size_and_contents_through_realloc() {
        // SAFETY: the callbacks are used as SQLite uses them: malloc, size, realloc, free.
        unsafe {
            let p = x_malloc(13);
            assert!(!p.is_null());
            assert_eq!(p as usize % 8, 0, "SQLite needs 8-byte alignment");
            assert_eq!(x_size(p), 13);
            std::ptr::copy_nonoverlapping(b"hello, sqlite".as_ptr(), p.cast::<u8>(), 13);
            let q = x_realloc(p, 4000);
            assert_eq!(x_size(q), 4000);
            assert_eq!(std::slice::from_raw_parts(q.cast::<u8>(), 13), b"hello, sqlite");
            let r = x_realloc(q, 5);
            assert_eq!(x_size(r), 5);
            assert_eq!(std::slice::from_raw_parts(r.cast::<u8>(), 5), b"hello");
            x_free(r);
            x_free(std::ptr::null_mut());
            assert!(x_malloc(-1).is_null());
            assert_eq!(x_roundup(13), 16);
            assert_eq!(x_roundup(16), 16);
        }
    }
}
