//! How the worker runs contract-request commands (spec 003): HEAD the uploaded documents and write signed
//! content before the job's transaction, look the named reference data up inside it, answer with the
//! request, and after a refused sign delete the content it wrote.

use deadpool_postgres::GenericClient;
use ehealth_domain::{
    contract_request::{
        additional_document_key, statute_key, Command, ContractRequestAggregate, Event, State,
        StoredDocument,
    },
    Context, Rejection,
};
use ehealth_infra::{
    jobs::{JobStatus, Link, Outcome},
    projection::{contract_request as projection, Projection},
    reference::{self, Wanted},
    storage::{contract_documents::decode_base64, Storage},
    StoreError,
};
use uuid::Uuid;

use crate::handler::{Effects, Handled};

/// The content type signed content is stored with (a PKCS#7 envelope in eHealth).
pub const SIGNED_CONTENT_TYPE: &str = "application/pkcs7-mime";

async fn stored(storage: &Storage, key: String) -> Result<Option<StoredDocument>, StoreError> {
    Ok(storage
        .head(&storage.contract_requests_bucket, &key)
        .await?
        .map(|info| StoredDocument {
            key,
            size: info.size,
            etag: info.etag.trim_matches('"').to_owned(),
        }))
}

impl Handled for ContractRequestAggregate {
    /// Create: what storage holds at the two documents' keys. Sign: writes the signed content at the
    /// command's own key (one per sign request) and records what was written; content that is not base64
    /// is not written, and the decision refuses the sign.
    async fn observe(command: &mut Command, storage: &Storage) -> Result<(), StoreError> {
        match command {
            Command::Create {
                id,
                statute,
                additional_document,
                ..
            } => {
                *statute = stored(storage, statute_key(*id)).await?;
                *additional_document = stored(storage, additional_document_key(*id)).await?;
            }
            Command::SignNhs {
                content_key,
                signed_content,
                stored: written,
            }
            | Command::SignMsp {
                content_key,
                signed_content,
                stored: written,
            } => {
                if let Some(bytes) = decode_base64(signed_content).filter(|b| !b.is_empty()) {
                    let size = bytes.len() as u64;
                    let bucket = &storage.contract_requests_bucket;
                    let etag = storage
                        .put(bucket, content_key, bytes, SIGNED_CONTENT_TYPE)
                        .await?;
                    *written = Some(StoredDocument {
                        key: content_key.clone(),
                        size,
                        etag,
                    });
                }
                // The bytes are in storage now; the decision needs only what was written.
                signed_content.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// The reference data the command names: the caller's legal entity always; for create the owner,
    /// divisions, employees and external contractors; for assign and approve the NHS employee.
    async fn facts(
        command: &Command,
        ctx: &mut Context,
        tx: &impl GenericClient,
    ) -> Result<(), StoreError> {
        let mut wanted = Wanted {
            legal_entities: vec![ctx.actor.legal_entity_id],
            ..Wanted::default()
        };
        match command {
            Command::Create { request, .. } => {
                wanted.employees.push(request.contractor_owner_id);
                wanted.divisions.extend(&request.contractor_divisions);
                for ed in &request.contractor_employee_divisions {
                    wanted.employees.push(ed.employee_id);
                }
                for ec in &request.external_contractors {
                    wanted.legal_entities.push(ec.legal_entity_id);
                    wanted.divisions.extend(ec.divisions.iter().map(|d| d.id));
                }
            }
            Command::Assign { employee_id } => wanted.employees.push(*employee_id),
            Command::Approve(approval) => wanted.employees.push(approval.nhs_signer_id),
            _ => {}
        }
        ctx.reference = reference::facts(tx, &wanted).await?;
        Ok(())
    }

    /// 201 for a create, 200 otherwise, with the request as document 003 shows it.
    async fn answer(
        tx: &impl GenericClient,
        stream_id: Uuid,
        command: &Command,
        _before: &State,
        _after: &State,
    ) -> Result<Outcome, StoreError> {
        let row = projection::get(tx, stream_id).await?;
        Ok(Outcome {
            status: JobStatus::Processed,
            status_code: if matches!(command, Command::Create { .. }) {
                201
            } else {
                200
            },
            links: row
                .iter()
                .map(|r| Link {
                    entity: Self::ENTITY.to_owned(),
                    href: r.href(),
                })
                .collect(),
            response: row.map(|r| r.to_json()).unwrap_or_default(),
        })
    }

    /// A refused sign leaves nothing behind: the content it wrote is deleted after the commit.
    async fn effects(
        command: &Command,
        _before: &State,
        decision: &Result<Vec<Event>, Rejection>,
        _ctx: &Context,
        storage: &Storage,
    ) -> Result<Effects, StoreError> {
        let mut effects = Effects::default();
        if let (
            Err(_),
            Command::SignNhs {
                stored: Some(written),
                ..
            }
            | Command::SignMsp {
                stored: Some(written),
                ..
            },
        ) = (decision, command)
        {
            effects.deletions.push((
                storage.contract_requests_bucket.clone(),
                written.key.clone(),
            ));
        }
        Ok(effects)
    }
}
