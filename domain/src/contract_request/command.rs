//! What callers (and the scheduler) ask of a contract request. Stored as JSON in the jobs table.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ContractType;

/// The bank details of the contractor, as the body gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDetails {
    /// Bank name.
    pub bank_name: String,
    /// Bank code: six digits.
    #[serde(rename = "MFO")]
    pub mfo: String,
    /// Account number: digits.
    pub payer_account: String,
}

/// One employee of the contractor working in one of its divisions under the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmployeeDivisionInput {
    /// The employee.
    pub employee_id: Uuid,
    /// Staff units (e.g. 0.5).
    pub staff_units: f64,
    /// Declarations the employee may hold.
    pub declaration_limit: i64,
    /// The division, one of `contractor_divisions`.
    pub division_id: Uuid,
}

/// The contract an external contractor works under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalContract {
    /// Contract number.
    pub number: String,
    /// First day.
    pub issued_at: NaiveDate,
    /// Last day.
    pub expires_at: NaiveDate,
}

/// A division of an external contractor and the service it provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalDivisionInput {
    /// The division (of the external contractor's legal entity).
    pub id: Uuid,
    /// The service, e.g. `Послуга ПМД`.
    pub medical_service: String,
}

/// A legal entity the contractor subcontracts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalContractorInput {
    /// The external contractor's legal entity.
    pub legal_entity_id: Uuid,
    /// The contract with it.
    pub contract: ExternalContract,
    /// Its divisions that provide services.
    pub divisions: Vec<ExternalDivisionInput>,
}

/// The body of a create, after JSON Schema validation (`api/schemas/contract_request_*.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The contractor's owner: an active employee of the caller's legal entity.
    pub contractor_owner_id: Uuid,
    /// On what grounds the owner signs.
    pub contractor_base: String,
    /// Bank details.
    pub contractor_payment_details: PaymentDetails,
    /// CAPITATION: the registered population.
    #[serde(default)]
    pub contractor_rmsp_amount: Option<i64>,
    /// Divisions of the caller's legal entity under the contract.
    pub contractor_divisions: Vec<Uuid>,
    /// CAPITATION: employees and their divisions.
    #[serde(default)]
    pub contractor_employee_divisions: Vec<EmployeeDivisionInput>,
    /// Whether external contractors take part.
    #[serde(default)]
    pub external_contractor_flag: Option<bool>,
    /// External contractors.
    #[serde(default)]
    pub external_contractors: Vec<ExternalContractorInput>,
    /// The contract form, e.g. `PMD_1`.
    pub id_form: String,
    /// MD5 (hex) of the uploaded statute.
    pub statute_md5: String,
    /// MD5 (hex) of the uploaded additional document.
    pub additional_document_md5: String,
    /// First day of the contract.
    pub start_date: NaiveDate,
    /// Last day of the contract.
    pub end_date: NaiveDate,
    /// The request this one replaces.
    #[serde(default)]
    pub previous_request_id: Option<Uuid>,
    /// The contract this one continues.
    #[serde(default)]
    pub parent_contract_id: Option<Uuid>,
    /// REIMBURSEMENT: the medical program.
    #[serde(default)]
    pub medical_program_id: Option<Uuid>,
    /// On what grounds the NHS signer signs, if the contractor proposes it.
    #[serde(default)]
    pub nhs_signer_base: Option<String>,
    /// Proposed payment method, e.g. `BACKWARD`.
    #[serde(default)]
    pub nhs_payment_method: Option<String>,
    /// City the contract is issued in.
    #[serde(default)]
    pub issue_city: Option<String>,
}

/// What the worker saw in storage under a document's key before the job's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDocument {
    /// The object key in the contract requests bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's ETag without quotes: the MD5 (hex) of a single-part upload.
    pub etag: String,
}

/// What NHS fills in when it approves: who signs for it and on which terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The NHS employee who will sign.
    pub nhs_signer_id: Uuid,
    /// On what grounds.
    pub nhs_signer_base: String,
    /// The contract price.
    pub nhs_contract_price: f64,
    /// e.g. `BACKWARD`, `FORWARD`.
    pub nhs_payment_method: String,
    /// City the contract is issued in.
    pub issue_city: String,
}

/// A command to a contract request. Tagged by `action`, like every command of the service, so a job (and
/// the scheduler) can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Creates the request from the uploaded documents and the body: NEW.
    Create {
        /// The request's id (the stream id), issued with the upload links.
        id: Uuid,
        /// CAPITATION or REIMBURSEMENT.
        contract_type: ContractType,
        /// The validated body.
        request: Box<CreateRequest>,
        /// The statute as the worker found it (filled in by `observe`).
        #[serde(default)]
        statute: Option<StoredDocument>,
        /// The additional document as the worker found it (filled in by `observe`).
        #[serde(default)]
        additional_document: Option<StoredDocument>,
    },
    /// NHS assigns the request to one of its employees: IN_PROCESS.
    Assign {
        /// The NHS employee.
        employee_id: Uuid,
    },
    /// NHS approves: APPROVED, with a contract number.
    Approve(Approval),
    /// NHS declines: DECLINED.
    Decline {
        /// Why.
        status_reason: Option<String>,
    },
    /// The contractor accepts NHS's terms: PENDING_NHS_SIGN.
    ApproveMsp,
    /// NHS signs: NHS_SIGNED.
    SignNhs {
        /// The object key the signed content is written to: unique per request (made by the api), so a job
        /// that fails leaves nothing another job could take for its own.
        content_key: String,
        /// The signed content, base64 (written by `observe`, then cleared from what is decided on).
        #[serde(default)]
        signed_content: String,
        /// The written object (filled in by `observe`).
        #[serde(default)]
        stored: Option<StoredDocument>,
    },
    /// The contractor signs: SIGNED.
    SignMsp {
        /// As for [`Command::SignNhs`].
        content_key: String,
        /// As for [`Command::SignNhs`].
        #[serde(default)]
        signed_content: String,
        /// As for [`Command::SignNhs`].
        #[serde(default)]
        stored: Option<StoredDocument>,
    },
    /// Ends the request: TERMINATED, `end_date` today. Issued by NHS, the contractor, or the scheduler with
    /// [`crate::Actor::system`] and `status_reason` `AUTO_EXPIRED`.
    Terminate {
        /// Why.
        status_reason: Option<String>,
    },
}

impl Command {
    /// The command's name, used in job types (`contract_request.<name>`) and in the action path.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Assign { .. } => "assign",
            Command::Approve(_) => "approve",
            Command::Decline { .. } => "decline",
            Command::ApproveMsp => "approve_msp",
            Command::SignNhs { .. } => "sign_nhs",
            Command::SignMsp { .. } => "sign_msp",
            Command::Terminate { .. } => "terminate",
        }
    }
}
