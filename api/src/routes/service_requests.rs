//! Service requests (spec 004 and the lifecycle of spec/README.md): commands become jobs; reads come from
//! the `service_requests` projection.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{NaiveDate, Utc};
use ehealth_domain::{
    service_request::{Command, ServiceRequestAggregate},
    Aggregate, ClientType,
};
use ehealth_infra::{identity::Principal, projection::service_request as projection, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{ApiKey, Caller},
    envelope::{self, Paging},
    extract::{JsonBody, Object, OptionalJsonBody, PathId, PathIds, QueryParams},
    intake::{self, CommandRequest},
    openapi::{
        schemas::{
            ErrorResponse, JobAcceptedResponse, JobResponse, ServiceRequestList,
            ServiceRequestResponse,
        },
        CommandHeaders, TAG_SERVICE_REQUESTS,
    },
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
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(use_request))
        .routes(routes!(release))
        .routes(routes!(process))
        .routes(routes!(complete))
        .routes(routes!(recall))
        .routes(routes!(cancel))
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

/// The service request categories (eHealth's `SERVICE_REQUEST_CATEGORIES` dictionary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Laboratory procedure.
    LaboratoryProcedure,
    /// Diagnostic procedure.
    DiagnosticProcedure,
    /// Imaging.
    Imaging,
    /// Counselling.
    Counselling,
    /// Procedure.
    Procedure,
    /// Hospitalization.
    Hospitalization,
    /// Transfer of care.
    TransferOfCare,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 7] = [
        Category::LaboratoryProcedure,
        Category::DiagnosticProcedure,
        Category::Imaging,
        Category::Counselling,
        Category::Procedure,
        Category::Hospitalization,
        Category::TransferOfCare,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::LaboratoryProcedure => "laboratory_procedure",
            Category::DiagnosticProcedure => "diagnostic_procedure",
            Category::Imaging => "imaging",
            Category::Counselling => "counselling",
            Category::Procedure => "procedure",
            Category::Hospitalization => "hospitalization",
            Category::TransferOfCare => "transfer_of_care",
        }
    }
}

/// The longest service code accepted.
pub const MAX_CODE_CHARS: usize = 255;
/// The longest `status_reason` accepted.
pub const MAX_REASON_CHARS: usize = 1000;
/// The latest expiration date accepted (four-digit years, as RFC 3339 `full-date` has).
const LAST_DATE: (i32, u32, u32) = (9999, 12, 31);

/// Body of `POST /api/patients/{patient_id}/service_requests`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"category": "laboratory_procedure", "code": "LAB-001", "program_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "expiration_date": "2030-12-31"}))]
pub struct CreateServiceRequest {
    /// One of the service request categories.
    #[schema(value_type = Category)]
    category: String,
    /// The service code: not blank, at most 255 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    code: String,
    /// The medical program covering it; then `program_processing_status` starts `new`.
    #[serde(default)]
    program_id: Option<Uuid>,
    /// The last day it may be used: today or later (UTC), at most 9999-12-31.
    #[serde(default)]
    expiration_date: Option<NaiveDate>,
}

impl CreateServiceRequest {
    /// The checks that need no stored state: the category list, the code, the date against today.
    fn validate(&self, today: NaiveDate) -> Result<(), ApiError> {
        if !Category::ALL.iter().any(|c| c.as_str() == self.category) {
            let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            return Err(ApiError::invalid(
                "$.category",
                "inclusion",
                &format!(
                    "value is not allowed in enum: expected one of {}",
                    names.join(", ")
                ),
            ));
        }
        if self.code.trim().is_empty() {
            return Err(ApiError::invalid("$.code", "required", "value is required"));
        }
        if self.code.chars().count() > MAX_CODE_CHARS {
            return Err(ApiError::invalid(
                "$.code",
                "length",
                &format!("must be at most {MAX_CODE_CHARS} characters"),
            ));
        }
        if self.code.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "$.code",
                "format",
                "must not contain control characters",
            ));
        }
        if let Some(date) = self.expiration_date {
            if date < today {
                return Err(ApiError::invalid(
                    "$.expiration_date",
                    "invalid",
                    "expiration_date must not be in the past",
                ));
            }
            let (year, month, day) = LAST_DATE;
            if NaiveDate::from_ymd_opt(year, month, day).is_some_and(|last| date > last) {
                return Err(ApiError::invalid(
                    "$.expiration_date",
                    "date",
                    "must be at most 9999-12-31",
                ));
            }
        }
        Ok(())
    }
}

