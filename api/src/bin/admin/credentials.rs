//! Reference data and credentials: legal entities, users, tokens and api-keys. Secrets are printed once, when
//! issued; listings and revocations never show a secret or its hash.

use std::io::BufRead as _;

use anyhow::{bail, Context as _};
use deadpool_postgres::GenericClient;
use ehealth_domain::ClientType;
use ehealth_infra::{
    error::SqlState,
    identity::{self, TokenRef},
    StoreError,
};
use serde_json::{json, Value};

use crate::args::{ApiKeyCommand, LegalEntityCommand, Scopes, TokenCommand, UserCommand};

/// `legal-entity …`
pub async fn legal_entity(
    client: &impl GenericClient,
    command: LegalEntityCommand,
) -> anyhow::Result<Value> {
    Ok(match command {
        LegalEntityCommand::Create {
            name,
            edrpou,
            le_type,
            status,
        } => {
            if name.trim().is_empty() || le_type.trim().is_empty() {
                bail!("--name and --type must not be empty");
            }
            if !(8..=10).contains(&edrpou.len()) || !edrpou.bytes().all(|b| b.is_ascii_digit()) {
                bail!("--edrpou must be 8 to 10 digits");
            }
            json!({ "id": identity::create_legal_entity(client, &name, &edrpou, &le_type, &status).await? })
        }
        LegalEntityCommand::SetStatus { id, status } => {
            if !identity::set_legal_entity_status(client, id, &status).await? {
                bail!("legal entity {id} does not exist");
            }
            json!({ "id": id, "status": status })
        }
        LegalEntityCommand::Show { id } => match identity::legal_entity(client, id).await? {
            Some(legal_entity) => json!(legal_entity),
            None => bail!("legal entity {id} does not exist"),
        },
    })
}

/// `user …`
pub async fn user(client: &impl GenericClient, command: UserCommand) -> anyhow::Result<Value> {
    Ok(match command {
        UserCommand::Create {
            legal_entity,
            employee_type,
            employee_status,
            inactive,
        } => {
            let created = identity::create_user(
                client,
                legal_entity,
                employee_type.as_deref(),
                employee_status.as_deref(),
                !inactive,
            )
            .await;
            match created {
                Ok(id) => json!({ "id": id }),
                Err(e) if is_foreign_key_violation(&e) => {
                    bail!("legal entity {legal_entity} does not exist")
                }
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::Deactivate { id } => set_active(client, id, false).await?,
        UserCommand::Activate { id } => set_active(client, id, true).await?,
    })
}

async fn set_active(
    client: &impl GenericClient,
    id: uuid::Uuid,
    is_active: bool,
) -> anyhow::Result<Value> {
    if !identity::set_user_active(client, id, is_active).await? {
        bail!("user {id} does not exist");
    }
    Ok(json!({ "id": id, "is_active": is_active }))
}

/// `token …`
pub async fn token(client: &impl GenericClient, command: TokenCommand) -> anyhow::Result<Value> {
    Ok(match command {
        TokenCommand::Issue {
            user,
            client_type,
            scopes: Scopes(scopes),
            ttl_seconds,
        } => {
            let client_type = ClientType::parse(&client_type).context("unknown client type")?;
            let ttl = chrono::Duration::seconds(ttl_seconds);
            match identity::issue_token(client, user, client_type, &scopes, ttl).await {
                Ok(issued) => json!(issued),
                Err(e) if is_foreign_key_violation(&e) => bail!("user {user} does not exist"),
                Err(e) => return Err(e.into()),
            }
        }
        TokenCommand::Revoke { id, token } => {
            let which = match (id, token) {
                (Some(id), None) => TokenRef::Id(id),
                (None, Some(secret)) if secret == "-" => TokenRef::Secret(read_secret()?),
                (None, Some(secret)) => TokenRef::Secret(secret),
                _ => bail!("name the token by its id or by --token, not both"),
            };
            match identity::revoke_token(client, &which).await? {
                Some(revoked) => json!(revoked),
                None => match which {
                    TokenRef::Id(id) => bail!("token {id} does not exist"),
                    TokenRef::Secret(_) => bail!("no token has this secret"),
                },
            }
        }
        TokenCommand::List { user } => match identity::user_tokens(client, user).await? {
            Some(tokens) => json!({ "count": tokens.len(), "tokens": tokens }),
            None => bail!("user {user} does not exist"),
        },
    })
}

/// The secret of `token revoke --token -`: the first line of stdin.
fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the token from stdin")?;
    let secret = line.trim();
    if secret.is_empty() {
        bail!("--token -: no token on stdin");
    }
    Ok(secret.to_owned())
}

/// `api-key …`
pub async fn api_key(client: &impl GenericClient, command: ApiKeyCommand) -> anyhow::Result<Value> {
    Ok(match command {
        ApiKeyCommand::Issue { name } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            json!(identity::issue_api_client(client, &name).await?)
        }
        ApiKeyCommand::Revoke { id } => match identity::revoke_api_client(client, id).await? {
            Some(revoked) => json!(revoked),
            None => bail!("api client {id} does not exist"),
        },
        ApiKeyCommand::List => {
            let clients = identity::api_clients(client).await?;
            json!({ "count": clients.len(), "api_keys": clients })
        }
    })
}

fn is_foreign_key_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(pg) if pg.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION))
}
