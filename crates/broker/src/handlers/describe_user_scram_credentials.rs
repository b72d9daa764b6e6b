//! DescribeUserScramCredentials (50): each user's SCRAM mechanisms and
//! iteration counts, never salts or keys (`kafka-configs.sh --describe
//! --entity-type users`).

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::security::authorizer::op;
use crate::security::scram::ScramMechanism;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !authorized_on_cluster(state, req, op::DESCRIBE) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    let image = state.image.load();
    let credentials = &image.scram_credentials;
    let users: Vec<String> = match &body.users {
        None => credentials.keys().cloned().collect(),
        Some(users) => users.iter().map(|u| u.name.to_string()).collect(),
    };
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<&String> = users.iter().filter(|u| !seen.insert(*u)).collect();
    let mut listed = BTreeSet::new();
    let mut results = Vec::new();
    for user in &users {
        if !listed.insert(user) {
            continue;
        }
        let result =
            DescribeUserScramCredentialsResult::default().with_user(str_bytes(user.clone()));
        let result = if duplicated.contains(user) {
            result
                .with_error_code(ErrorCode::DUPLICATE_RESOURCE.code())
                .with_error_message(Some(str_bytes(format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                ))))
        } else {
            match credentials.get(user) {
                None => result
                    .with_error_code(ErrorCode::RESOURCE_NOT_FOUND.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
                Some(by_mechanism) => result.with_credential_infos(
                    by_mechanism
                        .iter()
                        .filter_map(|(name, c)| {
                            Some(
                                CredentialInfo::default()
                                    .with_mechanism(ScramMechanism::from_name(name)?.code())
                                    .with_iterations(c.iterations),
                            )
                        })
                        .collect(),
                ),
            }
        };
        results.push(result);
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
