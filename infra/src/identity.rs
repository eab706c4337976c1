//! Identity and reference data: legal entities, users, API clients and bearer tokens.
//!
//! Tokens and api-keys are 256-bit random secrets shown once; only their SHA-256 is stored, which is enough
//! for secrets of that entropy (no password stretching needed).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::{context::EmployeeFacts, ClientType};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::StoreError;

/// Legal entity statuses.
pub const LEGAL_ENTITY_STATUSES: [&str; 3] = ["ACTIVE", "SUSPENDED", "CLOSED"];

/// The authenticated caller behind a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// Whether the user is active.
    pub user_active: bool,
    /// The user's legal entity.
    pub legal_entity_id: Uuid,
    /// Its type, e.g. `MSP`.
    pub legal_entity_type: String,
    /// Its status, e.g. `ACTIVE`.
    pub legal_entity_status: String,
    /// The token's client type.
    pub client_type: ClientType,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The domain's view of the caller.
    pub fn actor(&self) -> ehealth_domain::Actor {
        ehealth_domain::Actor {
            user_id: self.user_id,
            legal_entity_id: self.legal_entity_id,
            client_type: self.client_type,
        }
    }
}

/// Generates a new secret and its hash.
pub fn new_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

const SELECT_PRINCIPAL: &str =
    "SELECT t.user_id, u.is_active, u.legal_entity_id, le.type, le.status, \
     t.client_type, t.scopes, t.expires_at FROM tokens t JOIN users u ON u.id = t.user_id \
     JOIN legal_entities le ON le.id = u.legal_entity_id WHERE t.token_hash = $1";

/// Looks up the principal of a bearer token, expired or not (the caller decides); `None` if unknown.
pub async fn principal(
    client: &impl GenericClient,
    token: &str,
) -> Result<Option<Principal>, StoreError> {
    let statement = client.prepare_cached(SELECT_PRINCIPAL).await?;
    let Some(row) = client.query_opt(&statement, &[&hash_secret(token)]).await? else {
        return Ok(None);
    };
    let client_type: String = row.get(5);
    let Some(client_type) = ClientType::parse(&client_type) else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id: row.get(0),
        user_active: row.get(1),
        legal_entity_id: row.get(2),
        legal_entity_type: row.get(3),
        legal_entity_status: row.get(4),
        client_type,
        scopes: row.get(6),
        expires_at: row.get(7),
    }))
}

/// Whether `api_key` belongs to an active API client.
pub async fn api_key_is_valid(
    client: &impl GenericClient,
    api_key: &str,
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("SELECT 1 FROM api_clients WHERE key_hash = $1 AND is_active")
        .await?;
    Ok(client
        .query_opt(&statement, &[&hash_secret(api_key)])
        .await?
        .is_some())
}

/// Looks up an employee for a decision that names one.
pub async fn employee(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<EmployeeFacts>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, legal_entity_id, employee_type, employee_status, is_active FROM users WHERE id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| EmployeeFacts {
            id: row.get(0),
            legal_entity_id: row.get(1),
            employee_type: row.get(2),
            employee_status: row.get(3),
            is_active: row.get(4),
        }))
}

/// Creates a legal entity.
pub async fn create_legal_entity(
    client: &impl GenericClient,
    name: &str,
    edrpou: &str,
    le_type: &str,
    status: &str,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO legal_entities (id, name, edrpou, type, status) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &name, &edrpou, &le_type, &status],
        )
        .await?;
    Ok(id)
}

/// Sets a legal entity's status; `false` if it does not exist.
pub async fn set_legal_entity_status(
    client: &impl GenericClient,
    id: Uuid,
    status: &str,
) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE legal_entities SET status = $2, updated_at = now() WHERE id = $1",
            &[&id, &status],
        )
        .await?;
    Ok(n == 1)
}

/// Creates a user of a legal entity.
pub async fn create_user(
    client: &impl GenericClient,
    legal_entity_id: Uuid,
    employee_type: Option<&str>,
    employee_status: Option<&str>,
    is_active: bool,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO users (id, legal_entity_id, employee_type, employee_status, is_active) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &legal_entity_id,
                &employee_type,
                &employee_status,
                &is_active,
            ],
        )
        .await?;
    Ok(id)
}

/// Sets whether a user is active; `false` if it does not exist.
pub async fn set_user_active(
    client: &impl GenericClient,
    id: Uuid,
    is_active: bool,
) -> Result<bool, StoreError> {
    Ok(client
        .execute(
            "UPDATE users SET is_active = $2 WHERE id = $1",
            &[&id, &is_active],
        )
        .await?
        == 1)
}

/// An issued token: the secret (shown once) and its expiry.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Issues a bearer token for a user.
pub async fn issue_token(
    client: &impl GenericClient,
    user_id: Uuid,
    client_type: ClientType,
    scopes: &[String],
    ttl: Duration,
) -> Result<IssuedToken, StoreError> {
    let (token, hash) = new_secret();
    let expires_at = Utc::now() + ttl;
    client
        .execute(
            "INSERT INTO tokens (id, token_hash, user_id, client_type, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &Uuid::new_v4(),
                &hash,
                &user_id,
                &client_type.as_str(),
                &scopes,
                &expires_at,
            ],
        )
        .await?;
    Ok(IssuedToken { token, expires_at })
}

/// Issues an api-key for a new API client; returns the key (shown once).
pub async fn issue_api_key(client: &impl GenericClient, name: &str) -> Result<String, StoreError> {
    let (key, hash) = new_secret();
    client
        .execute(
            "INSERT INTO api_clients (id, name, key_hash) VALUES ($1, $2, $3)",
            &[&Uuid::new_v4(), &name, &hash],
        )
        .await?;
    Ok(key)
}
