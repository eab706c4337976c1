//! The `contract_requests` read model: one row per request, its `data` the object document 003 answers
//! (rendered from the folded events alone, so a rebuild writes the same), the list filters as columns.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::contract_request::{
    ContractRequest, ContractRequestAggregate, ContractType, DivisionSnapshot, LegalEntitySnapshot,
    PersonSnapshot, State, Status,
};
use serde_json::{json, Value};
use uuid::Uuid;

use super::row::{self, projection_row, OnConflict};
use super::Projection;
use crate::StoreError;

projection_row! {
    table: "contract_requests",
    on_conflict: OnConflict::UpdateAll,
    /// One row of the read model.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ContractRequestRow {
        /// Id.
        pub id: Uuid,
        /// `CAPITATION` or `REIMBURSEMENT`.
        pub contract_type: String,
        /// e.g. `NEW`.
        pub status: String,
        /// The contractor.
        pub contractor_legal_entity_id: Uuid,
        /// The contractor's EDRPOU.
        pub edrpou: String,
        /// Set by approve.
        pub contract_number: Option<String>,
        /// First day.
        pub start_date: NaiveDate,
        /// Last day.
        pub end_date: NaiveDate,
        /// The newest signed content's object key.
        pub signed_content_key: Option<String>,
        /// Document 003's `data`.
        pub data: Value,
        /// Stream version.
        pub version: i64,
        /// First event.
        pub inserted_at: DateTime<Utc>,
        /// Last event.
        pub updated_at: DateTime<Utc>,
    }
}

fn legal_entity(le: &LegalEntitySnapshot) -> Value {
    json!({ "id": le.id, "name": le.name, "edrpou": le.edrpou, "addresses": le.addresses })
}

fn person(p: &PersonSnapshot) -> Value {
    json!({ "id": p.id, "party": p.party })
}

fn division(d: &DivisionSnapshot) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "addresses": d.addresses,
        "phones": d.phones,
        "email": d.email,
        "working_hours": d.working_hours,
        "mountain_group": d.mountain_group,
    })
}

