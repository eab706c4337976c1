//! The folded state of a service request, and `apply`, which holds no rule.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Event;

/// `status` of a service request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Can be used, released, processed, recalled, cancelled.
    Active,
    /// Being provided.
    InProgress,
    /// Provided.
    Completed,
    /// Withdrawn by the requester (or expired).
    Recalled,
    /// Cancelled as entered in error.
    EnteredInError,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Recalled => "recalled",
            Status::EnteredInError => "entered_in_error",
        }
    }
}

/// `program_processing_status` of a service request covered by a medical program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramProcessingStatus {
    /// Not reserved.
    New,
    /// Reserved (used), waiting to be processed.
    InQueue,
    /// Being processed.
    InProgress,
    /// Processed.
    Completed,
}

impl ProgramProcessingStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramProcessingStatus::New => "new",
            ProgramProcessingStatus::InQueue => "in_queue",
            ProgramProcessingStatus::InProgress => "in_progress",
            ProgramProcessingStatus::Completed => "completed",
        }
    }
}

/// A service request as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
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
    /// See [`Status`].
    pub status: Status,
    /// See [`ProgramProcessingStatus`]; none without a program.
    pub program_processing_status: Option<ProgramProcessingStatus>,
    /// The creating legal entity.
    pub requester_legal_entity_id: Uuid,
    /// The creating user.
    pub requester_user_id: Uuid,
    /// The legal entity that reserved it.
    pub used_by_legal_entity_id: Option<Uuid>,
    /// The doctor who reserved it.
    pub used_by_employee_id: Option<Uuid>,
    /// Why it was recalled or cancelled.
    pub status_reason: Option<String>,
}

/// The state of a stream: `None` until it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State(pub Option<ServiceRequest>);

/// Folds one event into the state. An event on a state it cannot apply to leaves it unchanged.
pub fn apply(state: State, event: &Event) -> State {
    if let Event::Created {
        id,
        patient_id,
        category,
        code,
        program_id,
        expiration_date,
        requester_legal_entity_id,
        requester_user_id,
        program_processing_status,
    } = event
    {
        return State(Some(ServiceRequest {
            id: *id,
            patient_id: *patient_id,
            category: category.clone(),
            code: code.clone(),
            program_id: *program_id,
            expiration_date: *expiration_date,
            status: Status::Active,
            program_processing_status: *program_processing_status,
            requester_legal_entity_id: *requester_legal_entity_id,
            requester_user_id: *requester_user_id,
            used_by_legal_entity_id: None,
            used_by_employee_id: None,
            status_reason: None,
        }));
    }
    let Some(mut sr) = state.0 else {
        return State(None);
    };
    let with_program =
        |sr: &ServiceRequest, next: ProgramProcessingStatus| sr.program_id.map(|_| next);
    match event {
        Event::Created { .. } => {}
        Event::Used {
            used_by_legal_entity_id,
            used_by_employee_id,
            program_processing_status,
        } => {
            sr.used_by_legal_entity_id = Some(*used_by_legal_entity_id);
            sr.used_by_employee_id = *used_by_employee_id;
            sr.program_processing_status = *program_processing_status;
        }
        Event::Released => {
            sr.used_by_legal_entity_id = None;
            sr.used_by_employee_id = None;
            sr.program_processing_status = Some(ProgramProcessingStatus::New);
        }
        Event::ProcessingStarted => {
            sr.status = Status::InProgress;
            sr.program_processing_status = with_program(&sr, ProgramProcessingStatus::InProgress);
        }
        Event::Completed => {
            sr.status = Status::Completed;
            sr.program_processing_status = with_program(&sr, ProgramProcessingStatus::Completed);
        }
        Event::Recalled { reason } => {
            sr.status = Status::Recalled;
            sr.status_reason = reason.clone();
        }
        Event::Cancelled { reason } => {
            sr.status = Status::EnteredInError;
            sr.status_reason = reason.clone();
        }
    }
    State(Some(sr))
}
