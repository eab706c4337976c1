//! Contract requests (spec 003 and the spec reading's "Lifecycles"): a draft with two presigned upload links
//! (synchronous), create and the lifecycle actions as jobs (the domain decides), reads from the
//! `contract_requests` projection with `urgent.documents` for the objects that exist.

use std::{borrow::Cow, sync::LazyLock};

use axum::{
    extract::{FromRequest, FromRequestParts as _, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use ehealth_domain::{
    contract_request::{
        additional_document_key, not_found_message, signed_content_key, statute_key, Approval,
        Command, ContractRequestAggregate, ContractType, CreateRequest, DocumentType, Status,
        NOT_ALLOWED,
    },
    Aggregate, ClientType,
};
use ehealth_infra::{
    identity::Principal,
    projection::contract_request::{self as projection, ContractRequestRow, ListFilter},
    storage::contract_documents::decode_base64,
    StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{
    openapi::{schema::Schema, RefOr},
    IntoParams, ToSchema,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{ApiKey, Caller},
    envelope::{self, Paging},
    extract::{JsonBody, OptionalJsonBody, QueryParams},
    intake::{self, CommandRequest},
    json_schema::BodySchema,
    openapi::{
        schemas::{ErrorResponse, JobAcceptedResponse, Meta, Paging as PagingSchema},
        CommandHeaders,
    },
    ApiError, AppState,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "contract requests (spec 003)";
/// Scope of the draft and create.
pub const SCOPE_CREATE: &str = "contract_request:create";
/// Scope of the reads.
pub const SCOPE_READ: &str = "contract_request:read";
/// Scope of `assign`.
pub const SCOPE_UPDATE: &str = "contract_request:update";
/// Scope of `approve`, `decline` and `approve_msp`.
pub const SCOPE_APPROVE: &str = "contract_request:approve";
/// Scope of `sign_nhs` and `sign_msp`.
pub const SCOPE_SIGN: &str = "contract_request:sign";
/// Scope of `terminate`.
pub const SCOPE_TERMINATE: &str = "contract_request:terminate";
/// Every scope of these routes.
pub const SCOPES: [&str; 6] = [
    SCOPE_CREATE,
    SCOPE_READ,
    SCOPE_UPDATE,
    SCOPE_APPROVE,
    SCOPE_SIGN,
    SCOPE_TERMINATE,
];
/// Document 003's 403 for a personal token of another legal entity (or a client type that is no contractor
/// of the path's type).
pub const NOT_ALLOWED_TO_VIEW: &str = "You are not allowed to view this contract request";
/// The largest signed content accepted, decoded.
pub const MAX_SIGNED_CONTENT_BYTES: usize = 1024 * 1024;
/// The longest `status_reason` accepted.
pub const MAX_REASON_CHARS: usize = 1000;

/// The CAPITATION create body's schema: `api/schemas/contract_request_capitation.json`.
pub static CAPITATION_SCHEMA: LazyLock<BodySchema> = LazyLock::new(|| {
    BodySchema::compile(include_str!(
        "../../schemas/contract_request_capitation.json"
    ))
});
/// The REIMBURSEMENT create body's schema: `api/schemas/contract_request_reimbursement.json`.
pub static REIMBURSEMENT_SCHEMA: LazyLock<BodySchema> = LazyLock::new(|| {
    BodySchema::compile(include_str!(
        "../../schemas/contract_request_reimbursement.json"
    ))
});

fn schema_of(contract_type: ContractType) -> &'static BodySchema {
    match contract_type {
        ContractType::Capitation => &CAPITATION_SCHEMA,
        ContractType::Reimbursement => &REIMBURSEMENT_SCHEMA,
    }
}

/// The create body: the schema file of the path's type (both shown, `anyOf`).
pub struct CreateContractRequestBody;

impl utoipa::PartialSchema for CreateContractRequestBody {
    fn schema() -> RefOr<Schema> {
        let any_of = json!({
            "description": "The schema file of the path's `contract_type`: api/schemas/contract_request_capitation.json or api/schemas/contract_request_reimbursement.json.",
            "anyOf": [
                serde_json::to_value(CAPITATION_SCHEMA.openapi_schema()).unwrap_or_default(),
                serde_json::to_value(REIMBURSEMENT_SCHEMA.openapi_schema()).unwrap_or_default(),
            ],
        });
        serde_json::from_value(any_of).unwrap_or_else(|_| CAPITATION_SCHEMA.openapi_schema())
    }
}

impl ToSchema for CreateContractRequestBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CreateContractRequestBody")
    }
}

/// `capitation` or `reimbursement` (the upper-case forms too).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContractTypePath {
    /// CAPITATION.
    Capitation,
    /// REIMBURSEMENT.
    Reimbursement,
}