/// Document 003's `data` for a request: the CAPITATION example's fields, or the REIMBURSEMENT example's
/// (no rmsp amount, divisions, employees or external contractors; `medical_programs` added).
pub fn render(cr: &ContractRequest) -> Value {
    let c = &cr.created;
    let mut data = json!({
        "id": c.id,
        "contract_type": c.contract_type.as_str(),
        "contractor_legal_entity": legal_entity(&c.contractor_legal_entity),
        "contractor_owner": person(&c.contractor_owner),
        "contractor_base": c.contractor_base,
        "contractor_payment_details": c.contractor_payment_details,
    });
    if c.contract_type == ContractType::Capitation {
        data["contractor_rmsp_amount"] = json!(c.contractor_rmsp_amount);
        data["contractor_divisions"] =
            Value::Array(c.contractor_divisions.iter().map(division).collect());
        data["contractor_employee_divisions"] = c
            .contractor_employee_divisions
            .iter()
            .map(|ed| {
                json!({
                    "employee": { "id": ed.employee_id, "party": ed.party, "speciality": ed.speciality },
                    "staff_units": ed.staff_units,
                    "declaration_limit": ed.declaration_limit,
                    "division_id": ed.division_id,
                })
            })
            .collect();
        data["external_contractor_flag"] = json!(c.external_contractor_flag);
        data["external_contractors"] = c
            .external_contractors
            .iter()
            .map(|ec| {
                json!({
                    "legal_entity": { "id": ec.legal_entity_id, "name": ec.legal_entity_name },
                    "contract": ec.contract,
                    "divisions": ec.divisions.iter().map(|d| json!({
                        "id": d.id, "name": d.name, "medical_service": d.medical_service,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    let rest = json!({
        "id_form": c.id_form,
        "nhs_signer": cr.nhs_signer.as_ref().map(person),
        "nhs_legal_entity": cr.nhs_legal_entity.as_ref().map(legal_entity),
        "nhs_signer_base": cr.nhs_signer_base,
        "nhs_contract_price": cr.nhs_contract_price,
        "nhs_payment_method": cr.nhs_payment_method,
        "status": cr.status.as_str(),
        "status_reason": cr.status_reason,
        "issue_city": cr.issue_city,
        "contract_number": cr.contract_number,
        // No contracts are made from requests here: the contract's own id is never known.
        "contract_id": Value::Null,
        "parent_contract_id": c.parent_contract_id,
        "start_date": c.start_date,
        "end_date": cr.end_date,
        "printout_content": Value::Null,
        "previous_request_id": c.previous_request_id,
        "assignee_id": cr.assignee_id,
    });
    if let (Some(data), Some(rest)) = (data.as_object_mut(), rest.as_object()) {
        data.extend(rest.clone());
    }
    if c.contract_type == ContractType::Reimbursement {
        data["medical_programs"] = json!(c.medical_programs);
    }
    data
}

impl ContractRequestRow {
    /// The row [`Projection::project`] (and so a rebuild) writes for a folded request.
    pub fn from_state(
        id: Uuid,
        cr: &ContractRequest,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            contract_type: cr.created.contract_type.as_str().to_owned(),
            status: cr.status.as_str().to_owned(),
            contractor_legal_entity_id: cr.contractor_legal_entity_id(),
            edrpou: cr.created.contractor_legal_entity.edrpou.clone(),
            contract_number: cr.contract_number.clone(),
            start_date: cr.created.start_date,
            end_date: cr.end_date,
            signed_content_key: cr.signed_content.as_ref().map(|s| s.key.clone()),
            data: render(cr),
            version,
            inserted_at,
            updated_at,
        }
    }

    /// The status, parsed.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }

    /// The api's JSON view: document 003's `data`.
    pub fn to_json(&self) -> Value {
        self.data.clone()
    }

    /// `/api/contract_requests/{type}/{id}`.
    pub fn href(&self) -> String {
        let contract_type = if self.contract_type == ContractType::Reimbursement.as_str() {
            ContractType::Reimbursement
        } else {
            ContractType::Capitation
        };
        href(contract_type, self.id)
    }
}

/// `/api/contract_requests/{type}/{id}`, the type in its path form.
pub fn href(contract_type: ContractType, id: Uuid) -> String {
    format!("/api/contract_requests/{}/{id}", contract_type.path())
}

/// Reads one request.
pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ContractRequestRow>, StoreError> {
    row::select_one(client, "id = $1", &[&id]).await
}

/// What a list is filtered by. `contractor_legal_entity_id` is the caller's own for personal tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// `CAPITATION` or `REIMBURSEMENT`.
    pub contract_type: String,
    /// Only this contractor.
    pub contractor_legal_entity_id: Option<Uuid>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this contractor EDRPOU.
    pub edrpou: Option<String>,
    /// Only this contract number.
    pub contract_number: Option<String>,
}

/// One page of requests, newest first, with the total count.
pub async fn list(
    client: &impl GenericClient,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ContractRequestRow>, i64), StoreError> {
    let condition = "contract_type = $1 AND ($2::uuid IS NULL OR contractor_legal_entity_id = $2) \
                     AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR edrpou = $4) \
                     AND ($5::text IS NULL OR contract_number = $5)";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &filter.contract_type,
        &filter.contractor_legal_entity_id,
        &filter.status,
        &filter.edrpou,
        &filter.contract_number,
    ];
    let count = client
        .prepare_cached(&format!(
            "SELECT count(*) FROM contract_requests WHERE {condition}"
        ))
        .await?;
    let total: i64 = client.query_one(&count, &params).await?.get(0);
    let page = format!("{condition} ORDER BY inserted_at DESC, id LIMIT $6 OFFSET $7");
    let mut all = params.to_vec();
    all.push(&limit);
    all.push(&offset);
    let rows = row::select(client, &page, &all).await?;
    Ok((rows, total))
}

/// Open requests (not SIGNED, DECLINED or TERMINATED) whose start date is before `today`: the scheduler's
/// auto-termination candidates, at most `limit`.
pub async fn open_past_start(
    client: &impl GenericClient,
    today: NaiveDate,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM contract_requests WHERE start_date < $1 \
             AND status NOT IN ('SIGNED', 'DECLINED', 'TERMINATED') ORDER BY start_date, id LIMIT $2",
        )
        .await?;
    Ok(client
        .query(&statement, &[&today, &limit])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

impl Projection for ContractRequestAggregate {
    const ENTITY: &'static str = "contract_request";
    const STREAM_COLUMN: &'static str = "id";
    type Row = ContractRequestRow;

    fn status(state: &State) -> Option<&'static str> {
        state.0.as_ref().map(|cr| cr.status.as_str())
    }

    fn rows(
        id: Uuid,
        state: &State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Vec<ContractRequestRow> {
        state
            .0
            .iter()
            .map(|cr| ContractRequestRow::from_state(id, cr, version, inserted_at, updated_at))
            .collect()
    }
}
