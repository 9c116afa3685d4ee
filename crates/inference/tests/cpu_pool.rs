//! The compute pool as a process builds it: one worker per allowed CPU, each pinned to its
//! own, unless the worker count is set or a quota leaves fewer CPUs usable. Its own test
//! binary, so that nothing builds rayon's pool before `init`.

use smai_inference::cpu_pool::{allowed_cpus, init, planned_pinning};

#[test]
fn workers_are_pinned_one_per_allowed_cpu_where_the_process_may_use_them_all() {
    let allowed = allowed_cpus();
    let expected = planned_pinning();
    init();
    let mut workers: Vec<Option<Vec<usize>>> = rayon::broadcast(|_| allowed_cpus());
    match expected {
        Some(cpus) => {
            workers.sort();
            let each: Vec<Option<Vec<usize>>> = cpus.iter().map(|&c| Some(vec![c])).collect();
            assert_eq!(workers, each, "one worker on each allowed CPU");
        }
        None => assert!(workers.iter().all(|w| *w == allowed), "unpinned workers: {workers:?}"),
    }
}
