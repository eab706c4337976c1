//! What callers ask of a service request. Stored as JSON in the jobs table.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A command to a service request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Creates the request for a patient; the caller's legal entity becomes the requester.
    Create {
        /// The new request's id (the stream id).
        id: Uuid,
        /// The patient.
        patient_id: Uuid,
        /// Category code, e.g. `laboratory_procedure`.
        category: String,
        /// Service code.
        code: String,
        /// Medical program, if the request is covered by one.
        program_id: Option<Uuid>,
        /// Last day the request may be used.
        expiration_date: Option<NaiveDate>,
    },
    /// Reserves the request for the caller's legal entity (and optionally one of its doctors).
    Use {
        /// Must be the caller's legal entity.
        used_by_legal_entity_id: Uuid,
        /// An approved, active doctor of that legal entity.
        used_by_employee_id: Option<Uuid>,
    },
    /// Spec 004: removes the reservation.
    Release,
    /// Starts providing the service.
    Process,
    /// Finishes providing the service.
    Complete,
    /// The requester withdraws the request.
    Recall {
        /// Must be the request's patient.
        patient_id: Uuid,
        /// Why.
        reason: Option<String>,
    },
    /// The scheduler recalls an active request past its expiration date (status reason
    /// [`AUTOEXPIRED`](super::AUTOEXPIRED)). Only [`Actor::system`](crate::Actor::system) sends it; no route
    /// takes it.
    Expire,
    /// The requester marks the request as entered in error.
    Cancel {
        /// Must be the request's patient.
        patient_id: Uuid,
        /// Why.
        reason: Option<String>,
    },
}

impl Command {
    /// The command's name, used in job types (`service_request.<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Use { .. } => "use",
            Command::Release => "release",
            Command::Process => "process",
            Command::Complete => "complete",
            Command::Recall { .. } => "recall",
            Command::Expire => "expire",
            Command::Cancel { .. } => "cancel",
        }
    }
}
