//! A scenario's credentials, made with the real `ehealth-admin` binary as an operator would.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{load, procs::ServiceEnv, servers};

/// Runs `ehealth-admin` with `args`; its JSON answer.
pub async fn admin(env: &ServiceEnv, args: &[&str]) -> Result<Value> {
    let what = format!("ehealth-admin {}", args.join(" "));
    let out = servers::run(
        env.command("ehealth-admin")
            .env("RUST_LOG", "warn")
            .args(args),
        &what,
        Duration::from_secs(60),
    )
    .await?;
    // The answer is the last line; log lines may come before it.
    let answer = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(answer).with_context(|| format!("{what} printed {out}"))
}

/// An MSP, an approved doctor, a token with the service-request scopes and an api-key, all made with the
/// real admin binary.
pub async fn credentials(env: &ServiceEnv, base: String) -> Result<load::Client> {
    let id = |value: Value, field: &str| -> Result<String> {
        value[field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {field} in {value}"))
    };
    let le = id(
        admin(
            env,
            &[
                "legal-entity",
                "create",
                "--name",
                "Faults Clinic",
                "--edrpou",
                "12345678",
                "--type",
                "MSP",
            ],
        )
        .await?,
        "id",
    )?;
    let user = id(
        admin(
            env,
            &[
                "user",
                "create",
                "--legal-entity",
                &le,
                "--employee-type",
                "DOCTOR",
                "--employee-status",
                "APPROVED",
            ],
        )
        .await?,
        "id",
    )?;
    let scopes = "service_request:write service_request:use service_request:read job:read";
    let token = id(
        admin(
            env,
            &[
                "token",
                "issue",
                "--user",
                &user,
                "--client-type",
                "MSP",
                "--scopes",
                scopes,
                "--ttl-seconds",
                "86400",
            ],
        )
        .await?,
        "token",
    )?;
    let api_key = id(
        admin(env, &["api-key", "issue", "--name", "Faults MIS"]).await?,
        "api_key",
    )?;
    Ok(load::Client {
        base,
        token,
        api_key,
        legal_entity_id: le.parse()?,
        user_id: user.parse()?,
    })
}
