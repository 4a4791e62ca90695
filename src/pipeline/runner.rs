//! The runner: claims runnable incidents from the store and drives each through
//! [`super::Pipeline::drive`].
//!
//! - **Work comes from the store, not from a queue in memory**: when a worker is free, the runner asks
//!   the store for the oldest runnable incidents (an index over open, unparked incidents) and claims as
//!   many as it has free workers. Memory does not grow with the backlog, an incident committed is
//!   processed even if the HTTP client that sent it vanished before its 202, and after a restart the
//!   backlog simply is what the store holds (test: `tests/api/crash.rs`, `pipeline` benchmark);
//! - bounded concurrency (`pipeline.max_concurrent` workers);
//! - **never two pipelines for the same monitor at once**: the store keeps at most one open incident per
//!   monitor, and an incident already running is never claimed again;
//! - [`Runner::enqueue`] only wakes the runner (and lifts the short pause that keeps an incident that
//!   just finished a pass still runnable, e.g. after a store failure, from being retried in a loop).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Pipeline;
use crate::domain::{IncidentId, MonitorKey};
use crate::store::Store;

/// How long an incident that is still runnable after a pass waits before it is claimed again.
const PAUSE_AFTER_PASS: Duration = Duration::from_secs(2);

/// Handle to the running workers.
#[derive(Clone)]
pub struct Runner {
    wake: Arc<Notify>,
    nudged: Arc<Mutex<HashSet<IncidentId>>>,
    alive: Arc<AtomicBool>,
    /// Incidents a stage call (the orchestrator's) is working on: never claimed meanwhile.
    held: Arc<Mutex<HashSet<IncidentId>>>,
}

/// While alive, the runner does not claim the incident (see [`Runner::hold`]).
pub struct Hold {
    id: IncidentId,
    held: Arc<Mutex<HashSet<IncidentId>>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.held.lock().expect("runner lock").remove(&self.id);
    }
}

impl Runner {
    /// Starts the dispatcher; it stops when `shutdown` is cancelled, after in-flight passes finish.
    pub fn start(
        pipeline: Arc<Pipeline>,
        store: Store,
        max_concurrent: usize,
        lease: Duration,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let runner = Self {
            wake: Arc::new(Notify::new()),
            nudged: Arc::new(Mutex::new(HashSet::new())),
            alive: Arc::new(AtomicBool::new(true)),
            held: Arc::new(Mutex::new(HashSet::new())),
        };
        let handle = tokio::spawn(dispatch(pipeline, store, max_concurrent.max(1), lease, shutdown, runner.clone()));
        (runner, handle)
    }

    /// Keeps the runner off `id` until the returned guard is dropped (a stage call drives it meanwhile).
    /// None when the runner is driving it already.
    pub fn hold(&self, id: IncidentId) -> Option<Hold> {
        self.held.lock().expect("runner lock").insert(id).then(|| Hold { id, held: self.held.clone() })
    }

    /// Asks for a pass over `id` (new, approved, re-opened): the runner claims it from the store.
    pub fn enqueue(&self, id: IncidentId, _key: MonitorKey) {
        self.nudged.lock().expect("runner lock").insert(id);
        self.wake.notify_one();
    }

    /// Wakes the runner to look for work (at start-up: the backlog the store holds).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn is_running(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

async fn dispatch(
    pipeline: Arc<Pipeline>,
    store: Store,
    max_concurrent: usize,
    lease: Duration,
    shutdown: CancellationToken,
    runner: Runner,
) {
    let mut renewed = Instant::now();
    let mut tasks: JoinSet<IncidentId> = JoinSet::new();
    let mut running: HashSet<IncidentId> = HashSet::new();
    // Incidents that finished a pass recently, until when they are left alone.
    let mut paused: HashMap<IncidentId, Instant> = HashMap::new();
    let mut store_failing = false;
    loop {
        // Claim work while workers are free.
        if tasks.len() < max_concurrent && !shutdown.is_cancelled() {
            let now = Instant::now();
            paused.retain(|_, until| *until > now);
            for id in runner.nudged.lock().expect("runner lock").drain() {
                paused.remove(&id);
            }
            let free = max_concurrent - tasks.len();
            let limit = free + running.len() + paused.len();
            match store.next_runnable(limit).await {
                Ok(candidates) => {
                    store_failing = false;
                    let held = runner.held.lock().expect("runner lock").clone();
                    let wanted: Vec<IncidentId> = candidates
                        .into_iter()
                        .filter(|id| !running.contains(id) && !paused.contains_key(id) && !held.contains(id))
                        .take(free)
                        .collect();
                    // Another replica may have claimed some since the read: only those won run here.
                    let claimed = match store.claim(wanted, lease).await {
                        Ok(won) => won,
                        Err(e) => {
                            warn!(error = %e, "Cannot claim incidents; retrying.");
                            Vec::new()
                        }
                    };
                    for id in claimed {
                        running.insert(id);
                        let pipeline = pipeline.clone();
                        tasks.spawn(async move {
                            // A panic ends this pass only; the incident is claimed again after the pause.
                            let pass = std::panic::AssertUnwindSafe(pipeline.drive(id));
                            if futures::FutureExt::catch_unwind(pass).await.is_err() {
                                warn!(incident_id = %id, "A pipeline pass panicked.");
                            }
                            id
                        });
                    }
                }
                Err(e) => {
                    if !store_failing {
                        warn!(error = %e, "Cannot read runnable incidents; retrying.");
                    }
                    store_failing = true;
                }
            }
        }
        // Running passes keep their leases alive (a third of the lease between renewals).
        if !running.is_empty() && renewed.elapsed() >= lease / 3 {
            renewed = Instant::now();
            if let Err(e) = store.renew(running.iter().copied().collect(), lease).await {
                warn!(error = %e, "Cannot renew incident leases.");
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(id) = done {
                    running.remove(&id);
                    if let Err(e) = store.release(id).await {
                        warn!(incident_id = %id, error = %e, "Cannot release the incident's lease; it expires by itself.");
                    }
                    paused.insert(id, Instant::now() + PAUSE_AFTER_PASS);
                }
            }
            _ = runner.wake.notified() => {}
            // Paused incidents become claimable again; a failing store is asked again.
            _ = tokio::time::sleep(Duration::from_millis(500).min(lease / 3)) => {}
        }
    }
    info!(in_flight = tasks.len(), "Runner stopping; waiting for in-flight pipeline passes.");
    while tasks.join_next().await.is_some() {}
    runner.alive.store(false, Ordering::SeqCst);
}
