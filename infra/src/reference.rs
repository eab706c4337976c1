//! Reference data a contract request renders: legal entities (with addresses and contacts), their divisions
//! and employees (users with their party and speciality). Maintained by the operator (`ehealth-admin
//! reference import`, `division create`, `employee create`), read by the worker's decisions.
//!
//! An import is one JSON document, validated as a whole before anything is written (every error names its
//! entry, e.g. `divisions[2].legal_entity_id: unknown legal entity …`) and written in one transaction with
//! upserts, so importing the same document twice changes nothing and a bad document changes nothing at all.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::GenericClient;
use ehealth_domain::reference::{DivisionFacts, EmployeeRecord, LegalEntityFacts, ReferenceFacts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::StoreError;

/// Division statuses.
pub const DIVISION_STATUSES: [&str; 2] = ["ACTIVE", "INACTIVE"];
/// The days `working_hours` may name.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A person's name, as document 003 shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Patronymic.
    #[serde(default)]
    pub second_name: Option<String>,
}

/// A legal entity of an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalEntityInput {
    /// Id (kept: imports are upserts by id).
    pub id: Uuid,
    /// Full name.
    pub name: String,
    /// Short name.
    #[serde(default)]
    pub short_name: Option<String>,
    /// Public name.
    #[serde(default)]
    pub public_name: Option<String>,
    /// EDRPOU: 8 to 10 digits.
    pub edrpou: String,
    /// e.g. MSP, PRIMARY_CARE, PHARMACY, NHS.
    #[serde(rename = "type")]
    pub le_type: String,
    /// ACTIVE (default), SUSPENDED or CLOSED.
    #[serde(default = "active")]
    pub status: String,
    /// Addresses (`[{"type":"RESIDENCE","country":"UA",…}]`).
    #[serde(default = "empty_array")]
    pub addresses: Value,
    /// Phones (`[{"type":"MOBILE","number":"+380…"}]`).
    #[serde(default = "empty_array")]
    pub phones: Value,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
}

/// A division of an import (or of `division create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DivisionInput {
    /// Id.
    pub id: Uuid,
    /// Its legal entity: in the same document or already known.
    pub legal_entity_id: Uuid,
    /// Name.
    pub name: String,
    /// Addresses.
    #[serde(default = "empty_array")]
    pub addresses: Value,
    /// Phones.
    #[serde(default = "empty_array")]
    pub phones: Value,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// `{"mon":[["08.00","12.00"]],…}`.
    #[serde(default)]
    pub working_hours: Option<Value>,
    /// Mountain area.
    #[serde(default)]
    pub mountain_group: bool,
    /// ACTIVE (default) or INACTIVE.
    #[serde(default = "active")]
    pub status: String,
}

/// An employee of an import (or of `employee create`): a user of a legal entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmployeeInput {
    /// Id (the user id tokens are issued to).
    pub id: Uuid,
    /// Its legal entity: in the same document or already known.
    pub legal_entity_id: Uuid,
    /// The person.
    pub party: Party,
    /// The speciality object of document 003 (`speciality`, `level`, `qualification_type`, …).
    #[serde(default)]
    pub speciality: Option<Value>,
    /// Position, e.g. `P1`.
    #[serde(default)]
    pub position: Option<String>,
    /// e.g. OWNER, DOCTOR.
    #[serde(default)]
    pub employee_type: Option<String>,
    /// e.g. APPROVED.
    #[serde(default)]
    pub employee_status: Option<String>,
    /// Whether the user is active (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
}

/// One import document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceDocument {
    /// Legal entities.
    #[serde(default)]
    pub legal_entities: Vec<LegalEntityInput>,
    /// Divisions.
    #[serde(default)]
    pub divisions: Vec<DivisionInput>,
    /// Employees.
    #[serde(default)]
    pub employees: Vec<EmployeeInput>,
}

fn active() -> String {
    "ACTIVE".to_owned()
}

fn empty_array() -> Value {
    Value::Array(Vec::new())
}

