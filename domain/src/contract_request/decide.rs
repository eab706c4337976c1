//! Every rule of a contract request, in the order they are checked: existence (404) → party (403) → status
//! (409) → facts (409 documents, 422 references).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{
    Approval, Approved, ContractRequest, ContractType, CreateRequest, Created, DivisionSnapshot,
    EmployeeDivisionSnapshot, Event, ExternalContractorSnapshot, ExternalDivisionSnapshot,
    LegalEntitySnapshot, PersonSnapshot, State, Status, StoredDocument,
};
use crate::{
    reference::{EmployeeRecord, LegalEntityFacts},
    ClientType, Context, Rejection,
};

/// 409 for a command that the request's status does not allow (the spec reading's "Lifecycles").
pub const INCORRECT_STATUS: &str = "Incorrect status of contract_request to modify it";
/// 403 for a caller whose client type or legal entity may not do this.
pub const NOT_ALLOWED: &str = "User is not allowed to perform this action";
/// 409 for a create of a request that exists.
pub const ALREADY_EXISTS: &str = "Contract request already exists";
/// 403 for a create by a legal entity that is not (or no longer) active.
pub const CLIENT_NOT_ACTIVE: &str = "Client is not active";
/// 409: nothing was uploaded at the statute's link.
pub const STATUTE_NOT_UPLOADED: &str = "Failed to move uploaded documents: statute not found";
/// 409: nothing was uploaded at the additional document's link.
pub const ADDITIONAL_DOCUMENT_NOT_UPLOADED: &str =
    "Failed to move uploaded documents: additional document not found";
/// 409: the uploaded statute is not the one `statute_md5` names.
pub const STATUTE_MD5_MISMATCH: &str =
    "Failed to move uploaded documents: statute does not match statute_md5";
/// 409: the uploaded additional document is not the one `additional_document_md5` names.
pub const ADDITIONAL_DOCUMENT_MD5_MISMATCH: &str =
    "Failed to move uploaded documents: additional document does not match additional_document_md5";
/// 409: the signed content could not be stored (the worker found no object where it wrote it).
pub const SIGNED_CONTENT_NOT_STORED: &str = "Failed to save signed content";

/// 404 in a job for an action on a request that does not exist.
pub const NOT_FOUND: &str = "Contract request doesn't exist";

/// 404 for a request that does not exist, with its id, as document 003 words it.
pub fn not_found_message(id: Uuid) -> String {
    format!("Contract request with id={id} doesn't exist")
}

