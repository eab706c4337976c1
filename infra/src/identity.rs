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

/// Every scope a route of the api asks for: a token with any other scope could never use it, so
/// `ehealth-admin token issue` refuses one.
pub const SCOPES: &[&str] = &[
    "contract_request:create",
    "contract_request:read",
    "contract_request:update",
    "contract_request:approve",
    "contract_request:sign",
    "contract_request:terminate",
    "service_request:write",
    "service_request:use",
    "service_request:read",
    "job:read",
    "gambit:erp",
    "audit:read",
    "private_contracts:write",
    "patient_attachment:read",
    "patient_attachment:write",
];

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
     JOIN legal_entities le ON le.id = u.legal_entity_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL";

/// Looks up the principal of a bearer token, expired or not (the caller decides); `None` if unknown or
/// revoked, so a revoked token is answered exactly like one that never existed (401).
pub async fn principal(
    client: &impl GenericClient,
    token: &str,
) -> Result<Option<Principal>, StoreError> {
    principal_by_hash(client, &secret_digest(token)).await
}

async fn principal_by_hash(
    client: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<Option<Principal>, StoreError> {
    let statement = client.prepare_cached(SELECT_PRINCIPAL).await?;
    let Some(row) = client.query_opt(&statement, &[&hash.as_slice()]).await? else {
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

/// How many credentials of each kind [`Credentials`] keeps at most: a bounded memory cost (a few MiB at
/// most) whatever the number of callers.
pub const CREDENTIAL_CACHE_CAPACITY: usize = 10_000;

/// Verified api-keys and bearer tokens, kept for a short time so that most requests check their
/// credentials without a database query.
///
/// Entries are keyed by the SHA-256 of the secret (what the database stores; the secret itself is never
/// kept), live `AUTH_CACHE_TTL_MS` and are bounded by [`CREDENTIAL_CACHE_CAPACITY`] per kind. Only what the
/// database confirmed is kept: an unknown or revoked secret is asked about every time. So a revocation, or a
/// change of a user's or legal entity's status, takes effect within the TTL; a token's expiry is still
/// checked on every request, against the cached `expires_at`.
#[derive(Debug)]
pub struct Credentials {
    api_keys: TtlMap<()>,
    // Shared, so a cache hit costs a reference count rather than a copy of the principal's strings.
    tokens: TtlMap<std::sync::Arc<Principal>>,
}

impl Credentials {
    /// A cache whose entries live `ttl`; a zero `ttl` keeps nothing (every request asks the database).
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            api_keys: TtlMap::new(ttl, CREDENTIAL_CACHE_CAPACITY),
            tokens: TtlMap::new(ttl, CREDENTIAL_CACHE_CAPACITY),
        }
    }

    /// Whether `api_key` belongs to an active API client, from the cache or (taking a pooled connection only
    /// then) the database.
    pub async fn api_key_is_valid(
        &self,
        pool: &deadpool_postgres::Pool,
        api_key: &str,
    ) -> Result<bool, StoreError> {
        let hash = secret_digest(api_key);
        if self.api_keys.get(&hash).is_some() {
            return Ok(true);
        }
        let client = pool.get().await?;
        let valid = api_key_hash_is_valid(&client, &hash).await?;
        if valid {
            self.api_keys.insert(hash, ());
        }
        Ok(valid)
    }

    /// The principal of a bearer token, expired or not (the caller checks `expires_at`), from the cache or
    /// (taking a pooled connection only then) the database; `None` if unknown or revoked.
    pub async fn principal(
        &self,
        pool: &deadpool_postgres::Pool,
        token: &str,
    ) -> Result<Option<std::sync::Arc<Principal>>, StoreError> {
        let hash = secret_digest(token);
        if let Some(principal) = self.tokens.get(&hash) {
            return Ok(Some(principal));
        }
        let client = pool.get().await?;
        let principal = principal_by_hash(&client, &hash)
            .await?
            .map(std::sync::Arc::new);
        if let Some(principal) = &principal {
            self.tokens.insert(hash, principal.clone());
        }
        Ok(principal)
    }
}

/// A map from a secret's SHA-256 to a value, each entry valid for `ttl`, at most `capacity` entries.
#[derive(Debug)]
struct TtlMap<V> {
    ttl: std::time::Duration,
    capacity: usize,
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (std::time::Instant, V)>>,
}

impl<V: Clone> TtlMap<V> {
    fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, key: &[u8; 32]) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((until, value)) if std::time::Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: [u8; 32], value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (until, _)| now < *until);
            // Still full of live entries: make room by dropping one of them (it is asked about again).
            if entries.len() >= self.capacity {
                if let Some(victim) = entries.keys().next().copied() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(key, (now + self.ttl, value));
    }
}

fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `api_key` belongs to an active API client.
pub async fn api_key_is_valid(
    client: &impl GenericClient,
    api_key: &str,
) -> Result<bool, StoreError> {
    api_key_hash_is_valid(client, &secret_digest(api_key)).await
}

async fn api_key_hash_is_valid(
    client: &impl GenericClient,
    hash: &[u8; 32],
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("SELECT 1 FROM api_clients WHERE key_hash = $1 AND is_active")
        .await?;
    Ok(client
        .query_opt(&statement, &[&hash.as_slice()])
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
    /// The token's id, by which an operator lists and revokes it without ever handling the secret again.
    pub id: Uuid,
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
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO tokens (id, token_hash, user_id, client_type, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &hash,
                &user_id,
                &client_type.as_str(),
                &scopes,
                &expires_at,
            ],
        )
        .await?;
    Ok(IssuedToken {
        id,
        token,
        expires_at,
    })
}

/// Issues an api-key for a new API client; returns the key (shown once).
pub async fn issue_api_key(client: &impl GenericClient, name: &str) -> Result<String, StoreError> {
    Ok(issue_api_client(client, name).await?.api_key)
}

/// A new API client: its id (to list and revoke it by) and its api-key, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedApiKey {
    /// The API client.
    pub id: Uuid,
    /// The api-key.
    pub api_key: String,
}

/// Creates an API client named `name` with a new api-key.
pub async fn issue_api_client(
    client: &impl GenericClient,
    name: &str,
) -> Result<IssuedApiKey, StoreError> {
    let (api_key, hash) = new_secret();
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO api_clients (id, name, key_hash) VALUES ($1, $2, $3)",
            &[&id, &name, &hash],
        )
        .await?;
    Ok(IssuedApiKey { id, api_key })
}

// Operators' reads and revocations (`ehealth-admin`). None of them returns a secret or its hash: secrets
// are shown once, when issued, and only their SHA-256 is stored.

/// A bearer token as an operator sees it: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// Its client type.
    pub client_type: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// `active`, `expired` or `revoked` (revoked wins over expired).
    pub status: &'static str,
    /// When it expires (or expired).
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was issued.
    pub inserted_at: DateTime<Utc>,
}

const TOKEN_COLUMNS: &str = "id, user_id, client_type, scopes, expires_at, revoked_at, inserted_at";

fn token_info(row: &tokio_postgres::Row) -> TokenInfo {
    let expires_at: DateTime<Utc> = row.get("expires_at");
    let revoked_at: Option<DateTime<Utc>> = row.get("revoked_at");
    let status = match revoked_at {
        Some(_) => "revoked",
        None if expires_at <= Utc::now() => "expired",
        None => "active",
    };
    TokenInfo {
        id: row.get("id"),
        user_id: row.get("user_id"),
        client_type: row.get("client_type"),
        scopes: row.get("scopes"),
        status,
        expires_at,
        revoked_at,
        inserted_at: row.get("inserted_at"),
    }
}

/// Which token to revoke: by its id, or by the secret itself (an operator handed a leaked token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    /// The token's id.
    Id(Uuid),
    /// The bearer token; only its hash is looked up.
    Secret(String),
}

