//! Where every alert enters, whatever its source (webhooks, the JSON API, medic's own probes): stored
//! durably first, then a new incident goes to the runner, a recovery is announced, and a notice (an
//! expiry warning, a slow probe) goes to the channels that take the `warning` event. Nothing after the
//! commit can fail the caller: a notification that cannot be queued is logged.

use std::sync::Arc;

use crate::domain::{Alert, IncidentId, MonitorKey, Notice};
use crate::notify::{EventDetails, Notifier, NotifyEvent};
use crate::store::{IncidentRecord, IngestAction, IngestOutcome, Store, StoreError};

use super::Runner;

#[derive(Clone)]
pub struct Intake {
    store: Store,
    runner: Runner,
    notifier: Arc<Notifier>,
    /// Sources whose incidents wait for an orchestrator.
    external: Vec<crate::domain::Source>,
}

fn key_of(alert: &Alert) -> Option<MonitorKey> {
    match alert {
        Alert::Status(s) => Some(s.key.clone()),
        Alert::Notice(_) => None,
    }
}

impl Intake {
    pub fn new(store: Store, runner: Runner, notifier: Arc<Notifier>, external: Vec<crate::domain::Source>) -> Self {
        Self { store, runner, notifier, external }
    }

    /// Why a new incident from `alert` waits instead of going to the runner.
    fn parking(&self) -> impl Fn(&Alert) -> Option<String> + Send + 'static {
        let external = self.external.clone();
        move |alert| match alert {
            Alert::Status(s) if external.contains(&s.key.source) => Some(super::orchestrated::WAITING.to_string()),
            _ => None,
        }
    }

    /// Stores one alert (answer only after the commit) and starts what follows from it.
    pub async fn accept(&self, alert: Alert, body: String) -> Result<IngestOutcome, StoreError> {
        let key = key_of(&alert);
        let notice = match &alert {
            Alert::Notice(n) => Some(n.clone()),
            Alert::Status(_) => None,
        };
        let outcome = self.store.ingest_all_parking(vec![(alert, body)], self.parking()).await?.remove(0);
        self.after(&outcome, key).await;
        if let Some(notice) = notice {
            self.forward_notice(&notice).await;
        }
        Ok(outcome)
    }

    /// Stores every alert of one delivery in one transaction, or none.
    pub async fn accept_all(&self, alerts: Vec<(Alert, String)>) -> Result<Vec<IngestOutcome>, StoreError> {
        let keys: Vec<Option<MonitorKey>> = alerts.iter().map(|(a, _)| key_of(a)).collect();
        let outcomes = self.store.ingest_all_parking(alerts, self.parking()).await?;
        for (outcome, key) in outcomes.iter().zip(keys) {
            self.after(outcome, key).await;
        }
        Ok(outcomes)
    }

    async fn after(&self, outcome: &IngestOutcome, key: Option<MonitorKey>) {
        if let (IngestAction::Opened, Some(id), Some(key)) = (outcome.action, outcome.incident_id, key) {
            self.runner.enqueue(id, key);
        }
        if let (IngestAction::Recovered, Some(id)) = (outcome.action, outcome.incident_id) {
            self.notify_recovery(id).await;
        }
    }

    /// Expiry warnings and other notices go to the channels that take the `warning` event.
    pub async fn forward_notice(&self, notice: &Notice) {
        let rows = match self.notifier.notice_rows(notice) {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "Could not build a notice notification.");
                return;
            }
        };
        let queued =
            self.store.write(move |ctx| rows.iter().try_for_each(|row| crate::notify::outbox::enqueue(ctx, row))).await;
        if let Err(e) = queued {
            tracing::warn!(error = %e, "Could not queue a notice notification.");
        }
        self.notifier.kick();
    }

    async fn notify_recovery(&self, id: IncidentId) {
        let Ok(Some(incident)) = self.store.incident(id).await else { return };
        let details = EventDetails {
            result: incident.outage_seconds.map(|s| format!("recovered by itself after {s:.1} s")),
            ..Default::default()
        };
        self.persist(NotifyEvent::Recovery, &incident, &details).await;
    }

    async fn persist(&self, event: NotifyEvent, incident: &IncidentRecord, details: &EventDetails) {
        let prepared = self.notifier.prepare_or_log(event, incident, details);
        if prepared.is_empty() {
            return;
        }
        if let Err(e) = self.store.write(move |ctx| prepared.persist(ctx)).await {
            tracing::warn!(error = %e, "Could not queue a notification.");
        }
        self.notifier.kick();
    }
}
