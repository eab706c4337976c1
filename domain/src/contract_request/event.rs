//! What happened to a contract request. Facts only: applying them runs no rule. `Created` and `Approved`
//! carry snapshots of the reference data the decision validated, so the request renders the same after a
//! rebuild even if that reference data changed since.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{ContractType, ExternalContract, PaymentDetails, StoredDocument};

/// A legal entity as the request shows it: `{id, name, edrpou, addresses}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalEntitySnapshot {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// EDRPOU.
    pub edrpou: String,
    /// Addresses.
    pub addresses: Value,
}

/// A person as the request shows them: `{id, party}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonSnapshot {
    /// The employee id.
    pub id: Uuid,
    /// `{"first_name","last_name","second_name"}`.
    pub party: Value,
}

/// A division as the request shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivisionSnapshot {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Addresses.
    pub addresses: Value,
    /// Phones.
    pub phones: Value,
    /// E-mail.
    pub email: Option<String>,
    /// Working hours.
    pub working_hours: Option<Value>,
    /// Mountain area.
    pub mountain_group: bool,
}

/// An employee with their speciality, in one division, as the request shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmployeeDivisionSnapshot {
    /// The employee's id.
    pub employee_id: Uuid,
    /// Their party.
    pub party: Value,
    /// Their speciality.
    pub speciality: Option<Value>,
    /// Staff units.
    pub staff_units: f64,
    /// Declaration limit.
    pub declaration_limit: i64,
    /// The division.
    pub division_id: Uuid,
}

/// An external contractor's division as the request shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalDivisionSnapshot {
    /// Id.
    pub id: Uuid,
    /// Name (from the reference data).
    pub name: String,
    /// The service.
    pub medical_service: String,
}

/// An external contractor as the request shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalContractorSnapshot {
    /// Its legal entity's id.
    pub legal_entity_id: Uuid,
    /// Its legal entity's name.
    pub legal_entity_name: String,
    /// The contract.
    pub contract: ExternalContract,
    /// Its divisions.
    pub divisions: Vec<ExternalDivisionSnapshot>,
}

/// Everything a new request holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// Id.
    pub id: Uuid,
    /// CAPITATION or REIMBURSEMENT.
    pub contract_type: ContractType,
    /// The contractor (the caller's legal entity).
    pub contractor_legal_entity: LegalEntitySnapshot,
    /// The contractor's owner.
    pub contractor_owner: PersonSnapshot,
    /// On what grounds the owner signs.
    pub contractor_base: String,
    /// Bank details.
    pub contractor_payment_details: PaymentDetails,
    /// Registered population (CAPITATION).
    pub contractor_rmsp_amount: Option<i64>,
    /// Divisions.
    pub contractor_divisions: Vec<DivisionSnapshot>,
    /// Employees in divisions (CAPITATION).
    pub contractor_employee_divisions: Vec<EmployeeDivisionSnapshot>,
    /// Whether external contractors take part.
    pub external_contractor_flag: Option<bool>,
    /// External contractors.
    pub external_contractors: Vec<ExternalContractorSnapshot>,
    /// Contract form.
    pub id_form: String,
    /// First day.
    pub start_date: NaiveDate,
    /// Last day.
    pub end_date: NaiveDate,
    /// Replaced request.
    pub previous_request_id: Option<Uuid>,
    /// Continued contract.
    pub parent_contract_id: Option<Uuid>,
    /// Medical programs (REIMBURSEMENT).
    pub medical_programs: Vec<Uuid>,
    /// Proposed NHS signer base.
    pub nhs_signer_base: Option<String>,
    /// Proposed payment method.
    pub nhs_payment_method: Option<String>,
    /// Issue city.
    pub issue_city: Option<String>,
    /// The statute as uploaded.
    pub statute: StoredDocument,
    /// The additional document as uploaded.
    pub additional_document: StoredDocument,
    /// The user who created it.
    pub created_by: Uuid,
}

/// NHS's approval: its legal entity, its signer and the terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approved {
    /// The contract number.
    pub contract_number: String,
    /// NHS's legal entity.
    pub nhs_legal_entity: LegalEntitySnapshot,
    /// Who signs for NHS.
    pub nhs_signer: PersonSnapshot,
    /// On what grounds.
    pub nhs_signer_base: String,
    /// Price.
    pub nhs_contract_price: f64,
    /// Payment method.
    pub nhs_payment_method: String,
    /// Issue city.
    pub issue_city: String,
}

/// An event of a contract request's stream. Adjacently tagged: the store keeps `event_type` in a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// Created: NEW.
    Created(Box<Created>),
    /// Assigned to an NHS employee: IN_PROCESS.
    Assigned {
        /// The NHS employee.
        assignee_id: Uuid,
    },
    /// Approved by NHS: APPROVED.
    Approved(Box<Approved>),
    /// Declined by NHS: DECLINED.
    Declined {
        /// Why.
        status_reason: Option<String>,
    },
    /// Approved by the contractor: PENDING_NHS_SIGN.
    MspApproved,
    /// Signed by NHS: NHS_SIGNED.
    NhsSigned {
        /// The signed content object.
        signed_content: StoredDocument,
    },
    /// Signed by the contractor: SIGNED.
    MspSigned {
        /// The signed content object (both signatures).
        signed_content: StoredDocument,
    },
    /// Terminated: TERMINATED.
    Terminated {
        /// Why.
        status_reason: Option<String>,
        /// The new last day: the day it was terminated.
        end_date: NaiveDate,
    },
}

impl Event {
    /// The stored `event_type`, the same snake_case name serde uses.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Created(_) => "created",
            Event::Assigned { .. } => "assigned",
            Event::Approved(_) => "approved",
            Event::Declined { .. } => "declined",
            Event::MspApproved => "msp_approved",
            Event::NhsSigned { .. } => "nhs_signed",
            Event::MspSigned { .. } => "msp_signed",
            Event::Terminated { .. } => "terminated",
        }
    }
}
