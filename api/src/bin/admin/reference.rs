//! Reference data a contract request renders: `reference import FILE.json` (legal entities, divisions and
//! employees from one document, validated as a whole and upserted in one transaction), `division create` and
//! `employee create` for single rows. Every refusal names the bad entry, e.g.
//! `divisions[2].legal_entity_id: unknown legal entity …`, and writes nothing.

use anyhow::Context as _;
use ehealth_infra::reference::{
    self, DivisionInput, EmployeeInput, ImportError, Party, ReferenceDocument,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::args::{DivisionCommand, EmployeeCommand, ReferenceCommand};

fn refused(e: ImportError) -> anyhow::Error {
    match e {
        ImportError::Invalid(invalid) => anyhow::anyhow!("{invalid}"),
        ImportError::Store(e) => e.into(),
    }
}

fn json_arg(name: &str, value: Option<String>) -> anyhow::Result<Option<Value>> {
    value
        .map(|v| serde_json::from_str(&v).with_context(|| format!("--{name} is not valid JSON")))
        .transpose()
}

/// `reference …`
pub async fn reference(
    client: &mut deadpool_postgres::Object,
    command: ReferenceCommand,
) -> anyhow::Result<Value> {
    match command {
        ReferenceCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            let doc: ReferenceDocument = serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|e| {
                    let path = e.path().to_string();
                    anyhow::anyhow!("{}: {}", path, e.into_inner())
                })?;
            let imported = reference::import(client, &doc).await.map_err(refused)?;
            Ok(json!(imported))
        }
    }
}

/// `division create …`
pub async fn division(
    client: &deadpool_postgres::Object,
    command: DivisionCommand,
) -> anyhow::Result<Value> {
    match command {
        DivisionCommand::Create {
            legal_entity,
            id,
            name,
            addresses,
            phones,
            email,
            working_hours,
            mountain_group,
            inactive,
        } => {
            let division = DivisionInput {
                id: id.unwrap_or_else(Uuid::new_v4),
                legal_entity_id: legal_entity,
                name,
                addresses: json_arg("addresses", addresses)?.unwrap_or_else(|| json!([])),
                phones: json_arg("phones", phones)?.unwrap_or_else(|| json!([])),
                email,
                working_hours: json_arg("working-hours", working_hours)?,
                mountain_group,
                status: if inactive { "INACTIVE" } else { "ACTIVE" }.to_owned(),
            };
            reference::create_division(client, &division)
                .await
                .map_err(refused)?;
            Ok(json!({ "id": division.id }))
        }
    }
}

/// `employee create …`
pub async fn employee(
    client: &deadpool_postgres::Object,
    command: EmployeeCommand,
) -> anyhow::Result<Value> {
    match command {
        EmployeeCommand::Create {
            legal_entity,
            id,
            first_name,
            last_name,
            second_name,
            speciality,
            position,
            employee_type,
            employee_status,
            inactive,
        } => {
            let employee = EmployeeInput {
                id: id.unwrap_or_else(Uuid::new_v4),
                legal_entity_id: legal_entity,
                party: Party {
                    first_name,
                    last_name,
                    second_name,
                },
                speciality: json_arg("speciality", speciality)?,
                position,
                employee_type,
                employee_status,
                is_active: !inactive,
            };
            reference::create_employee(client, &employee)
                .await
                .map_err(refused)?;
            Ok(json!({ "id": employee.id }))
        }
    }
}