/// The contract number approve gives: four groups of four base-36 characters derived from the request's id
/// (e.g. `0000-9EAX-XT7X-3115` in the document), so a rebuild and a retried job give the same number.
pub fn contract_number(id: Uuid) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = id.as_u128();
    let mut chars = [b'0'; 16];
    for c in chars.iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    chars
        .chunks(4)
        .map(|group| group.iter().map(|&b| char::from(b)).collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Decides a command against the current state.
pub fn decide(
    state: &State,
    command: super::Command,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    use super::Command;
    if let Command::Create {
        id,
        contract_type,
        request,
        statute,
        additional_document,
    } = command
    {
        if state.0.is_some() {
            return Err(Rejection::conflict(ALREADY_EXISTS));
        }
        let documents = (statute, additional_document);
        return create(id, contract_type, *request, documents, ctx);
    }
    // The api answers 404 with the path's id (`not_found_message`) before it enqueues an action on a request
    // it does not know; this is the job's answer if that request is still unknown when the job runs.
    let cr = state
        .0
        .as_ref()
        .ok_or_else(|| Rejection::not_found(NOT_FOUND))?;
    match command {
        Command::Create { .. } => Err(Rejection::conflict(ALREADY_EXISTS)),
        Command::Assign { employee_id } => {
            require_nhs(ctx)?;
            require_status(cr, &[Status::New, Status::InProcess])?;
            nhs_employee(ctx, employee_id, "$.employee_id")?;
            Ok(vec![Event::Assigned {
                assignee_id: employee_id,
            }])
        }
        Command::Approve(approval) => {
            require_nhs(ctx)?;
            require_status(cr, &[Status::InProcess])?;
            approve(cr, approval, ctx)
        }
        Command::Decline { status_reason } => {
            require_nhs(ctx)?;
            require_status(cr, &[Status::InProcess])?;
            Ok(vec![Event::Declined { status_reason }])
        }
        Command::ApproveMsp => {
            require_contractor(cr, ctx)?;
            require_status(cr, &[Status::Approved])?;
            Ok(vec![Event::MspApproved])
        }
        Command::SignNhs { stored, .. } => {
            require_nhs(ctx)?;
            require_status(cr, &[Status::PendingNhsSign])?;
            let signed_content =
                stored.ok_or_else(|| Rejection::conflict(SIGNED_CONTENT_NOT_STORED))?;
            Ok(vec![Event::NhsSigned { signed_content }])
        }
        Command::SignMsp { stored, .. } => {
            require_contractor(cr, ctx)?;
            require_status(cr, &[Status::NhsSigned])?;
            let signed_content =
                stored.ok_or_else(|| Rejection::conflict(SIGNED_CONTENT_NOT_STORED))?;
            Ok(vec![Event::MspSigned { signed_content }])
        }
        Command::Terminate { status_reason } => {
            if ctx.actor.client_type != ClientType::Nhs {
                require_contractor(cr, ctx)?;
            }
            if matches!(
                cr.status,
                Status::Declined | Status::Signed | Status::Terminated
            ) {
                return Err(Rejection::conflict(INCORRECT_STATUS));
            }
            Ok(vec![Event::Terminated {
                status_reason,
                end_date: ctx.today(),
            }])
        }
    }
}

fn require_nhs(ctx: &Context) -> Result<(), Rejection> {
    if ctx.actor.client_type == ClientType::Nhs {
        Ok(())
    } else {
        Err(Rejection::forbidden(NOT_ALLOWED))
    }
}

fn require_contractor(cr: &ContractRequest, ctx: &Context) -> Result<(), Rejection> {
    if cr
        .created
        .contract_type
        .contractor_client(ctx.actor.client_type)
        && ctx.actor.legal_entity_id == cr.contractor_legal_entity_id()
    {
        Ok(())
    } else {
        Err(Rejection::forbidden(NOT_ALLOWED))
    }
}

fn require_status(cr: &ContractRequest, allowed: &[Status]) -> Result<(), Rejection> {
    if allowed.contains(&cr.status) {
        Ok(())
    } else {
        Err(Rejection::conflict(INCORRECT_STATUS))
    }
}

/// An active employee of the caller's legal entity, or 422 on `entry`.
fn own_employee<'a>(
    ctx: &'a Context,
    id: Uuid,
    entry: &str,
    description: &str,
) -> Result<&'a EmployeeRecord, Rejection> {
    ctx.reference
        .employees
        .get(&id)
        .filter(|e| e.is_active && e.legal_entity_id == ctx.actor.legal_entity_id)
        .ok_or_else(|| Rejection::invalid(entry, "invalid", description))
}

fn nhs_employee<'a>(
    ctx: &'a Context,
    id: Uuid,
    entry: &str,
) -> Result<&'a EmployeeRecord, Rejection> {
    own_employee(ctx, id, entry, "must be an active employee of NHS")
}

fn legal_entity_snapshot(le: &LegalEntityFacts) -> LegalEntitySnapshot {
    LegalEntitySnapshot {
        id: le.id,
        name: le.name.clone(),
        edrpou: le.edrpou.clone(),
        addresses: le.addresses.clone(),
    }
}

fn person(employee: &EmployeeRecord) -> PersonSnapshot {
    PersonSnapshot {
        id: employee.id,
        party: employee.party.clone(),
    }
}

