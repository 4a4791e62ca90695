//! The runner: takes incident ids from a queue and drives each through [`super::Pipeline::drive`].
//!
//! - bounded concurrency (`pipeline.max_concurrent` permits);
//! - **never two pipelines for the same monitor at once**: work for a busy monitor waits its turn, and a
//!   re-queue of the running incident just asks for one more pass after the current one;
//! - resume after restart: at start-up every runnable incident in the store is queued
//!   (test: `tests/api/crash.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Pipeline;
use crate::domain::{IncidentId, MonitorKey};

#[derive(Debug)]
struct Work {
    id: IncidentId,
    key: MonitorKey,
}

/// Handle to the running workers.
#[derive(Clone)]
pub struct Runner {
    tx: mpsc::UnboundedSender<Work>,
    alive: Arc<AtomicBool>,
}

impl Runner {
    /// Starts the dispatcher; it stops when `shutdown` is cancelled, after in-flight passes finish.
    pub fn start(
        pipeline: Arc<Pipeline>,
        max_concurrent: usize,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let handle = tokio::spawn(dispatch(pipeline, rx, max_concurrent, shutdown, alive.clone()));
        (Self { tx, alive }, handle)
    }

    /// Queues an incident for a pass through the pipeline.
    pub fn enqueue(&self, id: IncidentId, key: MonitorKey) {
        if self.tx.send(Work { id, key }).is_err() {
            warn!(%id, "Runner stopped; incident will resume at next start.");
        }
    }

    pub fn is_running(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

async fn dispatch(
    pipeline: Arc<Pipeline>,
    mut rx: mpsc::UnboundedReceiver<Work>,
    max_concurrent: usize,
    shutdown: CancellationToken,
    alive: Arc<AtomicBool>,
) {
    let permits = Arc::new(Semaphore::new(max_concurrent));
    let mut tasks: JoinSet<MonitorKey> = JoinSet::new();
    // Monitor → (incident running now, whether another pass was asked for).
    let mut active: HashMap<MonitorKey, (IncidentId, bool)> = HashMap::new();
    // Monitor → other incidents waiting for it.
    let mut waiting: HashMap<MonitorKey, BTreeSet<IncidentId>> = HashMap::new();

    let spawn = |tasks: &mut JoinSet<MonitorKey>, id: IncidentId, key: MonitorKey| {
        let pipeline = pipeline.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            pipeline.drive(id).await;
            key
        });
    };

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let key = match done {
                    Ok(key) => key,
                    Err(e) => {
                        warn!(error = %e, "A pipeline task panicked; its incident resumes at next start.");
                        continue;
                    }
                };
                match active.remove(&key) {
                    Some((id, true)) => {
                        active.insert(key.clone(), (id, false));
                        spawn(&mut tasks, id, key);
                    }
                    Some((_, false)) | None => {
                        if let Some(next) = waiting.get_mut(&key).and_then(|set| set.pop_first()) {
                            active.insert(key.clone(), (next, false));
                            spawn(&mut tasks, next, key.clone());
                        }
                        if waiting.get(&key).is_some_and(BTreeSet::is_empty) {
                            waiting.remove(&key);
                        }
                    }
                }
            }
            work = rx.recv() => {
                let Some(Work { id, key }) = work else { break };
                match active.get_mut(&key) {
                    Some((running, rerun)) if *running == id => *rerun = true,
                    Some(_) => {
                        waiting.entry(key).or_default().insert(id);
                    }
                    None => {
                        active.insert(key.clone(), (id, false));
                        spawn(&mut tasks, id, key);
                    }
                }
            }
        }
    }
    info!(in_flight = tasks.len(), "Runner stopping; waiting for in-flight pipeline passes.");
    while tasks.join_next().await.is_some() {}
    alive.store(false, Ordering::SeqCst);
}
