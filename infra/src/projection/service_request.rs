//! The `service_requests` read model.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::service_request::{ServiceRequest, ServiceRequestAggregate, State};
use serde_json::{json, Value};
use uuid::Uuid;

use super::row::{self, projection_row, OnConflict};
use super::{reference, Projection};
use crate::StoreError;

projection_row! {
    table: "service_requests",
    on_conflict: OnConflict::UpdateAll,
    /// One row of the read model.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ServiceRequestRow {
        /// Id.
        pub id: Uuid,
        /// The patient.
        pub patient_id: Uuid,
        /// Category code.
        pub category: String,
        /// Service code.
        pub code: String,
        /// Medical program.
        pub program_id: Option<Uuid>,
        /// Last day it may be used.
        pub expiration_date: Option<NaiveDate>,
        /// `active`, `in_progress`, `completed`, `recalled`, `entered_in_error`.
        pub status: String,
        /// `new`, `in_queue`, `in_progress`, `completed`.
        pub program_processing_status: Option<String>,
        /// Why it was recalled or cancelled.
        pub status_reason: Option<String>,
        /// The legal entity that created it.
        pub requester_legal_entity_id: Uuid,
        /// The user who created it.
        pub requester_user_id: Uuid,
        /// The legal entity that uses it.
        pub used_by_legal_entity_id: Option<Uuid>,
        /// The employee who uses it.
        pub used_by_employee_id: Option<Uuid>,
        /// Stream version.
        pub version: i64,
        /// First event.
        pub inserted_at: DateTime<Utc>,
        /// Last event.
        pub updated_at: DateTime<Utc>,
    }
}

impl ServiceRequestRow {
    /// The row of a folded service request at stream `version`, first and last recorded at `inserted_at`
    /// and `updated_at`: what [`Projection::project`] writes, so what a rebuild writes.
    pub fn from_state(
        id: Uuid,
        sr: &ServiceRequest,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            patient_id: sr.patient_id,
            category: sr.category.clone(),
            code: sr.code.clone(),
            program_id: sr.program_id,
            expiration_date: sr.expiration_date,
            status: sr.status.as_str().to_owned(),
            program_processing_status: sr.program_processing_status.map(|s| s.as_str().to_owned()),
            status_reason: sr.status_reason.clone(),
            requester_legal_entity_id: sr.requester_legal_entity_id,
            requester_user_id: sr.requester_user_id,
            used_by_legal_entity_id: sr.used_by_legal_entity_id,
            used_by_employee_id: sr.used_by_employee_id,
            version,
            inserted_at,
            updated_at,
        }
    }

    /// Whether a caller of `legal_entity_id` may read it (NHS is decided by the caller).
    pub fn visible_to(&self, legal_entity_id: Uuid) -> bool {
        self.requester_legal_entity_id == legal_entity_id
            || self.used_by_legal_entity_id == Some(legal_entity_id)
    }

    /// The api's JSON view, with eHealth references.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status,
            "status_reason": self.status_reason,
            "category": self.category,
            "code": self.code,
            "subject": reference("patient", self.patient_id),
            "program": self.program_id.map(|id| reference("medical_program", id)),
            "program_processing_status": self.program_processing_status,
            "expiration_date": self.expiration_date,
            "requester_legal_entity": reference("legal_entity", self.requester_legal_entity_id),
            "requester_employee": reference("employee", self.requester_user_id),
            "used_by_legal_entity": self.used_by_legal_entity_id.map(|id| reference("legal_entity", id)),
            "used_by_employee": self.used_by_employee_id.map(|id| reference("employee", id)),
            "inserted_at": self.inserted_at,
            "updated_at": self.updated_at,
        })
    }
}

/// `/api/service_requests/{id}`.
pub fn href(id: Uuid) -> String {
    format!("/api/service_requests/{id}")
}

/// Reads one service request.
pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ServiceRequestRow>, StoreError> {
    row::select_one(client, "id = $1", &[&id]).await
}

/// One page of a patient's service requests visible to `visible_to` (`None`: all, for NHS), newest first,
/// with the total count.
pub async fn list_by_patient(
    client: &impl GenericClient,
    patient_id: Uuid,
    visible_to: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ServiceRequestRow>, i64), StoreError> {
    let filter = "patient_id = $1 AND ($2::uuid IS NULL OR requester_legal_entity_id = $2 \
                  OR used_by_legal_entity_id = $2)";
    let count = client
        .prepare_cached(&format!(
            "SELECT count(*) FROM service_requests WHERE {filter}"
        ))
        .await?;
    let total: i64 = client
        .query_one(&count, &[&patient_id, &visible_to])
        .await?
        .get(0);
    let page = format!("{filter} ORDER BY inserted_at DESC, id LIMIT $3 OFFSET $4");
    let rows = row::select(client, &page, &[&patient_id, &visible_to, &limit, &offset]).await?;
    Ok((rows, total))
}

impl Projection for ServiceRequestAggregate {
    const ENTITY: &'static str = "service_request";
    const STREAM_COLUMN: &'static str = "id";
    type Row = ServiceRequestRow;

    fn status(state: &State) -> Option<&'static str> {
        state.0.as_ref().map(|sr| sr.status.as_str())
    }

    fn rows(
        id: Uuid,
        state: &State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Vec<ServiceRequestRow> {
        state
            .0
            .iter()
            .map(|sr| ServiceRequestRow::from_state(id, sr, version, inserted_at, updated_at))
            .collect()
    }
}
