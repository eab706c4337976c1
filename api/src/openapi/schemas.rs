//! The shapes of the api's answers, as OpenAPI schemas. Handlers build their JSON with the envelope
//! functions (`envelope.rs`) and the projections' `to_json`; these types describe that JSON field by field
//! and are never built at run time. `tests/tests/openapi.rs` and schemathesis hold them to the answers.
//!
//! Request bodies are not here: they are the handlers' own deserialization types, in `routes/`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// `meta` of every answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"code": 200, "url": "http://127.0.0.1:8080/api/service_requests/6f1c3e1e-4b1a-4d5e-9a59-0b3c8d1e2f10", "type": "object", "request_id": "req-abc-123"}))]
pub struct Meta {
    /// The HTTP status of the answer.
    pub code: u16,
    /// `PUBLIC_BASE_URL` followed by the request's path and query.
    pub url: String,
    /// `object` for one resource or an error, `list` for a list.
    #[serde(rename = "type")]
    pub kind: MetaType,
    /// The client's `x-request-id` (1–200 visible ASCII characters) or a generated UUID; also the events'
    /// correlation id.
    pub request_id: String,
}

/// What `data` holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetaType {
    /// One resource, or an error.
    Object,
    /// A list.
    List,
}

/// The eHealth error object.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "validation_failed", "message": "Validation failed. You can find validators description at our API Manifest: http://docs.apimanifest.apiary.io/#introduction/interacting-with-api/errors.", "invalid": [{"entry": "$.category", "entry_type": "json_data_property", "rules": [{"rule": "inclusion", "description": "value is not allowed in enum", "params": null}]}]}))]
pub struct ErrorObject {
    /// `access_denied` (401), `forbidden` (403), `not_found` (404), `method_not_allowed` (405),
    /// `request_conflict` (409), `request_entity_too_large` (413), `request_uri_too_long` (414),
    /// `unsupported_media_type` (415), `validation_failed` (422), `bad_request` (400),
    /// `request_header_fields_too_large` (431), `internal_error` (500), `service_unavailable` (503).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, in words.
    pub message: String,
    /// For 422: each invalid entry and the rules it broke.
    pub invalid: Option<Vec<InvalidEntry>>,
}

/// One invalid entry of a 422.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidEntry {
    /// JSON path of the entry: `$.category` for a body field, `$.page` for a query parameter,
    /// `$.fileName` for a path parameter, `$.headers.idempotency-key` for a header.
    pub entry: String,
    /// `json_data_property`.
    pub entry_type: String,
    /// The rules the entry broke.
    pub rules: Vec<Rule>,
}

/// One rule an invalid entry broke.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rule {
    /// Machine name of the rule: `required`, `cast`, `json`, `format`, `inclusion`, `length`, `number`,
    /// `duplicate`, …
    pub rule: String,
    /// The rule in words.
    pub description: String,
    /// Parameters of the rule, if any (left out of errors stored in jobs).
    pub params: Option<Value>,
}

/// Every error answer: `meta` and the eHealth `error` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`ErrorObject`].
    pub error: ErrorObject,
}

/// A link from a job to what it concerns.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"entity": "job", "href": "/Jobs/0b6b8a52-0f39-4fd1-a4b3-6f0b5d2a8c11"}))]
pub struct Link {
    /// `job`, `service_request` or `analysis_file`.
    pub entity: String,
    /// The path to read it.
    pub href: String,
}

/// A job's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not decided yet.
    Pending,
    /// Done: see `links` or `response_data`.
    Processed,
    /// Refused by a rule (404, 409, 422, …): see `error`.
    Failed,
    /// Ended by a fault (500): see `error`.
    FailedWithError,
}

/// `data` of a 202: the command was accepted as a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    /// Always `pending`.
    pub status: JobStatus,
    /// When the job is expected to be done.
    pub eta: DateTime<Utc>,
    /// One link, `{"entity":"job","href":"/Jobs/<id>"}`, to poll.
    pub links: Vec<Link>,
}

/// A 202: `{"meta":…,"data":{"status":"pending","eta":…,"links":[…]}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAcceptedResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`JobAccepted`].
    pub data: JobAccepted,
}