fn yes() -> bool {
    true
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Legal entities upserted.
    pub legal_entities: usize,
    /// Divisions upserted.
    pub divisions: usize,
    /// Employees upserted.
    pub employees: usize,
}

/// Why a document (or a single row) was refused: the entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry}: {message}")]
pub struct InvalidReference {
    /// e.g. `divisions[2].legal_entity_id`.
    pub entry: String,
    /// e.g. `unknown legal entity 5f…`.
    pub message: String,
}

fn invalid(entry: impl Into<String>, message: impl Into<String>) -> InvalidReference {
    InvalidReference {
        entry: entry.into(),
        message: message.into(),
    }
}

fn non_empty(entry: &str, value: &str) -> Result<(), InvalidReference> {
    if value.trim().is_empty() {
        return Err(invalid(entry, "must not be empty"));
    }
    Ok(())
}

fn email(entry: &str, value: Option<&str>) -> Result<(), InvalidReference> {
    match value {
        Some(e) if !(e.contains('@') && e.len() <= 255 && !e.contains(char::is_whitespace)) => {
            Err(invalid(entry, "must be an e-mail address"))
        }
        _ => Ok(()),
    }
}

/// `[{"type": "…", …}]`: an array of objects, each with a non-empty string `type`.
fn typed_objects(entry: &str, value: &Value, required: &[&str]) -> Result<(), InvalidReference> {
    let Some(items) = value.as_array() else {
        return Err(invalid(entry, "must be an array"));
    };
    for (i, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            return Err(invalid(format!("{entry}[{i}]"), "must be an object"));
        };
        for field in required {
            if object
                .get(*field)
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                return Err(invalid(
                    format!("{entry}[{i}].{field}"),
                    "is required (a non-empty string)",
                ));
            }
        }
    }
    Ok(())
}

/// An entry's `addresses`, `phones` and `email`, as legal entities and divisions have them.
fn contacts(
    entry: &str,
    addresses: &Value,
    phones: &Value,
    email_address: Option<&str>,
) -> Result<(), InvalidReference> {
    typed_objects(
        &format!("{entry}.addresses"),
        addresses,
        &["type", "country"],
    )?;
    typed_objects(&format!("{entry}.phones"), phones, &["type", "number"])?;
    email(&format!("{entry}.email"), email_address)
}

fn unknown_legal_entity(entry: &str, legal_entity_id: Uuid) -> InvalidReference {
    invalid(
        format!("{entry}.legal_entity_id"),
        format!("unknown legal entity {legal_entity_id}"),
    )
}

/// `id` not seen before in its kind (`seen` keeps the ids of the entries before `entry`).
fn unique_id(entry: &str, seen: &mut BTreeSet<Uuid>, id: Uuid) -> Result<(), InvalidReference> {
    if !seen.insert(id) {
        return Err(invalid(format!("{entry}.id"), format!("duplicate id {id}")));
    }
    Ok(())
}

fn hour(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        let bytes = s.as_bytes();
        bytes.len() == 5
            && bytes[2] == b'.'
            && s[..2].parse::<u8>().is_ok_and(|h| h <= 24)
            && s[3..].parse::<u8>().is_ok_and(|m| m < 60)
    })
}

fn working_hours(entry: &str, value: Option<&Value>) -> Result<(), InvalidReference> {
    let Some(value) = value else { return Ok(()) };
    let Some(days) = value.as_object() else {
        return Err(invalid(entry, "must be an object of weekdays"));
    };
    for (day, spans) in days {
        if !WEEKDAYS.contains(&day.as_str()) {
            return Err(invalid(
                format!("{entry}.{day}"),
                "is not a weekday (mon…sun)",
            ));
        }
        let ok = spans.as_array().is_some_and(|spans| {
            spans.iter().all(|span| {
                span.as_array()
                    .is_some_and(|pair| pair.len() == 2 && pair.iter().all(hour))
            })
        });
        if !ok {
            return Err(invalid(
                format!("{entry}.{day}"),
                "must be a list of [\"HH.MM\",\"HH.MM\"] pairs",
            ));
        }
    }
    Ok(())
}