fn approve(
    cr: &ContractRequest,
    approval: Approval,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let signer = nhs_employee(ctx, approval.nhs_signer_id, "$.nhs_signer_id")?;
    if !(approval.nhs_contract_price.is_finite() && approval.nhs_contract_price >= 0.0) {
        return Err(Rejection::invalid(
            "$.nhs_contract_price",
            "number",
            "must be a number greater than or equal to 0",
        ));
    }
    let nhs = ctx
        .reference
        .legal_entities
        .get(&ctx.actor.legal_entity_id)
        .ok_or_else(|| Rejection::forbidden(NOT_ALLOWED))?;
    Ok(vec![Event::Approved(Box::new(Approved {
        contract_number: contract_number(cr.created.id),
        nhs_legal_entity: legal_entity_snapshot(nhs),
        nhs_signer: person(signer),
        nhs_signer_base: approval.nhs_signer_base,
        nhs_contract_price: approval.nhs_contract_price,
        nhs_payment_method: approval.nhs_payment_method,
        issue_city: approval.issue_city,
    }))])
}

/// The create checks: party, active legal entity, documents, owner, divisions, employees, external
/// contractors, dates.
fn create(
    id: Uuid,
    contract_type: ContractType,
    request: CreateRequest,
    (statute, additional_document): (Option<StoredDocument>, Option<StoredDocument>),
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if !contract_type.contractor_client(ctx.actor.client_type) {
        return Err(Rejection::forbidden(NOT_ALLOWED));
    }
    let me = ctx.actor.legal_entity_id;
    let contractor = ctx
        .reference
        .legal_entities
        .get(&me)
        .filter(|le| le.status == "ACTIVE")
        .ok_or_else(|| Rejection::forbidden(CLIENT_NOT_ACTIVE))?;
    let statute = document(
        statute,
        &request.statute_md5,
        STATUTE_NOT_UPLOADED,
        STATUTE_MD5_MISMATCH,
    )?;
    let additional_document = document(
        additional_document,
        &request.additional_document_md5,
        ADDITIONAL_DOCUMENT_NOT_UPLOADED,
        ADDITIONAL_DOCUMENT_MD5_MISMATCH,
    )?;
    let owner = own_employee(
        ctx,
        request.contractor_owner_id,
        "$.contractor_owner_id",
        "Contractor owner must be an active employee of the legal entity",
    )?;
    if request.end_date < request.start_date {
        return Err(Rejection::invalid(
            "$.end_date",
            "date",
            "end_date must not be earlier than start_date",
        ));
    }
    if request.start_date < ctx.today() {
        return Err(Rejection::invalid(
            "$.start_date",
            "date",
            "start_date must not be in the past",
        ));
    }
    let mut divisions = Vec::with_capacity(request.contractor_divisions.len());
    let mut seen = BTreeSet::new();
    for (i, division_id) in request.contractor_divisions.iter().enumerate() {
        let entry = format!("$.contractor_divisions[{i}]");
        if !seen.insert(*division_id) {
            return Err(Rejection::invalid(
                entry,
                "unique",
                "divisions must be unique",
            ));
        }
        let division = ctx
            .reference
            .divisions
            .get(division_id)
            .filter(|d| d.legal_entity_id == me && d.status == "ACTIVE")
            .ok_or_else(|| {
                Rejection::invalid(
                    entry.as_str(),
                    "invalid",
                    "Division must be an active division of the legal entity",
                )
            })?;
        divisions.push(DivisionSnapshot {
            id: division.id,
            name: division.name.clone(),
            addresses: division.addresses.clone(),
            phones: division.phones.clone(),
            email: division.email.clone(),
            working_hours: division.working_hours.clone(),
            mountain_group: division.mountain_group,
        });
    }
    let mut employee_divisions = Vec::new();
    for (i, ed) in request.contractor_employee_divisions.iter().enumerate() {
        let employee = own_employee(
            ctx,
            ed.employee_id,
            &format!("$.contractor_employee_divisions[{i}].employee_id"),
            "Employee must be an active employee of the legal entity",
        )?;
        if !seen.contains(&ed.division_id) {
            return Err(Rejection::invalid(
                format!("$.contractor_employee_divisions[{i}].division_id"),
                "invalid",
                "Division must be one of contractor_divisions",
            ));
        }
        employee_divisions.push(EmployeeDivisionSnapshot {
            employee_id: employee.id,
            party: employee.party.clone(),
            speciality: employee.speciality.clone(),
            staff_units: ed.staff_units,
            declaration_limit: ed.declaration_limit,
            division_id: ed.division_id,
        });
    }
    if request.external_contractor_flag == Some(true) && request.external_contractors.is_empty() {
        return Err(Rejection::invalid(
            "$.external_contractors",
            "required",
            "external_contractors are required when external_contractor_flag is true",
        ));
    }
    let mut external_contractors = Vec::new();
    for (i, ec) in request.external_contractors.iter().enumerate() {
        let le = ctx
            .reference
            .legal_entities
            .get(&ec.legal_entity_id)
            .filter(|le| le.status == "ACTIVE")
            .ok_or_else(|| {
                Rejection::invalid(
                    format!("$.external_contractors[{i}].legal_entity_id"),
                    "invalid",
                    "Legal entity must be an active legal entity",
                )
            })?;
        if ec.contract.expires_at < ec.contract.issued_at {
            return Err(Rejection::invalid(
                format!("$.external_contractors[{i}].contract.expires_at"),
                "date",
                "expires_at must not be earlier than issued_at",
            ));
        }
        let mut ec_divisions = Vec::new();
        for (j, d) in ec.divisions.iter().enumerate() {
            let division = ctx
                .reference
                .divisions
                .get(&d.id)
                .filter(|div| div.legal_entity_id == le.id)
                .ok_or_else(|| {
                    Rejection::invalid(
                        format!("$.external_contractors[{i}].divisions[{j}].id"),
                        "invalid",
                        "Division must be a division of the external contractor",
                    )
                })?;
            ec_divisions.push(ExternalDivisionSnapshot {
                id: division.id,
                name: division.name.clone(),
                medical_service: d.medical_service.clone(),
            });
        }
        external_contractors.push(ExternalContractorSnapshot {
            legal_entity_id: le.id,
            legal_entity_name: le.name.clone(),
            contract: ec.contract.clone(),
            divisions: ec_divisions,
        });
    }
    Ok(vec![Event::Created(Box::new(Created {
        id,
        contract_type,
        contractor_legal_entity: legal_entity_snapshot(contractor),
        contractor_owner: person(owner),
        contractor_base: request.contractor_base,
        contractor_payment_details: request.contractor_payment_details,
        contractor_rmsp_amount: request.contractor_rmsp_amount,
        contractor_divisions: divisions,
        contractor_employee_divisions: employee_divisions,
        external_contractor_flag: request.external_contractor_flag,
        external_contractors,
        id_form: request.id_form,
        start_date: request.start_date,
        end_date: request.end_date,
        previous_request_id: request.previous_request_id,
        parent_contract_id: request.parent_contract_id,
        medical_programs: request.medical_program_id.into_iter().collect(),
        nhs_signer_base: request.nhs_signer_base,
        nhs_payment_method: request.nhs_payment_method,
        issue_city: request.issue_city,
        statute,
        additional_document,
        created_by: ctx.actor.user_id,
    }))])
}

/// The uploaded document, if it is there and its MD5 is the one the body names (case-insensitive).
fn document(
    stored: Option<StoredDocument>,
    md5: &str,
    missing: &str,
    mismatch: &str,
) -> Result<StoredDocument, Rejection> {
    let stored = stored.ok_or_else(|| Rejection::conflict(missing))?;
    if !stored.etag.eq_ignore_ascii_case(md5) {
        return Err(Rejection::conflict(mismatch));
    }
    Ok(stored)
}
