//! The runtime on a tiny fake model: a counter that jobs add to.

use super::*;
use smai_core::ErrorCode;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

struct Counter(u64);

fn start(queue_depth: usize, max_consecutive_panics: usize) -> Worker<Counter> {
    let config = WorkerConfig { name: "fake counter".into(), queue_depth, max_consecutive_panics };
    Worker::start(config, || Ok((Counter(0), ()))).unwrap().0
}

/// Adds `n` and answers with the new total.
fn add(worker: &Worker<Counter>, n: u64) -> Result<mpsc::Receiver<Result<u64, Error>>, Error> {
    let (tx, rx) = mpsc::channel(1);
    worker.submit("add", tx, move |model, out| {
        model.0 += n;
        let _ = out.blocking_send(Ok(model.0));
    })?;
    Ok(rx)
}

fn panicking(worker: &Worker<Counter>) -> mpsc::Receiver<Result<u64, Error>> {
    let (tx, rx) = mpsc::channel(1);
    worker.submit("panic", tx, |_: &mut Counter, _: &mpsc::Sender<Result<u64, Error>>| panic!("marked input")).unwrap();
    rx
}

#[test]
fn a_panicking_job_answers_internal_error_and_the_next_job_succeeds() {
    let worker = start(4, MAX_CONSECUTIVE_PANICS);
    assert_eq!(add(&worker, 2).unwrap().blocking_recv().unwrap().unwrap(), 2);
    let mut answer = panicking(&worker);
    let err = answer.blocking_recv().unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.detail.unwrap().contains("marked input"));
    assert!(answer.blocking_recv().is_none(), "the stream closes after the error");
    assert_eq!(add(&worker, 3).unwrap().blocking_recv().unwrap().unwrap(), 5, "the model is still there");
    assert_eq!(worker.health(), EngineHealth::Serving);
}

#[test]
fn a_full_queue_is_overloaded() {
    let worker = start(1, MAX_CONSECUTIVE_PANICS);
    // A job that holds the model until released, once it is known to be running.
    let (started_tx, started) = sync_channel(1);
    let (release, released) = sync_channel::<()>(1);
    let (tx, mut first) = mpsc::channel(1);
    worker
        .submit("hold", tx, move |model: &mut Counter, out| {
            started_tx.send(()).unwrap();
            released.recv().unwrap();
            let _ = out.blocking_send(Ok(model.0));
        })
        .unwrap();
    started.recv().unwrap();
    let mut waiting = add(&worker, 1).unwrap(); // fills the queue of one
    let err = add(&worker, 1).unwrap_err();
    assert_eq!(err.code, ErrorCode::Overloaded);
    assert!(err.retry_after.is_some());
    assert_eq!(worker.reserve().err().map(|e| e.code), Some(ErrorCode::Overloaded));
    release.send(()).unwrap();
    assert_eq!(first.blocking_recv().unwrap().unwrap(), 0);
    assert_eq!(waiting.blocking_recv().unwrap().unwrap(), 1);
    assert!(add(&worker, 1).is_ok(), "room again once the queue drained");
}

#[test]
fn a_worker_lost_for_good_is_reported_unhealthy() {
    let worker = start(4, 2);
    for _ in 0..2 {
        assert_eq!(panicking(&worker).blocking_recv().unwrap().unwrap_err().code, ErrorCode::Internal);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker.health() == EngineHealth::Serving && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    match worker.health() {
        EngineHealth::Unhealthy(why) => assert!(why.starts_with("fake counter: stopped after 2"), "{why}"),
        EngineHealth::Serving => panic!("still serving after the model was given up"),
    }
    let err = add(&worker, 1).unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.detail.unwrap().contains("fake counter"));
}

#[test]
fn a_failed_load_is_an_error_and_jobs_run_in_order() {
    let config = WorkerConfig::new("broken", 1);
    let err =
        Worker::<Counter>::start(config, || Err::<(Counter, ()), _>(Error::internal("no weights"))).err().unwrap();
    assert_eq!(err.detail.as_deref(), Some("no weights"));
    let panicky = WorkerConfig::new("panicky", 1);
    let err =
        Worker::<Counter>::start(panicky, || -> Result<(Counter, ()), Error> { panic!("bad file") }).err().unwrap();
    assert!(err.detail.unwrap().contains("bad file"));

    let worker = start(8, MAX_CONSECUTIVE_PANICS);
    let answers: Vec<_> = (1..=5).map(|n| add(&worker, n).unwrap()).collect();
    let totals: Vec<u64> = answers.into_iter().map(|mut rx| rx.blocking_recv().unwrap().unwrap()).collect();
    assert_eq!(totals, [1, 3, 6, 10, 15]);
}