/// A lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// NHS assigns it to one of its employees (`{"employee_id"}`; scope `contract_request:update`).
    Assign,
    /// NHS approves it (`{"nhs_signer_id","nhs_signer_base","nhs_contract_price","nhs_payment_method","issue_city"}`;
    /// `contract_request:approve`).
    Approve,
    /// NHS declines it (`{"status_reason"}`; `contract_request:approve`).
    Decline,
    /// The contractor accepts NHS's terms (no body; `contract_request:approve`).
    ApproveMsp,
    /// NHS signs (`{"signed_content"}` base64; `contract_request:sign`).
    SignNhs,
    /// The contractor signs (`{"signed_content"}` base64; `contract_request:sign`).
    SignMsp,
    /// NHS or the contractor terminates it (`{"status_reason"}`; `contract_request:terminate`).
    Terminate,
}

impl Action {
    const ALL: [Action; 7] = [
        Action::Assign,
        Action::Approve,
        Action::Decline,
        Action::ApproveMsp,
        Action::SignNhs,
        Action::SignMsp,
        Action::Terminate,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Action::Assign => "assign",
            Action::Approve => "approve",
            Action::Decline => "decline",
            Action::ApproveMsp => "approve_msp",
            Action::SignNhs => "sign_nhs",
            Action::SignMsp => "sign_msp",
            Action::Terminate => "terminate",
        }
    }

    fn scope(self) -> &'static str {
        match self {
            Action::Assign => SCOPE_UPDATE,
            Action::Approve | Action::Decline | Action::ApproveMsp => SCOPE_APPROVE,
            Action::SignNhs | Action::SignMsp => SCOPE_SIGN,
            Action::Terminate => SCOPE_TERMINATE,
        }
    }
}

/// The body of an action (every field belongs to one action: see [`Action`]).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// assign: an active employee of NHS.
    #[serde(default)]
    employee_id: Option<Uuid>,
    /// approve: an active employee of NHS who signs.
    #[serde(default)]
    nhs_signer_id: Option<Uuid>,
    /// approve: on what grounds.
    #[serde(default)]
    #[schema(max_length = 1000)]
    nhs_signer_base: Option<String>,
    /// approve: the price, ≥ 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    nhs_contract_price: Option<f64>,
    /// approve: `BACKWARD` or `FORWARD`.
    #[serde(default)]
    nhs_payment_method: Option<String>,
    /// approve: the city.
    #[serde(default)]
    #[schema(max_length = 255)]
    issue_city: Option<String>,
    /// decline, terminate: why.
    #[serde(default)]
    #[schema(max_length = 1000)]
    status_reason: Option<String>,
    /// sign_nhs, sign_msp: the signed content, base64, at most 1 MiB decoded.
    #[serde(default)]
    signed_content: Option<String>,
    /// sign_nhs, sign_msp: `base64` (the only encoding).
    #[serde(default)]
    signed_content_encoding: Option<String>,
}

/// The draft's answer: the new id and the two upload links.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractRequestDraft {
    /// The id to create the request with.
    pub id: Uuid,
    /// Presigned `PUT` of the statute (`{id}/media/contract_request_statute.pdf`).
    pub statute_url: String,
    /// Presigned `PUT` of the additional document.
    pub additional_document_url: String,
}

/// `{"meta","data":{id,statute_url,additional_document_url}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractRequestDraftResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// The draft.
    pub data: ContractRequestDraft,
}

