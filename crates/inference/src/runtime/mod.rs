//! The one model runtime of every engine. A named thread owns the model and runs jobs from a
//! bounded queue, one at a time, each in a tracing span under its caller's. Admission is
//! decided when a caller takes a place in the queue ([`Worker::reserve`]): a full queue
//! answers `overloaded` at once, and work done before the model (container decoding, mel)
//! holds that place, so it cannot be refused later. A job that panics answers its caller
//! with `internal_error` and the thread goes on serving; when jobs keep panicking the model is
//! taken to be unusable and the thread stops. A stopped thread is lost for good: the worker
//! reports it through [`Worker::health`] and its engine through `health()`.

mod device;

pub use device::{device_from_name, device_name};

use smai_core::{EngineHealth, Error};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Span;

/// How long a refused caller is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Jobs in a row that may panic before the model is taken to be unusable.
pub const MAX_CONSECUTIVE_PANICS: usize = 3;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// What logs, spans and health call this worker (`whisper tiny.en`); also the thread name.
    pub name: String,
    /// Jobs that may wait beyond the one running (at least one).
    pub queue_depth: usize,
    pub max_consecutive_panics: usize,
}

impl WorkerConfig {
    pub fn new(name: impl Into<String>, queue_depth: usize) -> Self {
        Self { name: name.into(), queue_depth, max_consecutive_panics: MAX_CONSECUTIVE_PANICS }
    }
}

enum Outcome {
    Done,
    Panicked,
}

/// A job as the thread sees it: given the model, or the reason there is none any more.
type Run<M> = Box<dyn FnOnce(Result<&mut M, Error>) -> Outcome + Send>;

struct Job<M> {
    kind: &'static str,
    parent: Span,
    run: Run<M>,
}

/// Why the thread stopped, once it has.
#[derive(Default)]
struct Stopped(Mutex<Option<String>>);

impl Stopped {
    fn set(&self, why: String) {
        let mut stopped = self.0.lock().unwrap_or_else(|e| e.into_inner());
        stopped.get_or_insert(why);
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Marks the worker stopped however its thread ends, a panic outside a job included.
struct StopOnExit(Arc<Stopped>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        let why = if std::thread::panicking() { "the model thread panicked" } else { "the model thread exited" };
        self.0.set(why.into());
    }
}

/// A handle to a model's thread (cheap to clone). Once every handle is dropped the thread
/// finishes the queue and exits.
pub struct Worker<M> {
    name: String,
    queue: mpsc::Sender<Job<M>>,
    stopped: Arc<Stopped>,
}

impl<M> Clone for Worker<M> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), queue: self.queue.clone(), stopped: self.stopped.clone() }
    }
}

/// A place in a worker's queue, taken by [`Worker::reserve`]; [`Slot::send`] fills it.
pub struct Slot<M> {
    permit: mpsc::OwnedPermit<Job<M>>,
    name: String,
    parent: Span,
}

