//! Contract requests (spec 003 and the spec reading's "Lifecycles"): a contractor legal entity asks NHS for a
//! CAPITATION or REIMBURSEMENT contract, uploads its statute and additional document, NHS reviews it and both
//! sides sign.
//!
//! create → NEW; assign NEW|IN_PROCESS → IN_PROCESS; approve IN_PROCESS → APPROVED; decline IN_PROCESS →
//! DECLINED; approve_msp APPROVED → PENDING_NHS_SIGN; sign_nhs PENDING_NHS_SIGN → NHS_SIGNED; sign_msp
//! NHS_SIGNED → SIGNED; terminate any but DECLINED/SIGNED/TERMINATED → TERMINATED. A reader who wants a rule
//! opens `decide.rs`.

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::*;
pub use decide::*;
pub use event::*;
pub use state::{apply, ContractRequest, State, Status};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, ClientType, Context, Rejection};

/// `contract_type`: upper case in bodies and answers, lower case in eHealth's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContractType {
    /// Primary care paid per registered patient.
    Capitation,
    /// Pharmacies reimbursed for medical programs.
    Reimbursement,
}

impl ContractType {
    /// The wire name, `CAPITATION` or `REIMBURSEMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractType::Capitation => "CAPITATION",
            ContractType::Reimbursement => "REIMBURSEMENT",
        }
    }

    /// The path form, `capitation` or `reimbursement`.
    pub fn path(self) -> &'static str {
        match self {
            ContractType::Capitation => "capitation",
            ContractType::Reimbursement => "reimbursement",
        }
    }

    /// Parses a path segment: the lower- or upper-case name; `None` for anything else.
    pub fn from_path(segment: &str) -> Option<Self> {
        match segment {
            "capitation" | "CAPITATION" => Some(ContractType::Capitation),
            "reimbursement" | "REIMBURSEMENT" => Some(ContractType::Reimbursement),
            _ => None,
        }
    }

    /// Whether a token of `client_type` acts as a contractor of this type: MSP and PRIMARY_CARE for
    /// CAPITATION, PHARMACY for REIMBURSEMENT, MSP_PHARMACY for both.
    pub fn contractor_client(self, client_type: ClientType) -> bool {
        matches!(
            (self, client_type),
            (
                ContractType::Capitation,
                ClientType::Msp | ClientType::PrimaryCare
            ) | (ContractType::Reimbursement, ClientType::Pharmacy)
                | (_, ClientType::MspPharmacy)
        )
    }
}

/// Which document of a request an object is (document 003's `urgent.documents[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentType {
    /// `media/contract_request_statute.pdf`.
    Statute,
    /// `media/contract_request_additional_document.pdf`.
    AdditionalDocument,
    /// `signed_content/…`.
    SignedContent,
}

impl DocumentType {
    /// The `type` in `urgent.documents`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::Statute => "CONTRACT_REQUEST_STATUTE",
            DocumentType::AdditionalDocument => "CONTRACT_REQUEST_ADDITIONAL_DOCUMENT",
            DocumentType::SignedContent => "SIGNED_CONTENT",
        }
    }
}

/// The statute's object key: `{id}/media/contract_request_statute.pdf`, where the upload link puts it.
pub fn statute_key(id: Uuid) -> String {
    format!("{id}/media/contract_request_statute.pdf")
}

/// The additional document's object key: `{id}/media/contract_request_additional_document.pdf`.
pub fn additional_document_key(id: Uuid) -> String {
    format!("{id}/media/contract_request_additional_document.pdf")
}

/// A signed content object's key: `{id}/signed_content/{attempt}`, one per sign request, so the object a
/// failed job wrote can never be taken for another job's. `attempt` is a fresh UUID from the api.
pub fn signed_content_key(id: Uuid, attempt: Uuid) -> String {
    format!("{id}/signed_content/{attempt}")
}

/// The contract-request aggregate: stream type `contract_request`.
pub struct ContractRequestAggregate;

impl Aggregate for ContractRequestAggregate {
    const STREAM_TYPE: &'static str = "contract_request";
    type State = State;
    type Command = Command;
    type Event = Event;

    fn apply(state: State, event: &Event) -> State {
        apply(state, event)
    }

    fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
        decide::decide(state, command, ctx)
    }
}