/// Checks one legal entity; `entry` names it (e.g. `legal_entities[0]`).
pub fn validate_legal_entity(entry: &str, le: &LegalEntityInput) -> Result<(), InvalidReference> {
    non_empty(&format!("{entry}.name"), &le.name)?;
    non_empty(&format!("{entry}.type"), &le.le_type)?;
    if !(8..=10).contains(&le.edrpou.len()) || !le.edrpou.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{entry}.edrpou"), "must be 8 to 10 digits"));
    }
    if !crate::identity::LEGAL_ENTITY_STATUSES.contains(&le.status.as_str()) {
        return Err(invalid(
            format!("{entry}.status"),
            "must be ACTIVE, SUSPENDED or CLOSED",
        ));
    }
    contacts(entry, &le.addresses, &le.phones, le.email.as_deref())
}

/// Checks one division's own fields (not whether its legal entity exists).
pub fn validate_division(entry: &str, d: &DivisionInput) -> Result<(), InvalidReference> {
    non_empty(&format!("{entry}.name"), &d.name)?;
    if !DIVISION_STATUSES.contains(&d.status.as_str()) {
        return Err(invalid(
            format!("{entry}.status"),
            "must be ACTIVE or INACTIVE",
        ));
    }
    contacts(entry, &d.addresses, &d.phones, d.email.as_deref())?;
    working_hours(&format!("{entry}.working_hours"), d.working_hours.as_ref())
}

/// Checks one employee's own fields (not whether its legal entity exists).
pub fn validate_employee(entry: &str, e: &EmployeeInput) -> Result<(), InvalidReference> {
    non_empty(&format!("{entry}.party.first_name"), &e.party.first_name)?;
    non_empty(&format!("{entry}.party.last_name"), &e.party.last_name)?;
    if let Some(speciality) = &e.speciality {
        let Some(object) = speciality.as_object() else {
            return Err(invalid(format!("{entry}.speciality"), "must be an object"));
        };
        if object
            .get("speciality")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            return Err(invalid(
                format!("{entry}.speciality.speciality"),
                "is required (a non-empty string)",
            ));
        }
    }
    Ok(())
}

/// Checks a whole document: every entry's fields, unique ids per kind, and that every `legal_entity_id`
/// names a legal entity of the document or one of `known` (those already in the database).
pub fn validate(doc: &ReferenceDocument, known: &BTreeSet<Uuid>) -> Result<(), InvalidReference> {
    let mut legal_entities = BTreeSet::new();
    for (i, le) in doc.legal_entities.iter().enumerate() {
        let entry = format!("legal_entities[{i}]");
        validate_legal_entity(&entry, le)?;
        unique_id(&entry, &mut legal_entities, le.id)?;
    }
    let exists = |entry: &str, id: Uuid| {
        if legal_entities.contains(&id) || known.contains(&id) {
            Ok(())
        } else {
            Err(unknown_legal_entity(entry, id))
        }
    };
    let mut divisions = BTreeSet::new();
    for (i, d) in doc.divisions.iter().enumerate() {
        let entry = format!("divisions[{i}]");
        validate_division(&entry, d)?;
        unique_id(&entry, &mut divisions, d.id)?;
        exists(&entry, d.legal_entity_id)?;
    }
    let mut employees = BTreeSet::new();
    for (i, e) in doc.employees.iter().enumerate() {
        let entry = format!("employees[{i}]");
        validate_employee(&entry, e)?;
        unique_id(&entry, &mut employees, e.id)?;
        exists(&entry, e.legal_entity_id)?;
    }
    Ok(())
}

/// Why an import or a single create did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The document or row is invalid; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidReference),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for ImportError {
    fn from(e: tokio_postgres::Error) -> Self {
        ImportError::Store(e.into())
    }
}

const UPSERT_LEGAL_ENTITY: &str =
    "INSERT INTO legal_entities (id, name, short_name, public_name, edrpou, \
     type, status, addresses, phones, email) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, short_name = EXCLUDED.short_name, \
     public_name = EXCLUDED.public_name, edrpou = EXCLUDED.edrpou, type = EXCLUDED.type, \
     status = EXCLUDED.status, addresses = EXCLUDED.addresses, phones = EXCLUDED.phones, \
     email = EXCLUDED.email, updated_at = now()";

