//! Process-wide settings for the numeric work, applied once at the start of `main` (the binary's
//! and the benchmarks').
//!
//! Two costs outside the arithmetic showed up in profiles of CPU runs:
//! - candle asks for its thread count on every matmul, and where it finds no preferred-CPU list
//!   (containers, VMs) it reads `/proc/cpuinfo` to count physical cores each time. On the lab's
//!   small matrices that read costs as much as the product: a LoraHub evaluation of 5 examples took
//!   twice as long. Setting `RAYON_NUM_THREADS` to the same count once makes the lookup a
//!   variable read.
//! - mimalloc hands freed memory back to the OS (after 1 s by default, sooner for large blocks),
//!   and candle allocates a fresh output for every op, so each training step paid for page faults
//!   and zeroed pages on hundreds of megabytes (a third of a hidden-512 recipe step was kernel
//!   time; a 1 s delay did not change that, only no purging did). The engine
//!   repeats the same allocations step after step, so freed memory is kept for reuse instead; the
//!   process's resident size then stays at its peak, which is the size a run needs anyway.
//!
//! A user's own `RAYON_NUM_THREADS` or `MIMALLOC_PURGE_DELAY` wins.

use std::sync::atomic::{AtomicBool, Ordering};

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 option enums).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

static USER_THREADS: AtomicBool = AtomicBool::new(false);

/// Pins the thread count and keeps freed memory for reuse (see the module docs).
///
/// # Safety
/// Sets an environment variable: call it before the process starts any thread.
pub unsafe fn prepare() {
    // candle's matmuls read RAYON_NUM_THREADS (CANDLE_NUM_THREADS sizes only its elementwise
    // pool), so pinning it to candle's own default changes nothing but the cost of the lookup.
    // A value candle would not take (empty, zero, not a number) counts as unset, as it does there.
    let user = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > 0);
    USER_THREADS.store(user, Ordering::Relaxed);
    if !user {
        let n = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain option store; mimalloc reads it on its next purge decision.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Whether the thread count came from the user's environment rather than from [`prepare`].
pub fn threads_set_by_user() -> bool {
    USER_THREADS.load(Ordering::Relaxed)
}

/// Sets candle's CPU thread count for this process.
///
/// # Safety
/// Sets an environment variable: call it before the process starts any thread.
pub unsafe fn set_threads(n: usize) {
    // SAFETY: the caller guarantees no other thread runs yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string()) };
}

/// The instruction set of the f32/f16 GEMM kernels this process runs, as the `gemm` crate picks
/// them at run time: AVX-512 where the processor has it (the crate's `x86-v4` kernels, compiled in
/// through this crate's dependency on it), else AVX2 with FMA, else its scalar code. Mirrors
/// `gemm-common`'s own dispatch (`init_gemm_fn`) so that a benchmark says what it measured.
pub fn gemm_isa() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "neon"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// The processor's model name: the CPUID brand string on x86 (what the processor itself says,
/// also under an emulator), else the first `model name` of `/proc/cpuinfo`, else "unknown".
pub fn cpu_model() -> String {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if let Some(brand) = raw_cpuid::CpuId::new().get_processor_brand_string() {
        let name = brand.as_str().trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// One line naming the machine a figure came from: processor, GEMM instruction set, threads.
/// Every benchmark prints it first, so figures from different hosts are never read as one.
pub fn machine_line() -> String {
    format!(
        "machine: {} · GEMM kernels {} · {} CPU threads",
        cpu_model(),
        gemm_isa(),
        candle_core::utils::get_num_threads()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_is_the_option_mimalloc_knows_by_that_name() {
        // Nothing in the unit tests calls `prepare`, so the option holds mimalloc's default:
        // 1000 ms for purge_delay in the v3 that libmimalloc-sys builds, where its neighbours
        // (a deprecated option and use_numa_nodes) default to 1 and 0.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(v, 1000);
        }
    }
}
