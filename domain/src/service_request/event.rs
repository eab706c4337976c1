//! What happened to a service request. Facts only: applying them runs no rule.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ProgramProcessingStatus;

/// An event of a service request's stream. Adjacently tagged: the store keeps `event_type` in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// The request was created, active.
    Created {
        /// Id.
        id: Uuid,
        /// The patient.
        patient_id: Uuid,
        /// Category code.
        category: String,
        /// Service code.
        code: String,
        /// Medical program.
        program_id: Option<Uuid>,
        /// Last day it may be used.
        expiration_date: Option<NaiveDate>,
        /// The creating legal entity.
        requester_legal_entity_id: Uuid,
        /// The creating user.
        requester_user_id: Uuid,
        /// `new` when it has a program, else none.
        program_processing_status: Option<ProgramProcessingStatus>,
    },
    /// The request was reserved.
    Used {
        /// The using legal entity.
        used_by_legal_entity_id: Uuid,
        /// The using doctor.
        used_by_employee_id: Option<Uuid>,
        /// `in_queue` when it has a program, else unchanged (none).
        program_processing_status: Option<ProgramProcessingStatus>,
    },
    /// The reservation was removed: both users cleared, program processing back to `new`.
    Released,
    /// Provision started: status `in_progress`; program processing `in_progress` when it has a program.
    ProcessingStarted,
    /// Provision finished: status `completed`; program processing `completed` when it has a program.
    Completed,
    /// The requester withdrew it.
    Recalled {
        /// Why.
        reason: Option<String>,
    },
    /// The requester marked it entered in error.
    Cancelled {
        /// Why.
        reason: Option<String>,
    },
}

impl Event {
    /// The stored `event_type`, the same snake_case name serde uses.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Created { .. } => "created",
            Event::Used { .. } => "used",
            Event::Released => "released",
            Event::ProcessingStarted => "processing_started",
            Event::Completed => "completed",
            Event::Recalled { .. } => "recalled",
            Event::Cancelled { .. } => "cancelled",
        }
    }
}
