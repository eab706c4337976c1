//! Authentication and authorization, in the order the specification gives: api-key (401) → token valid and
//! not expired (401) → scope (403 "invalid scopes") → user active (403) → legal entity active (403 or the
//! endpoint's own answer).
//!
//! Verified credentials are kept for `AUTH_CACHE_TTL_MS` ([`ehealth_infra::identity::Credentials`]), so a
//! request usually checks them without a database query; revocations and status changes take effect within
//! that bound, and expiry is checked on every request.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use chrono::Utc;
use ehealth_infra::identity::Principal;

use crate::{ApiError, AppState};

/// The message of every 401 about the bearer token.
pub const UNAUTHORIZED: &str = "unauthorized";
/// The message of a 403 for a missing scope.
pub const INVALID_SCOPES: &str = "invalid scopes";
/// The message of a 403 for an inactive user.
pub const USER_NOT_ACTIVE: &str = "user is not active";
/// The message of a 403 for a legal entity that is not active.
pub const CLIENT_NOT_ACTIVE: &str = "Client is not active";

/// A request that presented a valid `api-key` header (the MIS client's secret).
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::Unauthorized("api-key is missing".to_owned()));
        }
        if state.credentials.api_key_is_valid(&state.pool, key).await? {
            Ok(ApiKey)
        } else {
            Err(ApiError::Unauthorized("invalid api-key".to_owned()))
        }
    }
}

/// The authenticated caller: a known bearer token that has not expired (shared with the credential cache).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthorized(UNAUTHORIZED.to_owned()))?;
        let principal = state
            .credentials
            .principal(&state.pool, token)
            .await?
            .ok_or_else(|| ApiError::Unauthorized(UNAUTHORIZED.to_owned()))?;
        if principal.expires_at <= Utc::now() {
            return Err(ApiError::Unauthorized(UNAUTHORIZED.to_owned()));
        }
        Ok(Caller(principal))
    }
}

impl Caller {
    /// Checks the scope (403 "invalid scopes") and that the user is active (403 "user is not active").
    pub fn authorize(&self, scope: &str) -> Result<&Principal, ApiError> {
        if !self.0.has_scope(scope) {
            return Err(ApiError::forbidden(INVALID_SCOPES));
        }
        if !self.0.user_active {
            return Err(ApiError::forbidden(USER_NOT_ACTIVE));
        }
        Ok(&self.0)
    }

    /// [`Caller::authorize`], then the legal entity must be active (403 "Client is not active").
    pub fn authorize_active(&self, scope: &str) -> Result<&Principal, ApiError> {
        let principal = self.authorize(scope)?;
        if principal.legal_entity_status != "ACTIVE" {
            return Err(ApiError::forbidden(CLIENT_NOT_ACTIVE));
        }
        Ok(principal)
    }
}
