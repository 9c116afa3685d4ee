//! The pool every model's parallel CPU work runs on: rayon's global pool, built once, with one
//! worker per CPU this process may run on, each worker pinned to its own CPU, as onnxruntime
//! pins its intra-op threads when their number is left to it. Unpinned, a scheduler that
//! gathers an idle process's threads onto one CPU (as the guest kernels of some virtual
//! machines do) keeps one worker waiting behind the other for the first tens of milliseconds
//! of the next job: on such a guest, a short sentence took a quarter longer after 200 ms of
//! quiet than right after another, its threads 30-45 ms in the run queue against under 1 ms
//! pinned.
//!
//! `RAYON_NUM_THREADS` sets the number of workers instead, and leaves them unpinned, as does a
//! CPU quota below the CPUs the process may use (a container's `--cpus`): there a pinned worker
//! could not leave a CPU that others keep busy.

use std::sync::Once;

static INIT: Once = Once::new();

/// Builds the pool, once per process; later calls do nothing. Called as a Whisper model or a
/// voice starts loading, before its first parallel work; a pool already built by then is kept
/// as it is.
pub fn init() {
    INIT.call_once(|| {
        let cpus = planned_pinning();
        let mut builder = rayon::ThreadPoolBuilder::new();
        if let Some(cpus) = cpus.clone() {
            let count = cpus.len();
            builder = builder.num_threads(count).start_handler(move |i| pin_current_thread(cpus[i % count]));
        }
        match builder.build_global() {
            Ok(()) => tracing::debug!(workers = rayon::current_num_threads(), pinned = ?cpus, "compute pool"),
            Err(e) => tracing::debug!("compute pool already built, kept as it is: {e}"),
        }
    });
}

/// The CPUs `init` pins the workers to in this process's environment, or None where it leaves
/// them unpinned ([`pinned_cpus`]).
pub fn planned_pinning() -> Option<Vec<usize>> {
    let threads_set = std::env::var_os("RAYON_NUM_THREADS").is_some_and(|v| !v.is_empty());
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    pinned_cpus(threads_set, allowed_cpus(), usable)
}

/// The CPUs to pin the workers to, one each: the CPUs the process may run on, where there are
/// several, the worker count is not set by the user, and no quota makes fewer of them usable.
pub fn pinned_cpus(threads_set: bool, allowed: Option<Vec<usize>>, usable: usize) -> Option<Vec<usize>> {
    let allowed = allowed?;
    (!threads_set && allowed.len() > 1 && allowed.len() == usable).then_some(allowed)
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data, the size passed is its own, and pid 0 names the
    // calling thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    // SAFETY: every index is below CPU_SETSIZE, inside the set.
    Some((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data, `cpu` comes from the allowed set (below CPU_SETSIZE),
    // and pid 0 names the calling thread.
    let failed = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
    };
    if failed {
        tracing::debug!(cpu, "compute worker left unpinned: {}", std::io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_cpu: usize) {}

#[cfg(test)]
mod tests {
    use super::pinned_cpus;

    #[test]
    fn pins_one_worker_per_allowed_cpu_only_when_nothing_else_decides() {
        let four = || Some(vec![0, 2, 4, 6]);
        assert_eq!(pinned_cpus(false, four(), 4), four());
        assert_eq!(pinned_cpus(true, four(), 4), None, "RAYON_NUM_THREADS set");
        assert_eq!(pinned_cpus(false, four(), 2), None, "a quota of two CPUs");
        assert_eq!(pinned_cpus(false, Some(vec![3]), 1), None, "one CPU");
        assert_eq!(pinned_cpus(false, None, 4), None, "affinity unknown");
    }
}
