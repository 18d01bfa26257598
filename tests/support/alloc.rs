//! The one counting allocator of the test suites. A test binary that
//! measures allocation installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: support::alloc::Counting = support::alloc::Counting;
//! ```
//!
//! and reads what it needs: the bytes the current thread requested
//! ([`allocated_by`]) and the allocations it made ([`allocations_by`]),
//! the bytes live on the heap ([`live`]), the number of
//! allocations made by every thread ([`allocations`]), or the largest
//! single allocation made while tracking is on ([`largest_during`]).
//!
//! A binary that installs it must keep its allocation-measuring tests to
//! itself: the live and largest figures are process-wide. The same file
//! serves `tests/` and `protocol-tests/tests/` (included by `#[path]`).

// The allocator is the only unsafe code of the test suites: it forwards
// every call unchanged to `System` and keeps counts on the side.
#![allow(unsafe_code, dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::thread::LocalKey;

/// Forwards to the system allocator and counts: bytes requested per
/// thread, bytes live, and the largest single allocation while tracking.
pub struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    static MADE_HERE: Cell<usize> = const { Cell::new(0) };
}
static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static TRACKING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Books a request of `bytes` (a fresh allocation or a reallocation's new
/// size) and counts it.
fn requested(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = ALLOCATED.try_with(|c| c.set(c.get().saturating_add(bytes)));
    let _ = MADE_HERE.try_with(|c| c.set(c.get().saturating_add(1)));
    if TRACKING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counting touches only atomics and a const-initialised thread-local `Cell`,
// none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        requested(layout.size());
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        requested(layout.size());
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        requested(new_size);
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with how far this thread's `count`
/// moved meanwhile.
fn counted_by<T>(count: &'static LocalKey<Cell<usize>>, f: impl FnOnce() -> T) -> (T, usize) {
    let before = count.with(Cell::get);
    let out = f();
    let after = count.with(Cell::get);
    (out, after.saturating_sub(before))
}

/// Runs `f` and returns its result with the bytes this thread allocated.
pub fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    counted_by(&ALLOCATED, f)
}

/// Runs `f` and returns its result with the allocations and reallocations
/// this thread made.
pub fn allocations_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    counted_by(&MADE_HERE, f)
}

/// The bytes live on the heap, process-wide.
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations and reallocations made so far, by every thread.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Runs `f` with tracking on and returns its result with the largest
/// single allocation any thread made meanwhile.
pub async fn largest_during<T>(f: impl Future<Output = T>) -> (T, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    TRACKING.store(true, Ordering::SeqCst);
    let out = f.await;
    TRACKING.store(false, Ordering::SeqCst);
    (out, LARGEST.load(Ordering::SeqCst))
}
