//! Service requests (spec 004 and the lifecycle of spec/README.md): commands become jobs; reads come from
//! the `service_requests` projection.

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
    routing::{get, patch},
    Router,
};
use chrono::NaiveDate;
use ehealth_domain::{
    service_request::{Command, ServiceRequestAggregate},
    Aggregate, ClientType,
};
use ehealth_infra::{identity::Principal, projection::service_request as projection, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    auth::{ApiKey, Caller},
    envelope::{self, Paging},
    extract::{parse_json, JsonBody, PathId, PathIds},
    intake::{self, CommandRequest},
    ApiError, AppState,
};

/// Scope to create, recall and cancel.
pub const SCOPE_WRITE: &str = "service_request:write";
/// Scope to use, release, process and complete.
pub const SCOPE_USE: &str = "service_request:use";
/// Scope to read.
pub const SCOPE_READ: &str = "service_request:read";
/// The 409 of spec 004 for a legal entity whose type or status does not allow the action (also decided by
/// the job for a legal entity that may not release this request).
pub use ehealth_domain::service_request::ACTION_NOT_ALLOWED;
/// The 403 for a caller who may not read a service request.
pub const NOT_ALLOWED_TO_VIEW: &str = "You are not allowed to view this service request";
/// The 404 for an unknown service request.
pub const NOT_FOUND: &str = "Service request not found";

/// The service-request routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/patients/{patient_id}/service_requests",
            get(list).post(create),
        )
        .route("/api/service_requests/{id}", get(show))
        .route("/api/service_requests/{id}/actions/use", patch(use_request))
        .route(
            "/api/service_requests/{id}/actions/{action}",
            patch(bodiless_action),
        )
        .route(
            "/api/patients/{patient_id}/service_requests/{id}/actions/recall",
            patch(recall),
        )
        .route(
            "/api/patients/{patient_id}/service_requests/{id}/actions/cancel",
            patch(cancel),
        )
}

/// The job of `command` on service request `id`. The command holds nothing the server made, so it is its own
/// fingerprint; create, which makes the id, sets its own.
fn command_request(id: Uuid, command: Command) -> CommandRequest {
    let job_type = format!(
        "{}.{}",
        ServiceRequestAggregate::STREAM_TYPE,
        command.name()
    );
    let command = serde_json::to_value(&command).unwrap_or_default();
    CommandRequest {
        job_type,
        stream_type: ServiceRequestAggregate::STREAM_TYPE,
        stream_id: id,
        fingerprint: json!({ "stream_id": id, "command": command }),
        command,
    }
}

/// Spec 004: the caller's legal entity type must be in `ME_ALLOWED_TRANSACTIONS_LE_TYPES` and its status
/// active, else 409 "Action is not allowed for the legal entity".
fn require_allowed_legal_entity(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let allowed = state
        .allowed_le_types
        .contains(&principal.legal_entity_type);
    if allowed && principal.legal_entity_status == "ACTIVE" {
        Ok(())
    } else {
        Err(ApiError::conflict(ACTION_NOT_ALLOWED))
    }
}

/// Body of `POST /api/patients/{patient_id}/service_requests`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    category: String,
    code: String,
    #[serde(default)]
    program_id: Option<Uuid>,
    #[serde(default)]
    expiration_date: Option<NaiveDate>,
}

async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(patient_id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    // What the client asked for, without the id made here: a repeated create is recognised by it.
    let fingerprint = json!({ "patient_id": patient_id, "body": body });
    let id = Uuid::new_v4();
    let command = Command::Create {
        id,
        patient_id,
        category: body.category,
        code: body.code,
        program_id: body.program_id,
        expiration_date: body.expiration_date,
    };
    let request = CommandRequest {
        fingerprint,
        ..command_request(id, command)
    };
    intake::enqueue(&state, principal, &headers, request).await
}

/// An eHealth reference: `{"identifier":{"type":{"coding":[{"system":…,"code":…}]},"value":…}}`.
#[derive(Debug, Deserialize)]
struct Reference {
    identifier: Identifier,
}

#[derive(Debug, Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: CodeableConcept,
    value: Uuid,
}