/// Creates a service request (job).
#[utoipa::path(
    post,
    path = "/api/patients/{patient_id}/service_requests",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "create_service_request",
    params(("patient_id" = Uuid, Path, description = "The patient."), CommandHeaders),
    request_body(content = CreateServiceRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Under `Prefer: wait`, or a repeated command whose job ended: created.", body = ServiceRequestResponse,
            headers(("Location" = String, description = "The service request."))),
        (status = 202, description = "Accepted as a job; poll its link.", body = JobAcceptedResponse),
        (status = 303, description = "A repeated command whose job ended, when its resource is not the caller's to read.", body = JobResponse),
        (status = 404, description = "The patient id is not a UUID.", body = ErrorResponse),
        (status = 409, description = "Under `Prefer: wait`: the job's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "The body is not declared as JSON.", body = ErrorResponse),
        (status = 422, description = "The body, a header or the category, code or date is invalid; `invalid[].entry` names it.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:write"], "api_key" = [])),
)]
async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(patient_id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateServiceRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    body.validate(Utc::now().date_naive())?;
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

/// An eHealth reference: `{"identifier":{"type":{"coding":[{"system":…,"code":…}]},"value":…}}`. Every level
/// must be a JSON object ([`Object`]).
#[derive(Debug, Deserialize)]
struct Reference {
    identifier: Object<Identifier>,
}

#[derive(Debug, Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: Object<CodeableConcept>,
    value: Uuid,
}

#[derive(Debug, Deserialize)]
struct CodeableConcept {
    coding: Vec<Object<Coding>>,
}

#[derive(Debug, Deserialize)]
struct Coding {
    system: String,
    code: String,
}

impl Reference {
    /// The referenced id, when the reference is of the expected `code` in `eHealth/resources`.
    fn expect(&self, entry: &str, code: &str) -> Result<Uuid, ApiError> {
        let identifier = &self.identifier.0;
        let coding = identifier.kind.0.coding.first().map(|c| &c.0);
        if coding.is_some_and(|c| c.system == "eHealth/resources" && c.code == code) {
            Ok(identifier.value)
        } else {
            Err(ApiError::invalid(
                &format!("{entry}.identifier.type.coding[0].code"),
                "inclusion",
                &format!("value is not allowed in enum: expected {code} in eHealth/resources"),
            ))
        }
    }
}

/// Body of `…/actions/use`: who uses the service request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "used_by_legal_entity": {"identifier": {"type": {"coding": [{"system": "eHealth/resources", "code": "legal_entity"}]}, "value": "d290f1ee-6c54-4b01-90e6-d701748f0851"}},
    "used_by_employee": {"identifier": {"type": {"coding": [{"system": "eHealth/resources", "code": "employee"}]}, "value": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}}
}))]
pub struct UseServiceRequest {
    /// The caller's own legal entity (`legal_entity` in `eHealth/resources`).
    #[schema(value_type = crate::openapi::schemas::Reference)]
    used_by_legal_entity: Object<Reference>,
    /// An approved doctor of that legal entity (`employee` in `eHealth/resources`).
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::schemas::Reference>)]
    used_by_employee: Option<Object<Reference>>,
}