/// A job as `GET /Jobs/{id}` shows it. pending: `links` to the job; processed with a resource: `status_code`
/// and `links` to it (answered 303 with `Location`); processed with data of its own: `response_data`;
/// failed: `status_code` and `error`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// See [`JobStatus`].
    pub status: JobStatus,
    /// The HTTP status the command would have answered (once finished).
    pub status_code: Option<i32>,
    /// When the job was (or is) expected to be done.
    pub eta: DateTime<Utc>,
    /// The job (pending) or the resource (processed).
    pub links: Option<Vec<Link>>,
    /// What a processed job without a resource answered.
    pub response_data: Option<Value>,
    /// Why a failed job failed.
    pub error: Option<ErrorObject>,
}

/// A job answer: `{"meta":…,"data":{"status":…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`Job`].
    pub data: Job,
}

/// An eHealth reference to another resource.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"identifier": {"type": {"coding": [{"system": "eHealth/resources", "code": "legal_entity"}]}, "value": "d290f1ee-6c54-4b01-90e6-d701748f0851"}}))]
pub struct Reference {
    /// What is referenced.
    pub identifier: Identifier,
}

/// The identifier of a [`Reference`].
#[derive(Debug, Serialize, ToSchema)]
pub struct Identifier {
    /// The kind of resource.
    #[serde(rename = "type")]
    pub kind: CodeableConcept,
    /// Its id.
    pub value: Uuid,
}

/// A coded concept.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeableConcept {
    /// The codes; the first one counts.
    pub coding: Vec<Coding>,
}

/// A code in a code system.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"system": "eHealth/resources", "code": "employee"}))]
pub struct Coding {
    /// `eHealth/resources`.
    pub system: String,
    /// `patient`, `legal_entity`, `employee`, `medical_program`.
    pub code: String,
}

/// A service request's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRequestStatus {
    /// May be used, released, processed, recalled, cancelled.
    Active,
    /// Being provided.
    InProgress,
    /// Provided.
    Completed,
    /// Withdrawn by the requester, or expired.
    Recalled,
    /// Cancelled as entered in error.
    EnteredInError,
}

/// `program_processing_status` of a service request covered by a medical program.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgramProcessingStatus {
    /// Not reserved.
    New,
    /// Reserved (used), waiting to be processed.
    InQueue,
    /// Being processed.
    InProgress,
    /// Processed.
    Completed,
}

/// A service request, as `GET /api/service_requests/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRequest {
    /// Its id.
    pub id: Uuid,
    /// See [`ServiceRequestStatus`].
    pub status: ServiceRequestStatus,
    /// Why it was recalled or cancelled.
    pub status_reason: Option<String>,
    /// The category code it was created with.
    pub category: String,
    /// The service code.
    pub code: String,
    /// The patient (`patient`).
    pub subject: Reference,
    /// The medical program (`medical_program`).
    pub program: Option<Reference>,
    /// Only for requests with a program.
    pub program_processing_status: Option<ProgramProcessingStatus>,
    /// The last day it may be used.
    pub expiration_date: Option<NaiveDate>,
    /// The legal entity that created it.
    pub requester_legal_entity: Reference,
    /// The user who created it (`employee`).
    pub requester_employee: Reference,
    /// The legal entity that uses it.
    pub used_by_legal_entity: Option<Reference>,
    /// The employee who uses it.
    pub used_by_employee: Option<Reference>,
    /// Its first event.
    pub inserted_at: DateTime<Utc>,
    /// Its last event.
    pub updated_at: DateTime<Utc>,
}

/// One service request: `{"meta":…,"data":{…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRequestResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`ServiceRequest`].
    pub data: ServiceRequest,
}

/// eHealth paging.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paging {
    /// The page, from 1.
    pub page_number: i64,
    /// Entries per page.
    pub page_size: i64,
    /// Entries in all pages.
    pub total_entries: i64,
    /// Pages.
    pub total_pages: i64,
}

/// A page of service requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRequestList {
    /// See [`Meta`] (`type` is `list`).
    pub meta: Meta,
    /// The page's service requests.
    pub data: Vec<ServiceRequest>,
    /// See [`Paging`].
    pub paging: Paging,
}

/// An upload link (spec 000).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadLink {
    /// A presigned `PUT` URL of the object store for this one upload; send any `Content-Type`.
    pub url: String,
    /// When the link stops working (`PRESIGN_TTL_SECONDS`).
    pub expires_at: DateTime<Utc>,
}

/// `{"meta":…,"data":{"url","expiresAt"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadLinkResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`UploadLink`].
    pub data: UploadLink,
}