#[derive(Debug, Deserialize)]
struct CodeableConcept {
    coding: Vec<Coding>,
}

#[derive(Debug, Deserialize)]
struct Coding {
    system: String,
    code: String,
}

impl Reference {
    /// The referenced id, when the reference is of the expected `code` in `eHealth/resources`.
    fn expect(&self, entry: &str, code: &str) -> Result<Uuid, ApiError> {
        let coding = self.identifier.kind.coding.first();
        if coding.is_some_and(|c| c.system == "eHealth/resources" && c.code == code) {
            Ok(self.identifier.value)
        } else {
            Err(ApiError::invalid(
                &format!("{entry}.identifier.type.coding[0].code"),
                "inclusion",
                &format!("value is not allowed in enum: expected {code} in eHealth/resources"),
            ))
        }
    }
}

/// Body of `…/actions/use`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UseBody {
    used_by_legal_entity: Reference,
    #[serde(default)]
    used_by_employee: Option<Reference>,
}

async fn use_request(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UseBody>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize(SCOPE_USE)?;
    require_allowed_legal_entity(&state, principal)?;
    let command = Command::Use {
        used_by_legal_entity_id: body
            .used_by_legal_entity
            .expect("$.used_by_legal_entity", "legal_entity")?,
        used_by_employee_id: body
            .used_by_employee
            .map(|e| e.expect("$.used_by_employee", "employee"))
            .transpose()?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

/// Release (spec 004), process and complete: one handler, the action named by the path. Who may act on
/// the request is decided by the job (release: the reservation holder or the creator; process and complete:
/// the reservation holder).
async fn bodiless_action(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("Resource not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let command = match action.as_str() {
        "release" => Command::Release,
        "process" => Command::Process,
        "complete" => Command::Complete,
        _ => return Err(not_found()),
    };
    let principal = caller.authorize(SCOPE_USE)?;
    require_allowed_legal_entity(&state, principal)?;
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

/// Optional body of recall and cancel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    status_reason: Option<String>,
}

fn reason(body: &Bytes) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: ReasonBody = parse_json(body)?;
    if parsed
        .status_reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        return Err(ApiError::invalid(
            "$.status_reason",
            "length",
            "must be at most 1000 characters",
        ));
    }
    Ok(parsed.status_reason)
}

async fn recall(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathIds(patient_id, id): PathIds,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    let command = Command::Recall {
        patient_id,
        reason: reason(&body)?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

async fn cancel(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathIds(patient_id, id): PathIds,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    let command = Command::Cancel {
        patient_id,
        reason: reason(&body)?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

async fn show(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_READ)?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let row = projection::get(&client, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND))?;
    if principal.client_type != ClientType::Nhs && !row.visible_to(principal.legal_entity_id) {
        return Err(ApiError::forbidden(NOT_ALLOWED_TO_VIEW));
    }
    Ok(envelope::object(axum::http::StatusCode::OK, row.to_json()))
}

/// `page` (from 1) and `page_size` (1..=100, default 50).
#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<String>,
    page_size: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> Result<(i64, i64), ApiError> {
        let number = |value: &Option<String>, entry: &str, default: i64, max: i64| match value {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(
                        entry,
                        "number",
                        &format!("expected an integer from 1 to {max}"),
                    )
                }),
        };
        Ok((
            number(&self.page, "$.page", 1, i64::MAX / 1000)?,
            number(&self.page_size, "$.page_size", 50, 100)?,
        ))
    }
}

async fn list(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(patient_id): PathId,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_READ)?;
    let (page, page_size) = query.parse()?;
    let visible_to =
        (principal.client_type != ClientType::Nhs).then_some(principal.legal_entity_id);
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let (rows, total) = projection::list_by_patient(
        &client,
        patient_id,
        visible_to,
        page_size,
        (page - 1) * page_size,
    )
    .await?;
    let paging = Paging {
        page_number: page,
        page_size,
        total_entries: total,
    };
    Ok(envelope::list(
        rows.iter().map(|r| r.to_json()).collect(),
        paging,
    ))
}
