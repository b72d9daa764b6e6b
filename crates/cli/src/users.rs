//! `kraftwerk users`: SCRAM credentials, as `kafka-configs.sh
//! --entity-type users` manages them: set a password for a mechanism,
//! list who has which, delete one.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use kraftwerk_client::{Admin, ScramAlteration, ScramMechanism};
use serde_json::json;

use crate::{Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UsersAction {
    /// Set (or replace) a user's credential for one mechanism.
    Set,
    /// List users and their mechanisms (never passwords or keys).
    List,
    /// Remove a user's credential for one mechanism.
    Delete,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    /// set | list | delete
    #[arg(value_enum)]
    action: UsersAction,
    #[command(flatten)]
    connect: Connect,
    /// set, delete: the user; list: only this user.
    #[arg(long)]
    user: Option<String>,
    /// set, delete: SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-512")]
    mechanism: String,
    /// set: the password (read from KRAFTWERK_USER_PASSWORD when not given).
    #[arg(long, env = "KRAFTWERK_USER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// set: PBKDF2 iterations, 4096 to 16384 (Kafka's default 4096).
    #[arg(long, default_value_t = 4096)]
    iterations: i32,
}

pub async fn run(args: UsersArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client_config("kraftwerk-users")?)
        .await
        .context("connecting to the cluster")?;
    let json = args.connect.output == Output::Json;
    let mechanism = || -> anyhow::Result<ScramMechanism> {
        ScramMechanism::from_name(&args.mechanism).with_context(|| {
            format!(
                "unknown mechanism {}: SCRAM-SHA-256 or SCRAM-SHA-512",
                args.mechanism
            )
        })
    };
    let user = || args.user.clone().context("--user is required");
    match args.action {
        UsersAction::Set => {
            let Some(password) = args.password.clone() else {
                bail!("--password (or KRAFTWERK_USER_PASSWORD) is required");
            };
            let (user, mechanism) = (user()?, mechanism()?);
            admin
                .alter_user_scram_credentials(&[ScramAlteration::Upsert {
                    user: user.clone(),
                    mechanism,
                    password,
                    iterations: args.iterations,
                }])
                .await
                .with_context(|| format!("setting {} for user {user}", mechanism.name()))?;
            println!("Set {} credential of user {user}.", mechanism.name());
        }
        UsersAction::Delete => {
            let (user, mechanism) = (user()?, mechanism()?);
            admin
                .alter_user_scram_credentials(&[ScramAlteration::Delete {
                    user: user.clone(),
                    mechanism,
                }])
                .await
                .with_context(|| format!("deleting {} of user {user}", mechanism.name()))?;
            println!("Deleted {} credential of user {user}.", mechanism.name());
        }
        UsersAction::List => {
            let only = args.user.clone().map(|u| vec![u]);
            let users = admin
                .describe_user_scram_credentials(only.as_deref())
                .await
                .context("describing SCRAM credentials")?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({"user": u.user, "credentials": u.credentials.iter()
                            .map(|(m, i)| json!({"mechanism": m, "iterations": i}))
                            .collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<32} {:<16} Iterations", "User", "Mechanism");
                for u in users {
                    for (m, i) in &u.credentials {
                        println!("{:<32} {:<16} {i}", u.user, m);
                    }
                }
            }
        }
    }
    Ok(())
}