impl<M: 'static> Worker<M> {
    /// Starts the thread and runs `load` on it (the model never leaves that thread); returns
    /// once the model is loaded, with what `load` gave back beside it.
    pub fn start<R: Send + 'static>(
        config: WorkerConfig,
        load: impl FnOnce() -> Result<(M, R), Error> + Send + 'static,
    ) -> Result<(Self, R), Error> {
        let (queue, jobs) = mpsc::channel(config.queue_depth.max(1));
        let stopped = Arc::new(Stopped::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_stopped = stopped.clone();
        let name = config.name.clone();
        std::thread::Builder::new()
            .name(config.name.replace(' ', "-"))
            .spawn(move || {
                let _exit = StopOnExit(thread_stopped.clone());
                let loaded = catch_unwind(AssertUnwindSafe(load))
                    .unwrap_or_else(|panic| Err(Error::internal(format!("loading panicked: {}", message(&*panic)))));
                match loaded {
                    Ok((model, ready)) => {
                        if ready_tx.send(Ok(ready)).is_ok() {
                            serve(&config, model, jobs, &thread_stopped);
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::internal(format!("{name}: cannot start the model thread: {e}")))?;
        let ready = ready_rx.recv().map_err(|_| Error::internal(format!("{name}: the model thread exited")))??;
        Ok((Self { name, queue, stopped }, ready))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether jobs wait in the queue behind the one running (optional work can step aside).
    pub fn has_waiting_jobs(&self) -> bool {
        self.queue.capacity() < self.queue.max_capacity()
    }

    /// Takes a place in the queue for a job to come, in the caller's span: `overloaded` when
    /// the queue is full, `internal_error` when the worker is lost.
    pub fn reserve(&self) -> Result<Slot<M>, Error> {
        match self.queue.clone().try_reserve_owned() {
            Ok(permit) => Ok(Slot { permit, name: self.name.clone(), parent: Span::current() }),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Error::overloaded(RETRY_AFTER)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.lost()),
        }
    }

    /// [`Worker::reserve`] then [`Slot::send`].
    pub fn submit<T: Send + 'static>(
        &self,
        kind: &'static str,
        out: mpsc::Sender<Result<T, Error>>,
        work: impl FnOnce(&mut M, &mpsc::Sender<Result<T, Error>>) + Send + 'static,
    ) -> Result<(), Error> {
        self.reserve()?.send(kind, out, work);
        Ok(())
    }

    pub fn health(&self) -> EngineHealth {
        match self.stopped.get() {
            Some(why) => EngineHealth::Unhealthy(format!("{}: {why}", self.name)),
            None if self.queue.is_closed() => {
                EngineHealth::Unhealthy(format!("{}: the model thread exited", self.name))
            }
            None => EngineHealth::Serving,
        }
    }

    fn lost(&self) -> Error {
        let why = self.stopped.get().unwrap_or_else(|| "the model thread exited".into());
        Error::internal(format!("{}: {why}", self.name))
    }
}

impl<M: 'static> Slot<M> {
    /// Queues `work`, which reports on `out`. If it panics, `out` gets `internal_error`.
    pub fn send<T: Send + 'static>(
        self,
        kind: &'static str,
        out: mpsc::Sender<Result<T, Error>>,
        work: impl FnOnce(&mut M, &mpsc::Sender<Result<T, Error>>) + Send + 'static,
    ) {
        let name = self.name;
        let run: Run<M> = Box::new(move |model| {
            let model = match model {
                Ok(model) => model,
                Err(e) => {
                    let _ = out.blocking_send(Err(e));
                    return Outcome::Done;
                }
            };
            match catch_unwind(AssertUnwindSafe(|| work(model, &out))) {
                Ok(()) => Outcome::Done,
                Err(panic) => {
                    let detail = format!("{name}: a {kind} job panicked: {}", message(&*panic));
                    tracing::error!(%detail, "model job panicked");
                    let _ = out.blocking_send(Err(Error::internal(detail)));
                    Outcome::Panicked
                }
            }
        });
        self.permit.send(Job { kind, parent: self.parent, run });
    }

    /// The span of the caller that took the place, for work done before the model.
    pub fn span(&self) -> &Span {
        &self.parent
    }
}

/// The thread's loop: one job at a time until the handle is dropped or the model is unusable.
fn serve<M>(config: &WorkerConfig, mut model: M, mut jobs: mpsc::Receiver<Job<M>>, stopped: &Stopped) {
    let mut panics = 0;
    while let Some(job) = jobs.blocking_recv() {
        let span = tracing::info_span!(parent: &job.parent, "model_job", kind = job.kind, model = %config.name);
        let _entered = span.enter();
        match (job.run)(Ok(&mut model)) {
            Outcome::Done => panics = 0,
            Outcome::Panicked => panics += 1,
        }
        if jobs.is_empty() {
            release_freed_memory();
        }
        if panics >= config.max_consecutive_panics.max(1) {
            let why = format!("stopped after {panics} jobs in a row panicked");
            tracing::error!(model = %config.name, "{why}; the engine reports unhealthy");
            stopped.set(why.clone());
            jobs.close();
            while let Ok(job) = jobs.try_recv() {
                (job.run)(Err(Error::internal(format!("{}: {why}", config.name))));
            }
            return;
        }
    }
}

/// Hands memory the allocator holds freed back to the system: glibc keeps freed blocks in its
/// arenas (one per thread that allocated), so a server's resident size would otherwise carry
/// the largest request's buffers, or the loading's file bytes and float copies, for its whole
/// life. Run when a model goes idle (a few milliseconds, none of them on a request's path).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn message(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

#[cfg(test)]
mod tests;
