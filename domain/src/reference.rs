//! Reference data as a decision sees it: legal entities, their divisions and employees, looked up by the
//! adapter inside the job's transaction and passed in through [`Context::reference`](crate::Context).
//!
//! Addresses, phones, working hours, party and speciality are kept as the JSON the reference data holds
//! (validated when it is imported): decisions only copy them into snapshots, they never interpret them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A legal entity of the reference data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalEntityFacts {
    /// Id.
    pub id: Uuid,
    /// Full name.
    pub name: String,
    /// EDRPOU code.
    pub edrpou: String,
    /// e.g. `MSP`, `PHARMACY`, `NHS`.
    pub legal_entity_type: String,
    /// `ACTIVE`, `SUSPENDED` or `CLOSED`.
    pub status: String,
    /// Addresses, eHealth shape (`[{"type":"RESIDENCE","country":"UA",…}]`).
    pub addresses: Value,
}

/// A division of a legal entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivisionFacts {
    /// Id.
    pub id: Uuid,
    /// The legal entity it belongs to.
    pub legal_entity_id: Uuid,
    /// Name.
    pub name: String,
    /// Addresses, eHealth shape.
    pub addresses: Value,
    /// Phones (`[{"type":"MOBILE","number":…}]`).
    pub phones: Value,
    /// E-mail.
    pub email: Option<String>,
    /// Working hours (`{"mon":[["08.00","12.00"]],…}`).
    pub working_hours: Option<Value>,
    /// Whether it is in a mountain area.
    pub mountain_group: bool,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
}

/// An employee (user) of a legal entity, with the person and speciality a contract request shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmployeeRecord {
    /// Id.
    pub id: Uuid,
    /// The legal entity the employee works for.
    pub legal_entity_id: Uuid,
    /// `{"first_name","last_name","second_name"}`.
    pub party: Value,
    /// The speciality object of document 003, if any.
    pub speciality: Option<Value>,
    /// e.g. `OWNER`, `DOCTOR`.
    pub employee_type: Option<String>,
    /// e.g. `APPROVED`.
    pub employee_status: Option<String>,
    /// Whether the user is active.
    pub is_active: bool,
}

/// The reference data a decision looked up, by id. Empty unless the adapter filled it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceFacts {
    /// Legal entities.
    pub legal_entities: BTreeMap<Uuid, LegalEntityFacts>,
    /// Divisions.
    pub divisions: BTreeMap<Uuid, DivisionFacts>,
    /// Employees.
    pub employees: BTreeMap<Uuid, EmployeeRecord>,
}
