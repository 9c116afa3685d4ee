//! The process's resident memory from /proc/self/status, to bound what a call allocates.

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// Peak resident growth in MB while `f` runs, from the resident size before it. The peak is
/// reset first (clear_refs 5); where the kernel refuses, an earlier peak can only overstate.
pub fn peak_growth_mb<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kb("VmRSS:");
    let out = f();
    let peak = status_kb("VmHWM:");
    (out, peak.saturating_sub(before) as f64 / 1024.0)
}