/// Uses (reserves) a service request (job).
#[utoipa::path(
    patch,
    path = "/api/service_requests/{id}/actions/use",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "use_service_request",
    params(("id" = Uuid, Path, description = "The service request."), CommandHeaders),
    request_body(content = UseServiceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Under `Prefer: wait`: used.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is not the caller's to read: the job.", body = JobResponse),
        (status = 404, description = "The id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "`Action is not allowed for the legal entity`; under `Prefer: wait`: the state's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "The body is not declared as JSON.", body = ErrorResponse),
        (status = 422, description = "The body or a header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:use"], "api_key" = [])),
)]
async fn use_request(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UseServiceRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize(SCOPE_USE)?;
    require_allowed_legal_entity(&state, principal)?;
    let command = Command::Use {
        used_by_legal_entity_id: body
            .used_by_legal_entity
            .0
            .expect("$.used_by_legal_entity", "legal_entity")?,
        used_by_employee_id: body
            .used_by_employee
            .map(|e| e.0.expect("$.used_by_employee", "employee"))
            .transpose()?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

/// Release (spec 004), process and complete: one function, the action named by the route. Who may act on
/// the request is decided by the job (release: the reservation holder or the creator; process and complete:
/// the reservation holder).
async fn bodiless_action(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    headers: &HeaderMap,
    command: Command,
) -> Result<Response, ApiError> {
    let principal = caller.authorize(SCOPE_USE)?;
    require_allowed_legal_entity(state, principal)?;
    intake::enqueue(state, principal, headers, command_request(id, command)).await
}

/// Releases a used service request (spec 004, job): `used_by_*` cleared, `program_processing_status` `new`.
#[utoipa::path(
    patch,
    path = "/api/service_requests/{id}/actions/release",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "release_service_request",
    params(("id" = Uuid, Path, description = "The service request."), CommandHeaders),
    responses(
        (status = 200, description = "Under `Prefer: wait`: released.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is no longer the caller's to read: the job.", body = JobResponse),
        (status = 404, description = "The id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "`Action is not allowed for the legal entity`; under `Prefer: wait`: `Invalid service request status`, `Invalid program processing status`.", body = ErrorResponse),
        (status = 422, description = "A header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:use"], "api_key" = [])),
)]
async fn release(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bodiless_action(&state, &caller, id, &headers, Command::Release).await
}

/// Starts providing a used service request (job).
#[utoipa::path(
    patch,
    path = "/api/service_requests/{id}/actions/process",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "process_service_request",
    params(("id" = Uuid, Path, description = "The service request."), CommandHeaders),
    responses(
        (status = 200, description = "Under `Prefer: wait`: in progress.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is not the caller's to read: the job.", body = JobResponse),
        (status = 403, description = "Under `Prefer: wait`: `You are not allowed to modify this service request`.", body = ErrorResponse),
        (status = 404, description = "The id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "`Action is not allowed for the legal entity`; under `Prefer: wait`: the state's conflict.", body = ErrorResponse),
        (status = 422, description = "A header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:use"], "api_key" = [])),
)]
async fn process(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bodiless_action(&state, &caller, id, &headers, Command::Process).await
}

/// Completes a service request in progress (job).
#[utoipa::path(
    patch,
    path = "/api/service_requests/{id}/actions/complete",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "complete_service_request",
    params(("id" = Uuid, Path, description = "The service request."), CommandHeaders),
    responses(
        (status = 200, description = "Under `Prefer: wait`: completed.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is not the caller's to read: the job.", body = JobResponse),
        (status = 403, description = "Under `Prefer: wait`: `You are not allowed to modify this service request`.", body = ErrorResponse),
        (status = 404, description = "The id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "`Action is not allowed for the legal entity`; under `Prefer: wait`: the state's conflict.", body = ErrorResponse),
        (status = 422, description = "A header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:use"], "api_key" = [])),
)]
async fn complete(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bodiless_action(&state, &caller, id, &headers, Command::Complete).await
}

/// Optional body of recall and cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status_reason": "Ordered by mistake"}))]
pub struct StatusReason {
    /// Why: at most 1000 characters, no NUL character.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00]*$")]
    status_reason: Option<String>,
}

