//! AlterUserScramCredentials (51): sets and removes users' SCRAM
//! credentials in the metadata quorum. The client sends the salt and the
//! salted password (`kafka-configs.sh --alter --add-config
//! 'SCRAM-SHA-256=[password=...]'` computes them); what is stored is the
//! salt, the iteration count and the two keys derived from it. Each user is
//! answered on its own: one bad alteration leaves that user unchanged.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::metadata::ScramCredential;
use crate::security::authorizer::op;
use crate::security::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::BrokerState;

type Refusal = (ErrorCode, String);

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !authorized_on_cluster(state, req, op::ALTER) {
        let mut users: Vec<String> = Vec::new();
        for u in body
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(body.upsertions.iter().map(|u| &u.name))
        {
            if !users.iter().any(|x| x == u.as_str()) {
                users.push(u.to_string());
            }
        }
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(str_bytes(u))
                        .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
                        .with_error_message(Some(str_bytes("Cluster authorization failed.")))
                })
                .collect(),
        );
    }
    let image = state.image.load();
    // Users in order of first mention, each with its first refusal.
    let mut order: Vec<String> = Vec::new();
    let mut refused: BTreeMap<String, Refusal> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut deletions = Vec::new();
    let mut upsertions = Vec::new();
    let note = |user: &str, order: &mut Vec<String>| {
        if !order.iter().any(|u| u == user) {
            order.push(user.to_string());
        }
    };
    let alterations = body
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None))
        .chain(body.upsertions.iter().map(|u| {
            (
                u.name.to_string(),
                u.mechanism,
                Some((u.iterations, u.salt.clone(), u.salted_password.clone())),
            )
        }));
    for (user, code, upsert) in alterations {
        note(&user, &mut order);
        let check = || -> Result<(ScramMechanism, Option<ScramCredential>), Refusal> {
            if user.is_empty() {
                return Err((
                    ErrorCode::UNACCEPTABLE_CREDENTIAL,
                    "Username must not be empty".into(),
                ));
            }
            let mechanism = ScramMechanism::from_code(code).ok_or_else(|| {
                (
                    ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                    format!("Unknown SCRAM mechanism {code}"),
                )
            })?;
            match &upsert {
                None => {
                    let exists = image
                        .scram_credentials
                        .get(&user)
                        .is_some_and(|c| c.contains_key(mechanism.name()));
                    if !exists {
                        return Err((
                            ErrorCode::RESOURCE_NOT_FOUND,
                            "Attempt to delete a user credential that does not exist".into(),
                        ));
                    }
                    Ok((mechanism, None))
                }
                Some((iterations, salt, salted)) => {
                    if *iterations < MIN_ITERATIONS {
                        return Err((
                            ErrorCode::UNACCEPTABLE_CREDENTIAL,
                            format!("Too few iterations: {iterations} (at least {MIN_ITERATIONS})"),
                        ));
                    }
                    if *iterations > MAX_ITERATIONS {
                        return Err((
                            ErrorCode::UNACCEPTABLE_CREDENTIAL,
                            format!("Too many iterations: {iterations} (at most {MAX_ITERATIONS})"),
                        ));
                    }
                    if salt.is_empty() || salted.is_empty() {
                        return Err((
                            ErrorCode::UNACCEPTABLE_CREDENTIAL,
                            "Salt and salted password must not be empty".into(),
                        ));
                    }
                    Ok((
                        mechanism,
                        Some(mechanism.credential(salt, salted, *iterations)),
                    ))
                }
            }
        };
        let outcome = if seen.insert((user.clone(), code)) {
            check()
        } else {
            Err((
                ErrorCode::DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".into(),
            ))
        };
        match outcome {
            Err(refusal) => {
                refused.entry(user).or_insert(refusal);
            }
            Ok((mechanism, None)) => deletions.push((user, mechanism.name().to_string())),
            Ok((mechanism, Some(credential))) => {
                upsertions.push((user, mechanism.name().to_string(), credential))
            }
        }
    }
    deletions.retain(|(u, _)| !refused.contains_key(u));
    upsertions.retain(|(u, _, _)| !refused.contains_key(u));
    let written = if deletions.is_empty() && upsertions.is_empty() {
        Ok(())
    } else {
        state
            .control
            .alter_scram_credentials(deletions, upsertions)
            .await
    };
    let results = order
        .into_iter()
        .map(|user| {
            let (code, message) = match (refused.get(&user), &written) {
                (Some((code, message)), _) => (*code, Some(message.clone())),
                (None, Err(e)) => (e.error_code(), Some(e.to_string())),
                (None, Ok(())) => (ErrorCode::NONE, None),
            };
            AlterUserScramCredentialsResult::default()
                .with_user(str_bytes(user))
                .with_error_code(code.code())
                .with_error_message(message.map(str_bytes))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
