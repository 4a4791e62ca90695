//! The JSON API described from the code (utoipa) at `GET /api/openapi.json` (no token: it holds no data).
//! Handlers carry their `#[utoipa::path]`; the types they answer with derive `ToSchema`. The few answers
//! built as JSON values (webhook answers, the gate's verdict, errors) are described by the shapes below,
//! and `tests/api/openapi.rs` validates real responses against the document.

use axum::Json;
use serde::Serialize;
use utoipa::OpenApi;

/// A webhook's or `POST /api/v1/incidents`'s answer once the event is durable.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    /// opened, joined, recovered, fix_confirmed, recorded or notice.
    pub action: String,
    #[schema(format = Uuid)]
    pub incident_id: Option<String>,
}

/// Alertmanager's answer: one entry per alert of the notification.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertmanagerAnswer {
    pub alerts: Vec<AlertAnswer>,
    pub truncated_alerts: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertAnswer {
    pub monitor_id: Option<String>,
    pub action: String,
    #[schema(format = Uuid)]
    pub incident_id: Option<String>,
}

/// The gate's verdict on a command (never executes).
#[derive(Serialize, utoipa::ToSchema)]
pub struct GateVerdict {
    /// allow, needs_approval or deny.
    pub verdict: String,
    pub reason: String,
    /// The template the command matched, if any.
    pub template: Option<String>,
    /// The canonical argv the gate rebuilt (empty when denied).
    pub argv: Vec<String>,
}

/// Every 4xx and 5xx.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "medic", description = "Self-healing incident pipeline: webhooks in, gated fixes out."),
    paths(
        super::hooks::uptime_kuma,
        super::hooks::alertmanager,
        super::api::create_incident,
        super::api::list_incidents,
        super::api::show_incident,
        super::gate::check,
        super::gate::dry_run_state,
        super::gate::set_dry_run,
        super::probes::list,
        super::hosts::list,
        super::hosts::show,
        super::hosts::alerts,
        super::probes::send_report,
        super::stages::gate,
        super::stages::execute,
        super::stages::collect,
        super::stages::escalate,
        super::stages::diagnose,
    ),
    components(schemas(IngestAnswer, AlertmanagerAnswer, AlertAnswer, GateVerdict, ErrorBody)),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("token", Vec::<String>::new())]);
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