const UPSERT_DIVISION: &str = "INSERT INTO divisions (id, legal_entity_id, name, addresses, phones, email, \
     working_hours, mountain_group, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (id) DO UPDATE SET legal_entity_id = EXCLUDED.legal_entity_id, name = EXCLUDED.name, \
     addresses = EXCLUDED.addresses, phones = EXCLUDED.phones, email = EXCLUDED.email, \
     working_hours = EXCLUDED.working_hours, mountain_group = EXCLUDED.mountain_group, \
     status = EXCLUDED.status, updated_at = now()";

const UPSERT_EMPLOYEE: &str = "INSERT INTO users (id, legal_entity_id, party, speciality, position, \
     employee_type, employee_status, is_active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (id) DO UPDATE SET legal_entity_id = EXCLUDED.legal_entity_id, party = EXCLUDED.party, \
     speciality = EXCLUDED.speciality, position = EXCLUDED.position, \
     employee_type = EXCLUDED.employee_type, employee_status = EXCLUDED.employee_status, \
     is_active = EXCLUDED.is_active";

async fn known_legal_entities(
    client: &impl GenericClient,
    ids: Vec<Uuid>,
) -> Result<BTreeSet<Uuid>, StoreError> {
    let statement = client
        .prepare_cached("SELECT id FROM legal_entities WHERE id = ANY($1)")
        .await?;
    Ok(client
        .query(&statement, &[&ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn upsert_legal_entity(
    client: &impl GenericClient,
    le: &LegalEntityInput,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(UPSERT_LEGAL_ENTITY).await?;
    client
        .execute(
            &statement,
            &[
                &le.id,
                &le.name,
                &le.short_name,
                &le.public_name,
                &le.edrpou,
                &le.le_type,
                &le.status,
                &le.addresses,
                &le.phones,
                &le.email,
            ],
        )
        .await?;
    Ok(())
}

async fn upsert_division(client: &impl GenericClient, d: &DivisionInput) -> Result<(), StoreError> {
    let statement = client.prepare_cached(UPSERT_DIVISION).await?;
    client
        .execute(
            &statement,
            &[
                &d.id,
                &d.legal_entity_id,
                &d.name,
                &d.addresses,
                &d.phones,
                &d.email,
                &d.working_hours,
                &d.mountain_group,
                &d.status,
            ],
        )
        .await?;
    Ok(())
}

async fn upsert_employee(client: &impl GenericClient, e: &EmployeeInput) -> Result<(), StoreError> {
    let statement = client.prepare_cached(UPSERT_EMPLOYEE).await?;
    let party = json!(e.party);
    client
        .execute(
            &statement,
            &[
                &e.id,
                &e.legal_entity_id,
                &party,
                &e.speciality,
                &e.position,
                &e.employee_type,
                &e.employee_status,
                &e.is_active,
            ],
        )
        .await?;
    Ok(())
}

/// Validates `doc` and upserts it in one transaction: all of it, or (on any error) nothing.
pub async fn import(
    client: &mut deadpool_postgres::Object,
    doc: &ReferenceDocument,
) -> Result<Imported, ImportError> {
    let tx = client.transaction().await?;
    let referenced: Vec<Uuid> = doc
        .divisions
        .iter()
        .map(|d| d.legal_entity_id)
        .chain(doc.employees.iter().map(|e| e.legal_entity_id))
        .collect();
    let known = known_legal_entities(&tx, referenced).await?;
    validate(doc, &known)?;
    for le in &doc.legal_entities {
        upsert_legal_entity(&tx, le).await?;
    }
    for d in &doc.divisions {
        upsert_division(&tx, d).await?;
    }
    for e in &doc.employees {
        upsert_employee(&tx, e).await?;
    }
    tx.commit().await?;
    Ok(Imported {
        legal_entities: doc.legal_entities.len(),
        divisions: doc.divisions.len(),
        employees: doc.employees.len(),
    })
}

/// Refuses a single create whose legal entity is not in the database.
async fn require_legal_entity(
    client: &impl GenericClient,
    entry: &str,
    legal_entity_id: Uuid,
) -> Result<(), ImportError> {
    if known_legal_entities(client, vec![legal_entity_id])
        .await?
        .is_empty()
    {
        return Err(unknown_legal_entity(entry, legal_entity_id).into());
    }
    Ok(())
}

/// Creates (or updates) one division of a known legal entity.
pub async fn create_division(
    client: &impl GenericClient,
    d: &DivisionInput,
) -> Result<(), ImportError> {
    validate_division("division", d)?;
    require_legal_entity(client, "division", d.legal_entity_id).await?;
    upsert_division(client, d).await?;
    Ok(())
}

/// Creates (or updates) one employee of a known legal entity.
pub async fn create_employee(
    client: &impl GenericClient,
    e: &EmployeeInput,
) -> Result<(), ImportError> {
    validate_employee("employee", e)?;
    require_legal_entity(client, "employee", e.legal_entity_id).await?;
    upsert_employee(client, e).await?;
    Ok(())
}

/// The ids a decision needs looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Legal entities.
    pub legal_entities: Vec<Uuid>,
    /// Divisions.
    pub divisions: Vec<Uuid>,
    /// Employees.
    pub employees: Vec<Uuid>,
}

/// Reads the named legal entities, divisions and employees (unknown ids are simply absent).
pub async fn facts(
    client: &impl GenericClient,
    wanted: &Wanted,
) -> Result<ReferenceFacts, StoreError> {
    let mut facts = ReferenceFacts::default();
    if !wanted.legal_entities.is_empty() {
        let statement = client
            .prepare_cached(
                "SELECT id, name, edrpou, type, status, addresses FROM legal_entities WHERE id = ANY($1)",
            )
            .await?;
        for row in client.query(&statement, &[&wanted.legal_entities]).await? {
            let le = LegalEntityFacts {
                id: row.get(0),
                name: row.get(1),
                edrpou: row.get(2),
                legal_entity_type: row.get(3),
                status: row.get(4),
                addresses: row.get(5),
            };
            facts.legal_entities.insert(le.id, le);
        }
    }
    if !wanted.divisions.is_empty() {
        let statement = client
            .prepare_cached(
                "SELECT id, legal_entity_id, name, addresses, phones, email, working_hours, \
                 mountain_group, status FROM divisions WHERE id = ANY($1)",
            )
            .await?;
        for row in client.query(&statement, &[&wanted.divisions]).await? {
            let d = DivisionFacts {
                id: row.get(0),
                legal_entity_id: row.get(1),
                name: row.get(2),
                addresses: row.get(3),
                phones: row.get(4),
                email: row.get(5),
                working_hours: row.get(6),
                mountain_group: row.get(7),
                status: row.get(8),
            };
            facts.divisions.insert(d.id, d);
        }
    }
    if !wanted.employees.is_empty() {
        let statement = client
            .prepare_cached(
                "SELECT id, legal_entity_id, party, speciality, employee_type, employee_status, is_active \
                 FROM users WHERE id = ANY($1)",
            )
            .await?;
        for row in client.query(&statement, &[&wanted.employees]).await? {
            let party: Option<Value> = row.get(2);
            let e = EmployeeRecord {
                id: row.get(0),
                legal_entity_id: row.get(1),
                party: party.unwrap_or_else(|| Value::Object(Map::new())),
                speciality: row.get(3),
                employee_type: row.get(4),
                employee_status: row.get(5),
                is_active: row.get(6),
            };
            facts.employees.insert(e.id, e);
        }
    }
    Ok(facts)
}

/// Divisions of one legal entity, by id (for `legal-entity show`-like reads and tests).
pub async fn divisions_of(
    client: &impl GenericClient,
    legal_entity_id: Uuid,
) -> Result<BTreeMap<Uuid, String>, StoreError> {
    let statement = client
        .prepare_cached("SELECT id, name FROM divisions WHERE legal_entity_id = $1 ORDER BY id")
        .await?;
    Ok(client
        .query(&statement, &[&legal_entity_id])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
