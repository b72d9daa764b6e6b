//! SCRAM credentials through [`Admin`], as Kafka's admin client manages
//! them: DescribeUserScramCredentials and AlterUserScramCredentials. The
//! password never leaves the client: it sends a fresh random salt and the
//! salted password (PBKDF2 with the mechanism's HMAC, RFC 5802's `Hi`).

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;
use sha2::{Sha256, Sha512};

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// Kafka's SCRAM mechanisms, numbered as the protocol numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256 = 1,
    Sha512 = 2,
}

impl ScramMechanism {
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn from_code(code: i8) -> String {
        match code {
            1 => "SCRAM-SHA-256".into(),
            2 => "SCRAM-SHA-512".into(),
            other => format!("UNKNOWN({other})"),
        }
    }

    /// PBKDF2 of `password` (RFC 5802's SaltedPassword), for storing a
    /// credential and for logging in with one.
    pub(crate) fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// One user's credentials: (mechanism name, iterations) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScramCredentials {
    pub user: String,
    pub credentials: Vec<(String, i32)>,
}

/// A change to one user's credential.
#[derive(Debug, Clone)]
pub enum ScramAlteration {
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        password: String,
        iterations: i32,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    /// The credentials of `users`, or of every user with one (`None`).
    pub async fn describe_user_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<UserScramCredentials>> {
        let connection = self.cluster().any_connection().await?;
        let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.iter()
                .map(|n| UserName::default().with_name(str_bytes(n)))
                .collect()
        }));
        let response = connection.send(request).await?;
        ClientError::check(response.error_code, response.error_message.as_ref())?;
        let mut out = BTreeMap::new();
        for r in response.results {
            ClientError::check(r.error_code, r.error_message.as_ref())?;
            let mut credentials: Vec<(String, i32)> = r
                .credential_infos
                .iter()
                .map(|c| (ScramMechanism::from_code(c.mechanism), c.iterations))
                .collect();
            credentials.sort();
            out.insert(
                r.user.to_string(),
                UserScramCredentials {
                    user: r.user.to_string(),
                    credentials,
                },
            );
        }
        Ok(out.into_values().collect())
    }

    /// Applies the alterations; the first user the broker refused is the error.
    pub async fn alter_user_scram_credentials(
        &self,
        alterations: &[ScramAlteration],
    ) -> Result<()> {
        let mut request = AlterUserScramCredentialsRequest::default();
        for a in alterations {
            match a {
                ScramAlteration::Upsert {
                    user,
                    mechanism,
                    password,
                    iterations,
                } => {
                    let salt: [u8; 32] = rand::rng().random();
                    let rounds = u32::try_from(*iterations).map_err(|_| {
                        ClientError::Protocol(format!(
                            "iterations must be positive, not {iterations}"
                        ))
                    })?;
                    let salted = mechanism.salted_password(password, &salt, rounds);
                    request.upsertions.push(
                        ScramCredentialUpsertion::default()
                            .with_name(str_bytes(user))
                            .with_mechanism(*mechanism as i8)
                            .with_iterations(*iterations)
                            .with_salt(Bytes::copy_from_slice(&salt))
                            .with_salted_password(Bytes::from(salted)),
                    );
                }
                ScramAlteration::Delete { user, mechanism } => request.deletions.push(
                    ScramCredentialDeletion::default()
                        .with_name(str_bytes(user))
                        .with_mechanism(*mechanism as i8),
                ),
            }
        }
        let connection = self.cluster().any_connection().await?;
        let response = connection.send(request).await?;
        for r in response.results {
            ClientError::check(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }
}