/// The reason of a recall or cancel body, if any.
fn reason(body: Option<StatusReason>) -> Result<Option<String>, ApiError> {
    let reason = body.and_then(|b| b.status_reason);
    if let Some(reason) = &reason {
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(ApiError::invalid(
                "$.status_reason",
                "length",
                &format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }
        if reason.contains('\0') {
            return Err(ApiError::invalid(
                "$.status_reason",
                "format",
                "must not contain the NUL character",
            ));
        }
    }
    Ok(reason)
}

/// Recalls a service request (job): `recalled`.
#[utoipa::path(
    patch,
    path = "/api/patients/{patient_id}/service_requests/{id}/actions/recall",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "recall_service_request",
    params(
        ("patient_id" = Uuid, Path, description = "The patient."),
        ("id" = Uuid, Path, description = "The service request."),
        CommandHeaders,
    ),
    request_body(content = Option<StatusReason>, content_type = "application/json", description = "Optional: an empty body is no reason."),
    responses(
        (status = 200, description = "Under `Prefer: wait`: recalled.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is not the caller's to read: the job.", body = JobResponse),
        (status = 403, description = "Under `Prefer: wait`: not the requester.", body = ErrorResponse),
        (status = 404, description = "An id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "Under `Prefer: wait`: the state's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "A body declared as something other than JSON.", body = ErrorResponse),
        (status = 422, description = "The body or a header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:write"], "api_key" = [])),
)]
async fn recall(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathIds(patient_id, id): PathIds,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<StatusReason>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    let command = Command::Recall {
        patient_id,
        reason: reason(body)?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

/// Cancels a service request entered in error (job): `entered_in_error`.
#[utoipa::path(
    patch,
    path = "/api/patients/{patient_id}/service_requests/{id}/actions/cancel",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "cancel_service_request",
    params(
        ("patient_id" = Uuid, Path, description = "The patient."),
        ("id" = Uuid, Path, description = "The service request."),
        CommandHeaders,
    ),
    request_body(content = Option<StatusReason>, content_type = "application/json", description = "Optional: an empty body is no reason."),
    responses(
        (status = 200, description = "Under `Prefer: wait`: cancelled.", body = ServiceRequestResponse),
        (status = 202, description = "Accepted as a job.", body = JobAcceptedResponse),
        (status = 303, description = "The job ended but the request is not the caller's to read: the job.", body = JobResponse),
        (status = 403, description = "Under `Prefer: wait`: not the requester.", body = ErrorResponse),
        (status = 404, description = "An id is not a UUID; under `Prefer: wait`: `Service request not found`.", body = ErrorResponse),
        (status = 409, description = "Under `Prefer: wait`: the state's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "A body declared as something other than JSON.", body = ErrorResponse),
        (status = 422, description = "The body or a header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:write"], "api_key" = [])),
)]
async fn cancel(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathIds(patient_id, id): PathIds,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<StatusReason>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE_WRITE)?;
    let command = Command::Cancel {
        patient_id,
        reason: reason(body)?,
    };
    intake::enqueue(&state, principal, &headers, command_request(id, command)).await
}

/// Reads one service request: its requester, its user and NHS may.
#[utoipa::path(
    get,
    path = "/api/service_requests/{id}",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "get_service_request",
    params(("id" = Uuid, Path, description = "The service request.")),
    responses(
        (status = 200, description = "The service request.", body = ServiceRequestResponse),
        (status = 403, description = "`You are not allowed to view this service request`, or the caller's checks.", body = ErrorResponse),
        (status = 404, description = "`Service request not found` (or the id is not a UUID).", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:read"], "api_key" = [])),
)]
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
    Ok(envelope::object(StatusCode::OK, row.to_json()))
}

/// `page` (from 1) and `page_size` (1..=100, default 50).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// The page, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000_000)]
    page: Option<String>,
    /// Entries per page, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    page_size: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> Result<(i64, i64), ApiError> {
        Paging::requested(self.page.as_deref(), self.page_size.as_deref())
    }
}

/// A patient's service requests that the caller may read (NHS: all), a page at a time.
#[utoipa::path(
    get,
    path = "/api/patients/{patient_id}/service_requests",
    tag = TAG_SERVICE_REQUESTS,
    operation_id = "list_service_requests",
    params(("patient_id" = Uuid, Path, description = "The patient."), PageQuery),
    responses(
        (status = 200, description = "A page, with `paging`.", body = ServiceRequestList),
        (status = 404, description = "The patient id is not a UUID.", body = ErrorResponse),
        (status = 422, description = "`page` or `page_size` is out of range or given twice.", body = ErrorResponse),
    ),
    security(("bearer" = ["service_request:read"], "api_key" = [])),
)]
async fn list(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    PathId(patient_id): PathId,
    QueryParams(query): QueryParams<PageQuery>,
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
