//! The folded state of a contract request, and `apply`, which holds no rule.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Created, Event, LegalEntitySnapshot, PersonSnapshot, StoredDocument};

/// `status` of a contract request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Created, waiting for NHS.
    New,
    /// Assigned to an NHS employee.
    InProcess,
    /// Approved by NHS.
    Approved,
    /// Declined by NHS (final).
    Declined,
    /// Approved by the contractor, waiting for NHS's signature.
    PendingNhsSign,
    /// Signed by NHS, waiting for the contractor's.
    NhsSigned,
    /// Signed by both (final).
    Signed,
    /// Terminated (final).
    Terminated,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 8] = [
        Status::New,
        Status::InProcess,
        Status::Approved,
        Status::Declined,
        Status::PendingNhsSign,
        Status::NhsSigned,
        Status::Signed,
        Status::Terminated,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::InProcess => "IN_PROCESS",
            Status::Approved => "APPROVED",
            Status::Declined => "DECLINED",
            Status::PendingNhsSign => "PENDING_NHS_SIGN",
            Status::NhsSigned => "NHS_SIGNED",
            Status::Signed => "SIGNED",
            Status::Terminated => "TERMINATED",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the signed content is among the request's documents in this status (document 003).
    pub fn has_signed_content(self) -> bool {
        matches!(self, Status::NhsSigned | Status::Signed)
    }
}

/// A contract request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRequest {
    /// What it was created with.
    pub created: Created,
    /// Status.
    pub status: Status,
    /// Why it was declined or terminated.
    pub status_reason: Option<String>,
    /// The NHS employee it is assigned to.
    pub assignee_id: Option<Uuid>,
    /// Set by approve.
    pub contract_number: Option<String>,
    /// NHS's legal entity (approve).
    pub nhs_legal_entity: Option<LegalEntitySnapshot>,
    /// NHS's signer (approve).
    pub nhs_signer: Option<PersonSnapshot>,
    /// NHS signer base (proposed at create, set at approve).
    pub nhs_signer_base: Option<String>,
    /// Price (approve).
    pub nhs_contract_price: Option<f64>,
    /// Payment method.
    pub nhs_payment_method: Option<String>,
    /// Issue city.
    pub issue_city: Option<String>,
    /// Last day (terminate sets it to that day).
    pub end_date: NaiveDate,
    /// The newest signed content.
    pub signed_content: Option<StoredDocument>,
}

impl ContractRequest {
    /// The contractor's legal entity.
    pub fn contractor_legal_entity_id(&self) -> Uuid {
        self.created.contractor_legal_entity.id
    }
}

/// The state of a contract request's stream: `None` before it was created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State(pub Option<ContractRequest>);

/// Folds one event into the state. No rules here.
pub fn apply(state: State, event: &Event) -> State {
    let Some(mut cr) = state.0 else {
        return match event {
            Event::Created(created) => State(Some(ContractRequest {
                status: Status::New,
                status_reason: None,
                assignee_id: None,
                contract_number: None,
                nhs_legal_entity: None,
                nhs_signer: None,
                nhs_signer_base: created.nhs_signer_base.clone(),
                nhs_contract_price: None,
                nhs_payment_method: created.nhs_payment_method.clone(),
                issue_city: created.issue_city.clone(),
                end_date: created.end_date,
                signed_content: None,
                created: (**created).clone(),
            })),
            _ => State(None),
        };
    };
    match event {
        Event::Created(_) => {}
        Event::Assigned { assignee_id } => {
            cr.status = Status::InProcess;
            cr.assignee_id = Some(*assignee_id);
        }
        Event::Approved(approved) => {
            cr.status = Status::Approved;
            cr.contract_number = Some(approved.contract_number.clone());
            cr.nhs_legal_entity = Some(approved.nhs_legal_entity.clone());
            cr.nhs_signer = Some(approved.nhs_signer.clone());
            cr.nhs_signer_base = Some(approved.nhs_signer_base.clone());
            cr.nhs_contract_price = Some(approved.nhs_contract_price);
            cr.nhs_payment_method = Some(approved.nhs_payment_method.clone());
            cr.issue_city = Some(approved.issue_city.clone());
        }
        Event::Declined { status_reason } => {
            cr.status = Status::Declined;
            cr.status_reason = status_reason.clone();
        }
        Event::MspApproved => cr.status = Status::PendingNhsSign,
        Event::NhsSigned { signed_content } => {
            cr.status = Status::NhsSigned;
            cr.signed_content = Some(signed_content.clone());
        }
        Event::MspSigned { signed_content } => {
            cr.status = Status::Signed;
            cr.signed_content = Some(signed_content.clone());
        }
        Event::Terminated {
            status_reason,
            end_date,
        } => {
            cr.status = Status::Terminated;
            cr.status_reason = status_reason.clone();
            cr.end_date = *end_date;
        }
    }
    State(Some(cr))
}