/// Document 003's `data`: the full contract request. REIMBURSEMENT adds `medical_programs` and has no
/// `contractor_rmsp_amount`, divisions, employees or external contractors. Unset fields are `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractRequest {
    /// Id.
    pub id: Uuid,
    /// `CAPITATION` or `REIMBURSEMENT`.
    pub contract_type: String,
    /// `{id, name, edrpou, addresses}`.
    pub contractor_legal_entity: Value,
    /// `{id, party:{first_name,last_name,second_name}}`.
    pub contractor_owner: Value,
    /// On what grounds the owner signs.
    pub contractor_base: String,
    /// `{bank_name, MFO, payer_account}`.
    pub contractor_payment_details: Value,
    /// CAPITATION: registered population.
    pub contractor_rmsp_amount: Option<Value>,
    /// CAPITATION: `[{id,name,addresses,phones,email,working_hours,mountain_group}]`.
    pub contractor_divisions: Option<Vec<Value>>,
    /// CAPITATION: `[{employee:{id,party,speciality},staff_units,declaration_limit,division_id}]`.
    pub contractor_employee_divisions: Option<Vec<Value>>,
    /// CAPITATION.
    pub external_contractor_flag: Option<Value>,
    /// CAPITATION: `[{legal_entity:{id,name},contract:{number,issued_at,expires_at},divisions:[{id,name,medical_service}]}]`.
    pub external_contractors: Option<Vec<Value>>,
    /// Contract form.
    pub id_form: String,
    /// `{id, party}` (approve).
    pub nhs_signer: Option<Value>,
    /// `{id, name, edrpou, addresses}` (approve).
    pub nhs_legal_entity: Option<Value>,
    /// NHS signer's grounds.
    pub nhs_signer_base: Option<String>,
    /// Price (approve).
    pub nhs_contract_price: Option<f64>,
    /// `BACKWARD` or `FORWARD`.
    pub nhs_payment_method: Option<String>,
    /// `NEW`, `IN_PROCESS`, `APPROVED`, `DECLINED`, `PENDING_NHS_SIGN`, `NHS_SIGNED`, `SIGNED`, `TERMINATED`.
    pub status: String,
    /// Why it was declined or terminated.
    pub status_reason: Option<String>,
    /// Issue city.
    pub issue_city: Option<String>,
    /// Set by approve.
    pub contract_number: Option<String>,
    /// Always `null`: no contract is made here.
    pub contract_id: Option<Uuid>,
    /// The contract it continues.
    pub parent_contract_id: Option<Uuid>,
    /// First day.
    pub start_date: String,
    /// Last day (terminate: the day it was terminated).
    pub end_date: String,
    /// Always `null`.
    pub printout_content: Option<String>,
    /// The request it replaces.
    pub previous_request_id: Option<Uuid>,
    /// The NHS employee it is assigned to.
    pub assignee_id: Option<Uuid>,
    /// REIMBURSEMENT: the medical programs.
    pub medical_programs: Option<Vec<Uuid>>,
}

/// One of `urgent.documents`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UrgentDocument {
    /// `CONTRACT_REQUEST_STATUTE`, `CONTRACT_REQUEST_ADDITIONAL_DOCUMENT` or `SIGNED_CONTENT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A presigned `GET` (`PRESIGN_TTL_SECONDS`).
    pub url: String,
}

/// `urgent`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Urgent {
    /// The request's documents that exist, by status.
    pub documents: Vec<UrgentDocument>,
}

/// Document 003's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractRequestResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// The request.
    pub data: ContractRequest,
    /// Links to its documents.
    pub urgent: Urgent,
}

/// A page of contract requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractRequestList {
    /// See [`Meta`] (`list`).
    pub meta: Meta,
    /// The page.
    pub data: Vec<ContractRequest>,
    /// Paging.
    pub paging: PagingSchema,
}

/// The contract-request routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(draft, list))
        .routes(routes!(create, show))
        .routes(routes!(action))
}

/// The path's contract type; anything but the two names (either case) is 404.
fn contract_type(segment: &str) -> Result<ContractType, ApiError> {
    ContractType::from_path(segment).ok_or(ApiError::RouteNotFound)
}

fn uuid(segment: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(segment).map_err(|_| ApiError::not_found("Resource not found"))
}

