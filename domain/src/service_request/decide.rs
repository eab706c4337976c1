//! Every rule of a service request, in the order the specification checks them.

use uuid::Uuid;

use super::{Command, Event, ProgramProcessingStatus, ServiceRequest, State, Status};
use crate::{Context, Rejection};

/// 404 for a service request that does not exist (or is not the path's patient's).
pub const NOT_FOUND: &str = "Service request not found";
/// 409 for a create of an existing stream.
pub const ALREADY_EXISTS: &str = "Service request already exists";
/// 409 of spec 004: the request is not in the status the action needs.
pub const INVALID_STATUS: &str = "Invalid service request status";
/// 409 of spec 004: the program processing status is not the one the action needs.
pub const INVALID_PROGRAM_PROCESSING_STATUS: &str = "Invalid program processing status";
/// 409 for using a request past its expiration date.
pub const EXPIRED: &str = "Service request is expired";
/// 409 for using a request that is already used.
pub const ALREADY_USED: &str = "Service request is already used";
/// 409 for processing a request nobody uses.
pub const NOT_USED: &str = "Service request is not used";
/// 409 of spec 004 for a legal entity that may not act on this request: releasing is for the legal entity
/// holding the reservation and the one that created the request.
pub const ACTION_NOT_ALLOWED: &str = "Action is not allowed for the legal entity";
/// 403 for a legal entity that may not change this request.
pub const NOT_ALLOWED_TO_MODIFY: &str = "You are not allowed to modify this service request";
/// 409 for an expire of a request whose expiration date has not passed (or that has none).
pub const NOT_EXPIRED: &str = "Service request is not expired";
/// The status reason of a request the scheduler recalled past its expiration date (eHealth's
/// `autoexpired` recall reason).
pub const AUTOEXPIRED: &str = "autoexpired";

/// Decides a command against the current state.
pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    if let Command::Create {
        id,
        patient_id,
        category,
        code,
        program_id,
        expiration_date,
    } = command
    {
        if state.0.is_some() {
            return Err(Rejection::conflict(ALREADY_EXISTS));
        }
        for (entry, value) in [("$.category", &category), ("$.code", &code)] {
            if value.trim().is_empty() {
                return Err(Rejection::invalid(entry, "required", "value is required"));
            }
        }
        if expiration_date.is_some_and(|d| d < ctx.today()) {
            return Err(Rejection::invalid(
                "$.expiration_date",
                "invalid",
                "expiration_date must not be in the past",
            ));
        }
        return Ok(vec![Event::Created {
            id,
            patient_id,
            category,
            code,
            program_id,
            expiration_date,
            requester_legal_entity_id: ctx.actor.legal_entity_id,
            requester_user_id: ctx.actor.user_id,
            program_processing_status: program_id.map(|_| ProgramProcessingStatus::New),
        }]);
    }
    let sr = state
        .0
        .as_ref()
        .ok_or_else(|| Rejection::not_found(NOT_FOUND))?;
    match command {
        Command::Create { .. } => Err(Rejection::conflict(ALREADY_EXISTS)),
        Command::Use {
            used_by_legal_entity_id,
            used_by_employee_id,
        } => use_request(sr, used_by_legal_entity_id, used_by_employee_id, ctx),
        Command::Release => {
            let me = ctx.actor.legal_entity_id;
            if sr.used_by_legal_entity_id != Some(me) && sr.requester_legal_entity_id != me {
                return Err(Rejection::conflict(ACTION_NOT_ALLOWED));
            }
            require_status(sr, Status::Active)?;
            if sr.program_processing_status != Some(ProgramProcessingStatus::InQueue) {
                return Err(Rejection::conflict(INVALID_PROGRAM_PROCESSING_STATUS));
            }
            Ok(vec![Event::Released])
        }
        Command::Process => {
            require_status(sr, Status::Active)?;
            let Some(user) = sr.used_by_legal_entity_id else {
                return Err(Rejection::conflict(NOT_USED));
            };
            if sr.program_id.is_some()
                && sr.program_processing_status != Some(ProgramProcessingStatus::InQueue)
            {
                return Err(Rejection::conflict(INVALID_PROGRAM_PROCESSING_STATUS));
            }
            require_legal_entity(ctx, user)?;
            Ok(vec![Event::ProcessingStarted])
        }
        Command::Complete => {
            require_status(sr, Status::InProgress)?;
            require_legal_entity(ctx, sr.used_by_legal_entity_id.unwrap_or_default())?;
            Ok(vec![Event::Completed])
        }
        Command::Recall { patient_id, reason } => {
            require_requester(sr, patient_id, ctx)?;
            Ok(vec![Event::Recalled { reason }])
        }
        Command::Expire => {
            if !ctx.actor.is_system() {
                return Err(Rejection::forbidden(NOT_ALLOWED_TO_MODIFY));
            }
            require_status(sr, Status::Active)?;
            if sr.expiration_date.is_none_or(|d| d >= ctx.today()) {
                return Err(Rejection::conflict(NOT_EXPIRED));
            }
            Ok(vec![Event::Recalled {
                reason: Some(AUTOEXPIRED.to_owned()),
            }])
        }
        Command::Cancel { patient_id, reason } => {
            require_requester(sr, patient_id, ctx)?;
            Ok(vec![Event::Cancelled { reason }])
        }
    }
}