/// Revokes a token: from now on the api answers it 401, like a token it never issued. Revoking a revoked
/// token keeps the first `revoked_at`. `None` if no such token exists.
pub async fn revoke_token(
    client: &impl GenericClient,
    token: &TokenRef,
) -> Result<Option<TokenInfo>, StoreError> {
    let (by_id, by_hash) = match token {
        TokenRef::Id(id) => (Some(*id), None),
        TokenRef::Secret(secret) => (None, Some(hash_secret(secret))),
    };
    let statement = client
        .prepare_cached(&format!(
            "UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) \
             WHERE id = $1 OR token_hash = $2 RETURNING {TOKEN_COLUMNS}"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&by_id, &by_hash])
        .await?
        .as_ref()
        .map(token_info))
}

/// Every token of a user, newest first; `None` if the user does not exist.
pub async fn user_tokens(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<Vec<TokenInfo>>, StoreError> {
    let statement = client
        .prepare_cached("SELECT 1 FROM users WHERE id = $1")
        .await?;
    if client.query_opt(&statement, &[&user_id]).await?.is_none() {
        return Ok(None);
    }
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 ORDER BY inserted_at DESC, id"
        ))
        .await?;
    let rows = client.query(&statement, &[&user_id]).await?;
    Ok(Some(rows.iter().map(token_info).collect()))
}

/// An API client as an operator sees it: never its api-key, never the key's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiClientInfo {
    /// The API client.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Whether its api-key is accepted; `false` once revoked.
    pub is_active: bool,
    /// When it was created.
    pub inserted_at: DateTime<Utc>,
}

const API_CLIENT_COLUMNS: &str = "id, name, is_active, inserted_at";

fn api_client_info(row: &tokio_postgres::Row) -> ApiClientInfo {
    ApiClientInfo {
        id: row.get("id"),
        name: row.get("name"),
        is_active: row.get("is_active"),
        inserted_at: row.get("inserted_at"),
    }
}

/// Revokes an API client's api-key (`is_active = false`): every request with it is answered 401 "invalid
/// api-key" from now on. `None` if no such client exists.
pub async fn revoke_api_client(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ApiClientInfo>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "UPDATE api_clients SET is_active = false WHERE id = $1 RETURNING {API_CLIENT_COLUMNS}"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(api_client_info))
}

/// Every API client, oldest first.
pub async fn api_clients(client: &impl GenericClient) -> Result<Vec<ApiClientInfo>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {API_CLIENT_COLUMNS} FROM api_clients ORDER BY inserted_at, id"
        ))
        .await?;
    let rows = client.query(&statement, &[]).await?;
    Ok(rows.iter().map(api_client_info).collect())
}

/// A legal entity with the count of its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegalEntityInfo {
    /// The legal entity.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its EDRPOU code.
    pub edrpou: String,
    /// Its type, e.g. `MSP`.
    #[serde(rename = "type")]
    pub le_type: String,
    /// `ACTIVE`, `SUSPENDED` or `CLOSED`.
    pub status: String,
    /// Its users.
    pub users: i64,
    /// Those of them that are active.
    pub active_users: i64,
    /// When it was created.
    pub inserted_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Reads a legal entity and counts its users; `None` if it does not exist.
pub async fn legal_entity(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<LegalEntityInfo>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT le.id, le.name, le.edrpou, le.type, le.status, le.inserted_at, le.updated_at, \
               (SELECT count(*) FROM users u WHERE u.legal_entity_id = le.id) AS users, \
               (SELECT count(*) FROM users u WHERE u.legal_entity_id = le.id AND u.is_active) AS active_users \
             FROM legal_entities le WHERE le.id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| LegalEntityInfo {
            id: row.get("id"),
            name: row.get("name"),
            edrpou: row.get("edrpou"),
            le_type: row.get("type"),
            status: row.get("status"),
            users: row.get("users"),
            active_users: row.get("active_users"),
            inserted_at: row.get("inserted_at"),
            updated_at: row.get("updated_at"),
        }))
}