/// The raw path parameters, percent-decoded (empty when one is not UTF-8).
async fn path_params(parts: &mut axum::http::request::Parts) -> Vec<String> {
    match axum::extract::RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The request's contract type (its first path parameter: 404 for an unknown one) and raw path parameters,
/// read before anything else; the request is handed back whole for a body read after the caller's checks.
async fn contract_path(request: Request) -> Result<(ContractType, Vec<String>, Request), ApiError> {
    let (mut parts, body) = request.into_parts();
    let params = path_params(&mut parts).await;
    let contract_type = contract_type(params.first().map_or("", String::as_str))?;
    Ok((contract_type, params, Request::from_parts(parts, body)))
}

/// A token that may act as the contractor of `contract_type` (MSP/PRIMARY_CARE: CAPITATION, PHARMACY:
/// REIMBURSEMENT, MSP_PHARMACY: both), else 403 "User is not allowed to perform this action".
fn require_contractor(principal: &Principal, contract_type: ContractType) -> Result<(), ApiError> {
    if contract_type.contractor_client(principal.client_type) {
        Ok(())
    } else {
        Err(ApiError::forbidden(NOT_ALLOWED))
    }
}

/// Document 003's context check: NHS sees every request; a personal token only its own legal entity's
/// requests of a type it is a contractor of; any other token none.
fn may_view(
    principal: &Principal,
    contract_type: ContractType,
    row: Option<&ContractRequestRow>,
) -> bool {
    match principal.client_type {
        ClientType::Nhs => true,
        t if t.is_personal() && contract_type.contractor_client(t) => {
            row.is_none_or(|r| r.contractor_legal_entity_id == principal.legal_entity_id)
        }
        _ => false,
    }
}

/// Starts a contract request: a new id and presigned `PUT` links for its statute and additional document.
#[utoipa::path(
    post,
    path = "/api/contract_requests/{contract_type}",
    tag = TAG,
    operation_id = "draft_contract_request",
    params(("contract_type" = inline(ContractTypePath), Path, description = "`capitation` or `reimbursement` (upper case too).")),
    responses(
        (status = 201, description = "The id and the two upload links (`PRESIGN_TTL_SECONDS`); upload both PDFs, then create with their MD5s.", body = ContractRequestDraftResponse),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, or `User is not allowed to perform this action` (a client type that is no contractor of this type).", body = ErrorResponse),
        (status = 404, description = "An unknown contract type.", body = ErrorResponse),
    ),
    security(("bearer" = ["contract_request:create"], "api_key" = [])),
)]
async fn draft(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let (contract_type, _, _) = contract_path(request).await?;
    let principal = caller.authorize_active(SCOPE_CREATE)?;
    require_contractor(principal, contract_type)?;
    let id = Uuid::new_v4();
    let storage = &state.storage;
    let bucket = &storage.contract_requests_bucket;
    let (statute_key, additional_key) = (statute_key(id), additional_document_key(id));
    let (statute, additional) = tokio::try_join!(
        storage.presign_put(bucket, &statute_key, storage.presign_ttl),
        storage.presign_put(bucket, &additional_key, storage.presign_ttl),
    )
    .map_err(StoreError::from)?;
    Ok(envelope::object(
        StatusCode::CREATED,
        json!({ "id": id, "statute_url": statute.url, "additional_document_url": additional.url }),
    ))
}

/// Creates the contract request from the uploaded documents and the body (job): NEW.
#[utoipa::path(
    post,
    path = "/api/contract_requests/{contract_type}/{id}",
    tag = TAG,
    operation_id = "create_contract_request",
    params(
        ("contract_type" = inline(ContractTypePath), Path, description = "`capitation` or `reimbursement`."),
        ("id" = Uuid, Path, description = "The draft's id."),
        CommandHeaders,
    ),
    request_body(content = CreateContractRequestBody, content_type = "application/json", description = "Validated against the schema file of the path's type (api/schemas/contract_request_capitation.json, api/schemas/contract_request_reimbursement.json)."),
    responses(
        (status = 201, description = "Under `Prefer: wait`: created (document 003's `data`).", body = Value),
        (status = 202, description = "Accepted as a job. The job fails 409 `Failed to move uploaded documents: statute not found` / `…: additional document not found` / `…: statute does not match statute_md5` / `…: additional document does not match additional_document_md5` / `Contract request already exists`, 403 `Client is not active`, 422 for an owner, division, employee or external contractor that is not the caller's (active) one, or dates out of order or past.", body = JobAcceptedResponse),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, `User is not allowed to perform this action`.", body = ErrorResponse),
        (status = 404, description = "An unknown contract type or an id that is not a UUID.", body = ErrorResponse),
        (status = 409, description = "Under `Prefer: wait`: the job's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "The body is not declared as JSON.", body = ErrorResponse),
        (status = 422, description = "The body does not fit the type's schema (one `invalid` entry per problem) or a header is invalid; under `Prefer: wait`: the job's 422.", body = ErrorResponse),
    ),
    security(("bearer" = ["contract_request:create"], "api_key" = [])),
)]
async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let (contract_type, params, request) = contract_path(request).await?;
    let id = uuid(params.get(1).map_or("", String::as_str))?;
    let principal = caller.authorize_active(SCOPE_CREATE)?;
    require_contractor(principal, contract_type)?;
    // The body is read only now, so that every check of the caller comes first.
    let JsonBody(body) = JsonBody::<Value>::from_request(request, &state).await?;
    schema_of(contract_type).validate(&body)?;
    let request: CreateRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid("$", "schema", &e.to_string()))?;
    let command = Command::Create {
        id,
        contract_type,
        request: Box::new(request),
        statute: None,
        additional_document: None,
    };
    intake::enqueue(
        &state,
        principal,
        &headers,
        command_request(id, command, None),
    )
    .await
}