/// A media storage link (spec 001), in the eHealth AEL shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"action": "PUT", "bucket": "ambulatory-contracts", "resource_id": "d290f1ee-6c54-4b01-90e6-d701748f0851", "resource_name": "contract statute.pdf", "secret_url": "http://127.0.0.1:9000/ambulatory-contracts/d290f1ee-6c54-4b01-90e6-d701748f0851/contract%20statute.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600&X-Amz-Signature=…", "expires_at": "2026-06-15T12:10:00Z"}))]
pub struct MediaStorageLink {
    /// What the link does: `PUT`, `GET` or `HEAD`.
    pub action: String,
    /// The bucket (`MEDIA_BUCKET`).
    pub bucket: String,
    /// The folder: the contractor legal entity.
    pub resource_id: Uuid,
    /// The file name, percent-decoded: the object is `{resource_id}/{resource_name}`.
    pub resource_name: String,
    /// The presigned URL, to be used with `action`'s method (a `PUT` with the requested `Content-Type`).
    pub secret_url: String,
    /// When the link stops working (`SECRETS_TTL` after it was signed).
    pub expires_at: DateTime<Utc>,
}

/// `{"meta":…,"data":{action, bucket, resource_id, resource_name, secret_url, expires_at}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaStorageLinkResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`MediaStorageLink`].
    pub data: MediaStorageLink,
}

/// An analysis-result file (spec 000, camelCase).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisFile {
    /// Its id.
    pub id: Uuid,
    /// The event stream with its history (`GET /api/audit/streams/{streamId}`).
    pub stream_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The analysis.
    pub analysis_id: Uuid,
    /// Its name, unique within the analysis.
    pub file_name: String,
    /// Bytes.
    pub size: i64,
    /// As the upload declared it.
    pub content_type: String,
    /// Whether it is to be sent to the patient.
    pub is_send: bool,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// A presigned download link (reads only).
    pub url: Option<String>,
    /// When `url` stops working.
    pub url_expires_at: Option<DateTime<Utc>>,
}

/// One file: `{"meta":…,"data":{…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisFileResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`AnalysisFile`].
    pub data: AnalysisFile,
}

/// Every file of an analysis (unpaged).
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisFileList {
    /// See [`Meta`] (`type` is `list`).
    pub meta: Meta,
    /// The files, oldest first.
    pub data: Vec<AnalysisFile>,
}

/// One stored event, as auditors read it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredEvent {
    /// Global position.
    pub position: i64,
    /// `service_request` or `analysis_files`.
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// The event's version within its stream, from 1.
    pub stream_version: i64,
    /// The event's own id.
    pub event_id: Uuid,
    /// e.g. `released`.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// The payload.
    pub data: Value,
    /// Who, when, for which legal entity, the correlation id.
    pub metadata: Value,
    /// When it was appended.
    pub recorded_at: DateTime<Utc>,
    /// The previous event's link (hex); null for a stream's first event.
    pub prev_hash: Option<String>,
    /// This event's link (hex): HMAC-SHA-256 over the event and `prev_hash`.
    pub hash: String,
}

/// One stream's history up to `as_of`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditStream {
    /// The stream.
    pub stream_id: Uuid,
    /// Its aggregate type.
    pub stream_type: String,
    /// The `as_of` given: a position (integer), a time (string), or null for all.
    pub as_of: Option<Value>,
    /// The version of its last event within `as_of` (0 if none).
    pub version: i64,
    /// Whether the whole stream's hash chain verifies.
    pub chain_valid: bool,
    /// Its events within `as_of`, oldest first.
    pub events: Vec<StoredEvent>,
    /// The read model folded from them: a service request (or null before its creation), or an analysis's
    /// live files.
    pub state: Option<Value>,
}

/// `{"meta":…,"data":{…}}` of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditStreamResponse {
    /// See [`Meta`].
    pub meta: Meta,
    /// See [`AuditStream`].
    pub data: AuditStream,
}

/// Paging of the audit feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPaging {
    /// The `after` given, if any.
    pub after: Option<String>,
    /// The cursor to pass as `after` for the next page.
    pub next_after: String,
    /// The page size used.
    pub limit: i64,
}

/// A page of the global event feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditFeed {
    /// See [`Meta`] (`type` is `list`).
    pub meta: Meta,
    /// The events, in `(transaction, position)` order.
    pub data: Vec<StoredEvent>,
    /// See [`FeedPaging`].
    pub paging: FeedPaging,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}
