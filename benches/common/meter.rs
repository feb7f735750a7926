//! A counting global allocator for the benchmarks: the bytes pfknock has
//! live and their peak, with a switch that leaves out what the kernel model
//! allocates (it stands in for the kernel, whose memory is not ours).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

pub struct Counting;

pub static CUR: AtomicUsize = AtomicUsize::new(0);
pub static PEAK: AtomicUsize = AtomicUsize::new(0);
pub static PAUSED: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !PAUSED.load(Relaxed) {
            let c = CUR.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(c, Relaxed);
        }
        // SAFETY: the caller's contract for GlobalAlloc::alloc, passed on.
        unsafe { System.alloc(l) }
    }
    /// The system's own realloc (glibc shrinks in place, and moves a
    /// large block by remapping its pages): counted as the change in
    /// size, where the default would count both blocks and copy.
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for GlobalAlloc::realloc, passed on.
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() && !PAUSED.load(Relaxed) {
            if new_size >= l.size() {
                let c = CUR.fetch_add(new_size - l.size(), Relaxed) + new_size - l.size();
                PEAK.fetch_max(c, Relaxed);
            } else {
                CUR.fetch_sub(l.size() - new_size, Relaxed);
            }
        }
        q
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if !PAUSED.load(Relaxed) {
            CUR.fetch_sub(l.size(), Relaxed);
        }
        // SAFETY: `p` came from System.alloc with this layout, above.
        unsafe { System.dealloc(p, l) }
    }
}

/// Run `f` unmetered: the model's work. (Not every bench needs it.)
#[allow(dead_code)]
pub fn paused<R>(f: impl FnOnce() -> R) -> R {
    PAUSED.store(true, Relaxed);
    let r = f();
    PAUSED.store(false, Relaxed);
    r
}