/// The job of `command` on request `id`. `made`: a value the server made (a sign's object key), left out of
/// the fingerprint so that a repeated identical command is recognised.
fn command_request(id: Uuid, command: Command, made: Option<&str>) -> CommandRequest {
    let job_type = format!(
        "{}.{}",
        ContractRequestAggregate::STREAM_TYPE,
        command.name()
    );
    let command = serde_json::to_value(&command).unwrap_or_default();
    let mut fingerprint = command.clone();
    if made.is_some() {
        if let Some(object) = fingerprint.as_object_mut() {
            object.remove("content_key");
        }
    }
    CommandRequest {
        job_type,
        stream_type: ContractRequestAggregate::STREAM_TYPE,
        stream_id: id,
        fingerprint: json!({ "stream_id": id, "command": fingerprint }),
        command,
    }
}

fn required<T>(value: Option<T>, entry: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(entry, "required", "required property is missing"))
}

fn reason(value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::invalid(
            "$.status_reason",
            "length",
            &format!("must be at most {MAX_REASON_CHARS} characters long"),
        )),
        Some(r) if r.chars().any(char::is_control) => Err(ApiError::invalid(
            "$.status_reason",
            "format",
            "must not contain control characters",
        )),
        other => Ok(other.filter(|r| !r.trim().is_empty())),
    }
}

fn text(value: Option<String>, entry: &str, max: usize) -> Result<String, ApiError> {
    let value = required(value, entry)?;
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            entry,
            "format",
            &format!("must be 1 to {max} characters, not blank, without control characters"),
        ));
    }
    Ok(value)
}

/// The sign body's content: base64, 1 byte to 1 MiB decoded.
fn signed_content(body: &mut ActionBody) -> Result<String, ApiError> {
    if body
        .signed_content_encoding
        .as_deref()
        .is_some_and(|e| e != "base64")
    {
        return Err(ApiError::invalid(
            "$.signed_content_encoding",
            "inclusion",
            "value is not allowed in enum: one of base64",
        ));
    }
    let content = required(body.signed_content.take(), "$.signed_content")?;
    match decode_base64(&content) {
        Some(bytes) if !bytes.is_empty() && bytes.len() <= MAX_SIGNED_CONTENT_BYTES => Ok(content),
        Some(bytes) if !bytes.is_empty() => Err(ApiError::invalid(
            "$.signed_content",
            "length",
            &format!("must be at most {MAX_SIGNED_CONTENT_BYTES} bytes once decoded"),
        )),
        _ => Err(ApiError::invalid(
            "$.signed_content",
            "format",
            "must be non-empty base64",
        )),
    }
}

/// The domain command of `action` with `body`; a sign gets a fresh object key of its own.
fn command_of(
    action: Action,
    id: Uuid,
    mut body: ActionBody,
) -> Result<(Command, Option<String>), ApiError> {
    Ok(match action {
        Action::Assign => (
            Command::Assign {
                employee_id: required(body.employee_id, "$.employee_id")?,
            },
            None,
        ),
        Action::Approve => {
            let price = required(body.nhs_contract_price, "$.nhs_contract_price")?;
            if !(price.is_finite() && price >= 0.0) {
                return Err(ApiError::invalid(
                    "$.nhs_contract_price",
                    "number",
                    "must be a number greater than or equal to 0",
                ));
            }
            let method = required(body.nhs_payment_method, "$.nhs_payment_method")?;
            if !["BACKWARD", "FORWARD"].contains(&method.as_str()) {
                return Err(ApiError::invalid(
                    "$.nhs_payment_method",
                    "inclusion",
                    "value is not allowed in enum: one of BACKWARD, FORWARD",
                ));
            }
            (
                Command::Approve(Approval {
                    nhs_signer_id: required(body.nhs_signer_id, "$.nhs_signer_id")?,
                    nhs_signer_base: text(body.nhs_signer_base, "$.nhs_signer_base", 1000)?,
                    nhs_contract_price: price,
                    nhs_payment_method: method,
                    issue_city: text(body.issue_city, "$.issue_city", 255)?,
                }),
                None,
            )
        }
        Action::Decline => (
            Command::Decline {
                status_reason: reason(body.status_reason)?,
            },
            None,
        ),
        Action::ApproveMsp => (Command::ApproveMsp, None),
        Action::SignNhs | Action::SignMsp => {
            let signed_content = signed_content(&mut body)?;
            let content_key = signed_content_key(id, Uuid::new_v4());
            let command = if action == Action::SignNhs {
                Command::SignNhs {
                    content_key: content_key.clone(),
                    signed_content,
                    stored: None,
                }
            } else {
                Command::SignMsp {
                    content_key: content_key.clone(),
                    signed_content,
                    stored: None,
                }
            };
            (command, Some(content_key))
        }
        Action::Terminate => (
            Command::Terminate {
                status_reason: reason(body.status_reason)?,
            },
            None,
        ),
    })
}

