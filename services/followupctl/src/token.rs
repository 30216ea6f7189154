//! `followupctl token`: mints a development token for the API.

use clap::Args;
use followup_api::{Auth, Claims};

/// Settings of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// The institution (`inst`).
    #[arg(long)]
    inst: String,
    /// A team of the user (repeat for several).
    #[arg(long = "team")]
    teams: Vec<String>,
    /// A role: caseworker, admin or ops (repeat for several).
    #[arg(long = "role", default_value = "caseworker")]
    roles: Vec<String>,
    /// How long the token is valid, in hours.
    #[arg(long, default_value_t = 12)]
    hours: i64,
    /// The HS256 secret the API checks tokens with (the server's `FOLLOWUP_JWT_SECRET`).
    #[arg(long, env = "FOLLOWUP_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let Some(secret) = args.secret.filter(|s| !s.is_empty()) else {
        anyhow::bail!(
            "FOLLOWUP_JWT_SECRET is not set: set it to the API's HS256 secret (or pass \
             --secret); after deploy/run.sh the demo's is in .local/env, which followupctl \
             reads when started in the repository"
        );
    };
    anyhow::ensure!(
        secret.len() >= 32,
        "FOLLOWUP_JWT_SECRET must be at least 32 bytes"
    );
    let claims = Claims {
        sub: args.sub,
        inst: args.inst,
        teams: args.teams,
        roles: args.roles,
        exp: (chrono::Utc::now() + chrono::Duration::hours(args.hours)).timestamp(),
        iat: Some(chrono::Utc::now().timestamp()),
        nbf: None,
    };
    println!("{}", Auth::new(&secret).mint(&claims));
    Ok(())
}
