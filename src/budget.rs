//! A memory budget for one piece of work on an untrusted program: a model's chat template is
//! Jinja code that came with a download, and minijinja bounds its steps (fuel) but not the size
//! of the strings it builds (`{% set ns.s = ns.s ~ ns.s %}` forty times is a terabyte).
//!
//! [`Budgeted`] wraps the global allocator and counts, per thread, the bytes a budgeted thread
//! holds. A thread that goes over its budget is never answered: an allocator may not fail by
//! unwinding, and returning null aborts the process, so the thread raises a flag and sleeps for
//! good. [`run`] watches that flag from the caller's thread and returns an error; the sleeping
//! thread keeps what it had allocated (at most the budget), which is the price of not aborting.
//! Callers stop using the program after one such error, so this happens once per bad template.
//!
//! Only a binary that installs [`Budgeted`] as its `#[global_allocator]` (loracycle's does)
//! enforces budgets; elsewhere [`run`] runs the work on its own thread without a limit.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The global allocator `A`, with per-thread budgets.
pub struct Budgeted<A>(pub A);

thread_local! {
    /// The budget of this thread in bytes; 0 for none.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated under the budget and not yet freed.
    static USED: Cell<usize> = const { Cell::new(0) };
    /// Raised when the budget is spent: the caller in [`run`] waits on it.
    static SPENT: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

fn charge(bytes: usize) {
    // `try_with`: a thread's locals may be gone while it is torn down.
    let over = LIMIT
        .try_with(|limit| {
            let limit = limit.get();
            if limit == 0 {
                return false;
            }
            let used = USED.get().saturating_add(bytes);
            USED.set(used);
            used > limit
        })
        .unwrap_or(false);
    if over {
        spent();
    }
}

fn refund(bytes: usize) {
    let _ = LIMIT.try_with(|limit| {
        if limit.get() != 0 {
            USED.set(USED.get().saturating_sub(bytes));
        }
    });
}

/// The budget is spent: tell the caller and never return (nothing here allocates).
fn spent() -> ! {
    let flag = SPENT.get();
    if !flag.is_null() {
        // SAFETY: `run` keeps the flag alive in this thread's closure, which never returns now.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
    loop {
        // SAFETY: pause(2) only waits for a signal.
        unsafe { libc::pause() };
    }
}

// SAFETY: every call is passed to `A` unchanged; the bookkeeping around it touches only
// const-initialised thread locals, which never allocate.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Budgeted<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        // SAFETY: as the caller promised for `layout`.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        // SAFETY: as the caller promised for `layout`.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        refund(layout.size());
        // SAFETY: as the caller promised for `ptr` and `layout`.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            charge(new_size - layout.size());
        } else {
            refund(layout.size() - new_size);
        }
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Why budgeted work gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("it needed more than {} MiB of memory", .0 >> 20)]
    Spent(usize),
    #[error("it failed unexpectedly: {0}")]
    Panicked(String),
}

/// Runs `work` on a thread of its own with `limit` bytes to allocate (see the module's note).
pub fn run<T: Send + 'static>(
    limit: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BudgetError> {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let theirs = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("budgeted".into())
        .spawn(move || {
            SPENT.set(Arc::as_ptr(&theirs));
            USED.set(0);
            LIMIT.set(limit);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            LIMIT.set(0);
            SPENT.set(std::ptr::null());
            let _ = tx.send(out.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }));
            drop(theirs);
        });
    if let Err(e) = spawned {
        return Err(BudgetError::Panicked(format!(
            "no thread to run it on: {e}"
        )));
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(why)) => return Err(BudgetError::Panicked(why)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if flag.load(Ordering::SeqCst) {
                    return Err(BudgetError::Spent(limit));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BudgetError::Panicked("its thread ended".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_within_its_budget_answers_and_a_panic_is_an_error() {
        assert_eq!(run(1 << 20, || 6 * 7), Ok(42));
        assert_eq!(
            run(1 << 20, || -> u8 { panic!("bad") }),
            Err(BudgetError::Panicked("bad".into()))
        );
        assert_eq!(
            BudgetError::Spent(128 << 20).to_string(),
            "it needed more than 128 MiB of memory"
        );
    }
}