/// Every lifecycle action (job): one handler, the action named by the path. Transitions and parties are the
/// domain's ("Lifecycles"): the job fails 409 `Incorrect status of contract_request to modify it` or 403
/// `User is not allowed to perform this action`.
#[utoipa::path(
    patch,
    path = "/api/contract_requests/{contract_type}/{id}/actions/{action}",
    tag = TAG,
    operation_id = "contract_request_action",
    params(
        ("contract_type" = inline(ContractTypePath), Path, description = "`capitation` or `reimbursement`."),
        ("id" = Uuid, Path, description = "The contract request."),
        ("action" = inline(Action), Path, description = "assign, approve, decline, approve_msp, sign_nhs, sign_msp or terminate."),
        CommandHeaders,
    ),
    request_body(content = ActionBody, content_type = "application/json", description = "The action's fields (none for approve_msp; an empty body is `{}`)."),
    responses(
        (status = 200, description = "Under `Prefer: wait`: done (document 003's `data`).", body = Value),
        (status = 202, description = "Accepted as a job; it fails 409 `Incorrect status of contract_request to modify it`, 403 `User is not allowed to perform this action`, 422 for an employee or signer who is not NHS's, 409 `Failed to save signed content`.", body = JobAcceptedResponse),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, `User is not allowed to perform this action`; under `Prefer: wait`: the job's 403.", body = ErrorResponse),
        (status = 404, description = "An unknown contract type or action, an id that is not a UUID, or `Contract request with id=… doesn't exist`.", body = ErrorResponse),
        (status = 409, description = "Under `Prefer: wait`: the job's conflict.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "A body declared as something other than JSON.", body = ErrorResponse),
        (status = 422, description = "The body is invalid for the action (`invalid[].entry` names the field) or a header is invalid.", body = ErrorResponse),
    ),
    security(("bearer" = ["contract_request:update", "contract_request:approve", "contract_request:sign", "contract_request:terminate"], "api_key" = [])),
)]
async fn action(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let (contract_type, params, request) = contract_path(request).await?;
    let id = uuid(params.get(1).map_or("", String::as_str))?;
    let action = Action::ALL
        .into_iter()
        .find(|a| params.get(2).is_some_and(|p| p == a.as_str()))
        .ok_or(ApiError::RouteNotFound)?;
    let principal = caller.authorize_active(action.scope())?;
    // The body is read only now, so that every check of the caller comes first; none (or `null`) is `{}`.
    let OptionalJsonBody(body) =
        OptionalJsonBody::<ActionBody>::from_request(request, &state).await?;
    let (command, made) = command_of(action, id, body.unwrap_or_default())?;
    find(&state, contract_type, id).await?;
    let request = command_request(id, command, made.as_deref());
    intake::enqueue(&state, principal, &headers, request).await
}

/// The projection's request `id` of `contract_type`, else 404 `Contract request with id=… doesn't exist`
/// (another type's request included); the connection goes back to the pool before the caller goes on.
async fn find(
    state: &AppState,
    contract_type: ContractType,
    id: Uuid,
) -> Result<ContractRequestRow, ApiError> {
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let row = projection::get(&client, id).await?;
    drop(client);
    row.filter(|r| r.contract_type == contract_type.as_str())
        .ok_or_else(|| ApiError::not_found(&not_found_message(id)))
}

/// Document 003: the full contract request and presigned links to its documents that exist, by status.
#[utoipa::path(
    get,
    path = "/api/contract_requests/{contract_type}/{id}",
    tag = TAG,
    operation_id = "get_contract_request",
    params(
        ("contract_type" = inline(ContractTypePath), Path, description = "`capitation` or `reimbursement`."),
        ("id" = Uuid, Path, description = "The contract request."),
    ),
    responses(
        (status = 200, description = "Document 003's answer.", body = ContractRequestResponse),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, `You are not allowed to view this contract request`.", body = ErrorResponse),
        (status = 404, description = "`Contract request with id=… doesn't exist`, an unknown contract type, or an id that is not a UUID.", body = ErrorResponse),
    ),
    security(("bearer" = ["contract_request:read"], "api_key" = [])),
)]
async fn show(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let (contract_type, params, _) = contract_path(request).await?;
    let principal = caller.authorize_active(SCOPE_READ)?;
    if !may_view(principal, contract_type, None) {
        return Err(ApiError::forbidden(NOT_ALLOWED_TO_VIEW));
    }
    let id = params
        .get(1)
        .and_then(|p| Uuid::parse_str(p).ok())
        .ok_or_else(|| {
            ApiError::not_found(&format!(
                "Contract request with id={} doesn't exist",
                params.get(1).map_or("", String::as_str)
            ))
        })?;
    let row = find(&state, contract_type, id).await?;
    if !may_view(principal, contract_type, Some(&row)) {
        return Err(ApiError::forbidden(NOT_ALLOWED_TO_VIEW));
    }
    let documents = urgent_documents(&state, &row).await?;
    let status = StatusCode::OK;
    Ok((
        status,
        Json(json!({
            "meta": envelope::meta(status, "object"),
            "data": row.to_json(),
            "urgent": { "documents": documents },
        })),
    )
        .into_response())
}