fn require_status(sr: &ServiceRequest, status: Status) -> Result<(), Rejection> {
    if sr.status == status {
        Ok(())
    } else {
        Err(Rejection::conflict(INVALID_STATUS))
    }
}

fn require_legal_entity(ctx: &Context, legal_entity_id: Uuid) -> Result<(), Rejection> {
    if ctx.actor.legal_entity_id == legal_entity_id {
        Ok(())
    } else {
        Err(Rejection::forbidden(NOT_ALLOWED_TO_MODIFY))
    }
}

/// Recall and cancel: the path's patient (404), the requester (403), an active request (409).
fn require_requester(
    sr: &ServiceRequest,
    patient_id: Uuid,
    ctx: &Context,
) -> Result<(), Rejection> {
    if sr.patient_id != patient_id {
        return Err(Rejection::not_found(NOT_FOUND));
    }
    require_legal_entity(ctx, sr.requester_legal_entity_id)?;
    require_status(sr, Status::Active)
}

const EMPLOYEE_ENTRY: &str = "$.used_by_employee.identifier.value";

fn use_request(
    sr: &ServiceRequest,
    used_by_legal_entity_id: Uuid,
    used_by_employee_id: Option<Uuid>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    require_status(sr, Status::Active)?;
    if sr.expiration_date.is_some_and(|d| d < ctx.today()) {
        return Err(Rejection::conflict(EXPIRED));
    }
    if sr.used_by_legal_entity_id.is_some() {
        return Err(Rejection::conflict(ALREADY_USED));
    }
    if used_by_legal_entity_id != ctx.actor.legal_entity_id {
        return Err(Rejection::invalid(
            "$.used_by_legal_entity.identifier.value",
            "invalid",
            "must be the legal entity of the current client",
        ));
    }
    if let Some(employee_id) = used_by_employee_id {
        let employee = ctx
            .employee
            .as_ref()
            .filter(|e| e.id == employee_id)
            .ok_or_else(|| Rejection::invalid(EMPLOYEE_ENTRY, "invalid", "employee not found"))?;
        if employee.legal_entity_id != ctx.actor.legal_entity_id {
            return Err(Rejection::invalid(
                EMPLOYEE_ENTRY,
                "invalid",
                "employee does not belong to the legal entity",
            ));
        }
        let approved_doctor = employee.employee_type.as_deref() == Some("DOCTOR")
            && employee.employee_status.as_deref() == Some("APPROVED")
            && employee.is_active;
        if !approved_doctor {
            return Err(Rejection::invalid(
                EMPLOYEE_ENTRY,
                "invalid",
                "employee must be an active approved doctor",
            ));
        }
    }
    Ok(vec![Event::Used {
        used_by_legal_entity_id,
        used_by_employee_id,
        program_processing_status: sr.program_id.map(|_| ProgramProcessingStatus::InQueue),
    }])
}
