//! What a decision needs from outside the aggregate: the time, the caller and looked-up reference data.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of API client a token was issued to (eHealth `client_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientType {
    /// A medical service provider.
    Msp,
    /// A primary care provider.
    PrimaryCare,
    /// A pharmacy.
    Pharmacy,
    /// A provider that is both an MSP and a pharmacy.
    MspPharmacy,
    /// The National Health Service: sees everything.
    Nhs,
    /// A medical information system acting for itself.
    Mis,
}

impl ClientType {
    /// Every client type, in the order the specification lists them.
    pub const ALL: [ClientType; 6] = [
        ClientType::Msp,
        ClientType::PrimaryCare,
        ClientType::Pharmacy,
        ClientType::MspPharmacy,
        ClientType::Nhs,
        ClientType::Mis,
    ];

    /// The wire name, e.g. `PRIMARY_CARE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Msp => "MSP",
            ClientType::PrimaryCare => "PRIMARY_CARE",
            ClientType::Pharmacy => "PHARMACY",
            ClientType::MspPharmacy => "MSP_PHARMACY",
            ClientType::Nhs => "NHS",
            ClientType::Mis => "MIS",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// Personal tokens (MSP, PHARMACY, MSP_PHARMACY, PRIMARY_CARE) see only their own legal entity's data.
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            ClientType::Msp
                | ClientType::PrimaryCare
                | ClientType::Pharmacy
                | ClientType::MspPharmacy
        )
    }
}

/// Who asks: the authenticated user, their legal entity and the token's client type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user the token was issued to.
    pub user_id: Uuid,
    /// The user's legal entity (the "client" in eHealth terms).
    pub legal_entity_id: Uuid,
    /// The token's client type.
    pub client_type: ClientType,
}

impl Actor {
    /// The actor of commands nobody sent, which the service issues itself (the worker's scheduler: service
    /// requests past their expiration date, contract requests past their start date): the nil user and the
    /// nil legal entity — no person and no clinic — with NHS rights, the authority the scheduler acts for. The
    /// event log and the jobs table show it as `{"user_id":"00000000-…","legal_entity_id":"00000000-…",
    /// "client_type":"NHS"}`; no token can carry it (user ids are random, never nil).
    pub fn system() -> Self {
        Self {
            user_id: Uuid::nil(),
            legal_entity_id: Uuid::nil(),
            client_type: ClientType::Nhs,
        }
    }

    /// Whether this is [`Actor::system`].
    pub fn is_system(&self) -> bool {
        *self == Self::system()
    }
}

/// An employee as the reference data knows it, looked up by the adapter before a decision that names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmployeeFacts {
    /// The employee (user) id.
    pub id: Uuid,
    /// The legal entity the employee works for.
    pub legal_entity_id: Uuid,
    /// e.g. `DOCTOR`.
    pub employee_type: Option<String>,
    /// e.g. `APPROVED`.
    pub employee_status: Option<String>,
    /// Whether the user is active.
    pub is_active: bool,
}

/// Everything a decision may depend on besides the state and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The decision's clock. Passed in so that decisions are reproducible.
    pub now: DateTime<Utc>,
    /// The caller.
    pub actor: Actor,
    /// The employee a command names, when it names one and the adapter found it; `None` otherwise.
    pub employee: Option<EmployeeFacts>,
    /// Reference data (legal entities, divisions, employees) the adapter looked up for the command.
    pub reference: crate::reference::ReferenceFacts,
}

impl Context {
    /// A context for `actor` at `now` with no looked-up reference data.
    pub fn new(now: DateTime<Utc>, actor: Actor) -> Self {
        Self {
            now,
            actor,
            employee: None,
            reference: crate::reference::ReferenceFacts::default(),
        }
    }

    /// The calendar date of `now` (UTC), against which expiration dates are compared.
    pub fn today(&self) -> NaiveDate {
        self.now.date_naive()
    }
}