/// `urgent.documents`: by status (document 003, with IN_PROCESS as eHealth's code has it), each only if its
/// object exists (HEAD), as a presigned GET.
async fn urgent_documents(
    state: &AppState,
    row: &ContractRequestRow,
) -> Result<Vec<Value>, ApiError> {
    let mut wanted = vec![
        (DocumentType::Statute, Some(statute_key(row.id))),
        (
            DocumentType::AdditionalDocument,
            Some(additional_document_key(row.id)),
        ),
    ];
    if row.status().is_some_and(Status::has_signed_content) {
        wanted.push((DocumentType::SignedContent, row.signed_content_key.clone()));
    }
    let storage = &state.storage;
    let bucket = &storage.contract_requests_bucket;
    let found =
        futures_util::future::try_join_all(wanted.into_iter().map(|(kind, key)| async move {
            let Some(key) = key else {
                return Ok::<_, ehealth_infra::storage::StorageError>(None);
            };
            if storage.head(bucket, &key).await?.is_none() {
                return Ok(None);
            }
            let link = storage
                .presign_get(bucket, &key, storage.presign_ttl)
                .await?;
            Ok(Some(json!({ "type": kind.as_str(), "url": link.url })))
        }))
        .await
        .map_err(StoreError::from)?;
    Ok(found.into_iter().flatten().collect())
}

/// The list's filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only requests in this status.
    #[param(value_type = Option<String>)]
    status: Option<String>,
    /// Only this contractor (NHS; a personal token may name only its own legal entity).
    #[param(value_type = Option<Uuid>)]
    contractor_legal_entity_id: Option<String>,
    /// Only contractors with this EDRPOU (8–10 digits).
    #[param(value_type = Option<String>, pattern = "^[0-9]{8,10}$")]
    edrpou: Option<String>,
    /// Only this contract number.
    #[param(value_type = Option<String>, max_length = 255)]
    contract_number: Option<String>,
    /// The page, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000_000)]
    page: Option<String>,
    /// Entries per page, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    page_size: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<(i64, i64), ApiError> {
        Paging::requested(self.page.as_deref(), self.page_size.as_deref())
    }

    fn filter(self, contract_type: ContractType) -> Result<ListFilter, ApiError> {
        if let Some(status) = &self.status {
            if Status::parse(status).is_none() {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::invalid(
                    "$.status",
                    "inclusion",
                    &format!("value is not allowed in enum: one of {}", names.join(", ")),
                ));
            }
        }
        let contractor_legal_entity_id = self
            .contractor_legal_entity_id
            .as_deref()
            .map(|v| {
                Uuid::parse_str(v).map_err(|_| {
                    ApiError::invalid("$.contractor_legal_entity_id", "format", "must be a UUID")
                })
            })
            .transpose()?;
        if self
            .edrpou
            .as_deref()
            .is_some_and(|e| !(8..=10).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ApiError::invalid(
                "$.edrpou",
                "format",
                "must be 8 to 10 digits",
            ));
        }
        if self
            .contract_number
            .as_deref()
            .is_some_and(|n| n.chars().count() > 255 || n.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(
                "$.contract_number",
                "format",
                "must be at most 255 characters without control characters",
            ));
        }
        Ok(ListFilter {
            contract_type: contract_type.as_str().to_owned(),
            contractor_legal_entity_id,
            status: self.status,
            edrpou: self.edrpou,
            contract_number: self.contract_number,
        })
    }
}

/// The contract requests of a type the caller may read (NHS: all; a personal token: its own), a page at a
/// time, newest first.
#[utoipa::path(
    get,
    path = "/api/contract_requests/{contract_type}",
    tag = TAG,
    operation_id = "list_contract_requests",
    params(("contract_type" = inline(ContractTypePath), Path, description = "`capitation` or `reimbursement`."), ListQuery),
    responses(
        (status = 200, description = "A page, with `paging`; each entry is document 003's `data`.", body = ContractRequestList),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, `You are not allowed to view this contract request` (another legal entity's filter, or a client type that is no contractor of this type).", body = ErrorResponse),
        (status = 404, description = "An unknown contract type.", body = ErrorResponse),
        (status = 422, description = "A filter, `page` or `page_size` is invalid or given twice.", body = ErrorResponse),
    ),
    security(("bearer" = ["contract_request:read"], "api_key" = [])),
)]
async fn list(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (contract_type, _, _) = contract_path(request).await?;
    let principal = caller.authorize_active(SCOPE_READ)?;
    if !may_view(principal, contract_type, None) {
        return Err(ApiError::forbidden(NOT_ALLOWED_TO_VIEW));
    }
    let (page, page_size) = query.page()?;
    let mut filter = query.filter(contract_type)?;
    if principal.client_type != ClientType::Nhs {
        if filter
            .contractor_legal_entity_id
            .is_some_and(|id| id != principal.legal_entity_id)
        {
            return Err(ApiError::forbidden(NOT_ALLOWED_TO_VIEW));
        }
        filter.contractor_legal_entity_id = Some(principal.legal_entity_id);
    }
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let (rows, total) =
        projection::list(&client, &filter, page_size, (page - 1) * page_size).await?;
    Ok(envelope::list(
        rows.iter().map(ContractRequestRow::to_json).collect(),
        Paging {
            page_number: page,
            page_size,
            total_entries: total,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn valid_capitation() -> Value {
        json!({
            "contractor_owner_id": "b075f148-7f93-4fc2-b2ec-2d81b19a9b7b",
            "contractor_base": "на підставі закону про Медичне обслуговування населення",
            "contractor_payment_details": {"bank_name": "Банк номер 1", "MFO": "351005", "payer_account": "32009102701026"},
            "contractor_rmsp_amount": 50000,
            "contractor_divisions": ["2922a240-63db-404e-b730-09222bfeb2dd"],
            "contractor_employee_divisions": [{"employee_id": "b075f148-7f93-4fc2-b2ec-2d81b19a9b7b", "staff_units": 0.5, "declaration_limit": 2000, "division_id": "2922a240-63db-404e-b730-09222bfeb2dd"}],
            "id_form": "PMD_1",
            "statute_md5": "0cc175b9c0f1b6a831c399e269772661",
            "additional_document_md5": "92eb5ffee6ae2fec3ad71c777531578f",
            "start_date": "2030-01-01",
            "end_date": "2030-12-31"
        })
    }

    fn entries(result: Result<(), ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Rejected(r)) => r.invalid.into_iter().map(|e| e.entry).collect(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_capitation_body_fits_and_deserializes() {
        let body = valid_capitation();
        CAPITATION_SCHEMA.validate(&body).unwrap();
        let _: CreateRequest = serde_json::from_value(body).unwrap();
    }

    #[test]
    fn schema_problems_are_named_by_json_path() {
        let mut body = valid_capitation();
        body["contractor_payment_details"]["MFO"] = json!("12345");
        body["contractor_rmsp_amount"] = json!(-1);
        body["contractor_divisions"] = json!([]);
        body["statute_md5"] = json!("x");
        body.as_object_mut().unwrap().remove("id_form");
        body["contractor_base"] = json!("a\u{0000}b");
        let entries = entries(CAPITATION_SCHEMA.validate(&body));
        for expected in [
            "$.contractor_payment_details.MFO",
            "$.contractor_rmsp_amount",
            "$.contractor_divisions",
            "$.statute_md5",
            "$.id_form",
            "$.contractor_base",
        ] {
            assert!(
                entries.contains(&expected.to_owned()),
                "{expected} in {entries:?}"
            );
        }
    }

    #[test]
    fn reimbursement_requires_its_medical_program_and_refuses_capitation_fields() {
        let body = valid_capitation();
        let entries = entries(REIMBURSEMENT_SCHEMA.validate(&body));
        assert!(
            entries.contains(&"$.medical_program_id".to_owned()),
            "{entries:?}"
        );
        assert!(
            entries.contains(&"$.contractor_rmsp_amount".to_owned()),
            "{entries:?}"
        );
    }

    #[test]
    fn every_schema_the_openapi_document_references_is_in_it() {
        let (_, document) = crate::routes::documented();
        let document = serde_json::to_value(&document).unwrap();
        let text = document.to_string();
        let prefix = "#/components/schemas/";
        for reference in text.split(prefix).skip(1) {
            let name: String = reference.chars().take_while(|c| *c != '"').collect();
            assert!(
                document["components"]["schemas"].get(&name).is_some(),
                "{prefix}{name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn the_openapi_document_shows_both_schema_files() {
        let shown =
            serde_json::to_value(<CreateContractRequestBody as utoipa::PartialSchema>::schema())
                .unwrap();
        assert_eq!(shown["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(shown["anyOf"][0]["title"], "CapitationContractRequest");
    }
}
