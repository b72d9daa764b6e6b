//! ACLs through [`Admin`], as Kafka's admin client manages them:
//! CreateAcls, DescribeAcls and DeleteAcls (versions 1 to 3, the ones with
//! pattern types). An [`AclBinding`] is one ACL; an [`AclBindingFilter`]
//! selects ACLs, with `Any` (and, for the pattern type, `Match`) where a
//! binding has a concrete value. Errors for one binding or one filter are
//! returned beside it, as Kafka returns them; only a failed round trip (or
//! a refused DescribeAcls) is the method's error.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// Declares one of Kafka's ACL enums: the protocol code of each variant,
/// Kafka's upper-case name (`IDEMPOTENT_WRITE`), and parsing that accepts
/// the names Kafka's tools accept (`IdempotentWrite`, `idempotent-write`).
macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal, $kafka:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            /// A code this client does not know (Kafka's `UNKNOWN`).
            Unknown,
            $($variant,)+
        }

        impl $name {
            /// Every variant but `Unknown`.
            pub const ALL_KNOWN: &'static [$name] = &[$($name::$variant,)+];

            /// The protocol code.
            pub fn code(self) -> i8 {
                match self {
                    $name::Unknown => 0,
                    $($name::$variant => $code,)+
                }
            }

            /// The variant of a protocol code; `Unknown` for codes this
            /// client does not know.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$variant,)+
                    _ => $name::Unknown,
                }
            }

            /// Kafka's name (`toString()` of its Java enum).
            pub fn name(self) -> &'static str {
                match self {
                    $name::Unknown => "UNKNOWN",
                    $($name::$variant => $kafka,)+
                }
            }

            /// Parses a name as Kafka's tools do, ignoring case, `_` and `-`.
            pub fn from_name(name: &str) -> Option<$name> {
                let wanted = normalize(name);
                Self::ALL_KNOWN
                    .iter()
                    .copied()
                    .find(|v| normalize(v.name()) == wanted)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

kafka_enum! {
    /// Kafka's `ResourceType`.
    AclResourceType {
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

kafka_enum! {
    /// Kafka's `PatternType`: `Literal` names one resource (or all, by `*`),
    /// `Prefixed` every resource starting with the name. `Any` and `Match`
    /// exist in filters only: `Any` matches any pattern type with exactly
    /// the filter's name, `Match` every ACL that would apply to a resource
    /// of that name (literal, `*` and prefixes of it).
    AclPatternType {
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// Kafka's `AclOperation`.
    AclOperation {
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
}

kafka_enum! {
    /// Kafka's `AclPermissionType`.
    AclPermissionType {
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

/// The name of the one cluster resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

impl AclResourceType {
    /// The operations an ACL on this resource type may name, as Kafka's
    /// `kafka-acls.sh` checks them before adding (`ALL` is valid for each).
    pub fn valid_operations(self) -> &'static [AclOperation] {
        use AclOperation as Op;
        match self {
            AclResourceType::Topic => &[
                Op::Read,
                Op::Write,
                Op::Create,
                Op::Describe,
                Op::Delete,
                Op::Alter,
                Op::DescribeConfigs,
                Op::AlterConfigs,
                Op::All,
            ],
            AclResourceType::Group => &[Op::Read, Op::Describe, Op::Delete, Op::All],
            AclResourceType::Cluster => &[
                Op::Create,
                Op::ClusterAction,
                Op::DescribeConfigs,
                Op::AlterConfigs,
                Op::IdempotentWrite,
                Op::Alter,
                Op::Describe,
                Op::All,
            ],
            AclResourceType::TransactionalId => {
                &[Op::Describe, Op::Write, Op::TwoPhaseCommit, Op::All]
            }
            AclResourceType::DelegationToken => &[Op::Describe, Op::All],
            AclResourceType::User => &[Op::CreateTokens, Op::DescribeTokens, Op::All],
            AclResourceType::Any | AclResourceType::Unknown => &[],
        }
    }
}

/// One ACL: a principal is allowed or denied an operation from a host on
/// the resources a pattern names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: AclResourceType,
    /// A name, `*` for every resource of the type (literal patterns), or a
    /// prefix; `kafka-cluster` for the cluster.
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: AclPatternType,
    /// `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// A client address, or `*` for every host.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBinding {
    /// Why this binding cannot be created (a filter value, an unknown
    /// code, an empty name), or `None`.
    pub fn invalid_reason(&self) -> Option<String> {
        if matches!(
            self.resource_type,
            AclResourceType::Any | AclResourceType::Unknown
        ) {
            return Some(format!(
                "resource type {} is not concrete",
                self.resource_type
            ));
        }
        if !matches!(
            self.pattern_type,
            AclPatternType::Literal | AclPatternType::Prefixed
        ) {
            return Some(format!(
                "pattern type {} is not LITERAL or PREFIXED",
                self.pattern_type
            ));
        }
        if matches!(self.operation, AclOperation::Any | AclOperation::Unknown) {
            return Some(format!("operation {} is not concrete", self.operation));
        }
        if matches!(
            self.permission,
            AclPermissionType::Any | AclPermissionType::Unknown
        ) {
            return Some(format!(
                "permission {} is not ALLOW or DENY",
                self.permission
            ));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if self.principal.is_empty() {
            return Some("the principal is empty".into());
        }
        if self.host.is_empty() {
            return Some("the host is empty".into());
        }
        None
    }

    /// The filter that matches exactly this binding.
    pub fn to_filter(&self) -> AclBindingFilter {
        AclBindingFilter {
            resource_type: self.resource_type,
            resource_name: Some(self.resource_name.clone()),
            pattern_type: self.pattern_type,
            principal: Some(self.principal.clone()),
            host: Some(self.host.clone()),
            operation: self.operation,
            permission: self.permission,
        }
    }
}

/// Selects ACLs: `None` and the `Any` variants match everything;
/// [`AclPatternType::Match`] selects every ACL that applies to the named
/// resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBindingFilter {
    pub resource_type: AclResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: AclPatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// Matches every ACL.
    pub const ANY: AclBindingFilter = AclBindingFilter {
        resource_type: AclResourceType::Any,
        resource_name: None,
        pattern_type: AclPatternType::Any,
        principal: None,
        host: None,
        operation: AclOperation::Any,
        permission: AclPermissionType::Any,
    };
}

/// The outcome of creating one binding.
#[derive(Debug)]
pub struct AclCreateResult {
    pub binding: AclBinding,
    pub error: Option<ClientError>,
}

/// One ACL a DeleteAcls filter matched, and whether deleting it failed.
#[derive(Debug)]
pub struct DeletedAcl {
    pub binding: AclBinding,
    pub error: Option<ClientError>,
}

/// The outcome of one DeleteAcls filter.
#[derive(Debug)]
pub struct AclDeleteResult {
    pub filter: AclBindingFilter,
    /// The filter as a whole was refused (nothing was deleted for it).
    pub error: Option<ClientError>,
    pub deleted: Vec<DeletedAcl>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt_str_bytes(s: Option<&String>) -> Option<StrBytes> {
    s.map(|s| str_bytes(s))
}

fn error_of(code: i16, message: Option<&StrBytes>) -> Option<ClientError> {
    ClientError::check(code, message).err()
}

impl Admin {
    /// Creates `bindings`; one result per binding, in order. Bindings that
    /// cannot be created (filter values such as `Any`) are refused here,
    /// before anything is sent.
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<Vec<AclCreateResult>> {
        if let Some((b, reason)) = bindings
            .iter()
            .find_map(|b| b.invalid_reason().map(|r| (b, r)))
        {
            return Err(ClientError::Config(format!("ACL {b:?}: {reason}")));
        }
        let request = CreateAclsRequest::default().with_creations(
            bindings
                .iter()
                .map(|b| {
                    AclCreation::default()
                        .with_resource_type(b.resource_type.code())
                        .with_resource_name(str_bytes(&b.resource_name))
                        .with_resource_pattern_type(b.pattern_type.code())
                        .with_principal(str_bytes(&b.principal))
                        .with_host(str_bytes(&b.host))
                        .with_operation(b.operation.code())
                        .with_permission_type(b.permission.code())
                })
                .collect(),
        );
        let connection = self.cluster().any_connection().await?;
        let response = connection.send(request).await?;
        if response.results.len() != bindings.len() {
            return Err(ClientError::Protocol(format!(
                "CreateAcls answered {} results for {} ACLs",
                response.results.len(),
                bindings.len()
            )));
        }
        Ok(bindings
            .iter()
            .zip(response.results)
            .map(|(b, r)| AclCreateResult {
                binding: b.clone(),
                error: error_of(r.error_code, r.error_message.as_ref()),
            })
            .collect())
    }

    /// The ACLs `filter` selects, sorted. A refusal (no authorizer:
    /// SECURITY_DISABLED; no DESCRIBE on the cluster) is the error.
    pub async fn describe_acls(&self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(opt_str_bytes(filter.resource_name.as_ref()))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(opt_str_bytes(filter.principal.as_ref()))
            .with_host_filter(opt_str_bytes(filter.host.as_ref()))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let connection = self.cluster().any_connection().await?;
        let response = connection.send(request).await?;
        ClientError::check(response.error_code, response.error_message.as_ref())?;
        let mut out = Vec::new();
        for resource in response.resources {
            for acl in resource.acls {
                out.push(AclBinding {
                    resource_type: AclResourceType::from_code(resource.resource_type),
                    resource_name: resource.resource_name.to_string(),
                    pattern_type: AclPatternType::from_code(resource.pattern_type),
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: AclOperation::from_code(acl.operation),
                    permission: AclPermissionType::from_code(acl.permission_type),
                });
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Deletes the ACLs each filter selects; one result per filter, in
    /// order, each with the ACLs it deleted.
    pub async fn delete_acls(&self, filters: &[AclBindingFilter]) -> Result<Vec<AclDeleteResult>> {
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type.code())
                        .with_resource_name_filter(opt_str_bytes(f.resource_name.as_ref()))
                        .with_pattern_type_filter(f.pattern_type.code())
                        .with_principal_filter(opt_str_bytes(f.principal.as_ref()))
                        .with_host_filter(opt_str_bytes(f.host.as_ref()))
                        .with_operation(f.operation.code())
                        .with_permission_type(f.permission.code())
                })
                .collect(),
        );
        let connection = self.cluster().any_connection().await?;
        let response = connection.send(request).await?;
        if response.filter_results.len() != filters.len() {
            return Err(ClientError::Protocol(format!(
                "DeleteAcls answered {} results for {} filters",
                response.filter_results.len(),
                filters.len()
            )));
        }
        Ok(filters
            .iter()
            .zip(response.filter_results)
            .map(|(f, r)| AclDeleteResult {
                filter: f.clone(),
                error: error_of(r.error_code, r.error_message.as_ref()),
                deleted: r
                    .matching_acls
                    .into_iter()
                    .map(|m| DeletedAcl {
                        error: error_of(m.error_code, m.error_message.as_ref()),
                        binding: AclBinding {
                            resource_type: AclResourceType::from_code(m.resource_type),
                            resource_name: m.resource_name.to_string(),
                            pattern_type: AclPatternType::from_code(m.pattern_type),
                            principal: m.principal.to_string(),
                            host: m.host.to_string(),
                            operation: AclOperation::from_code(m.operation),
                            permission: AclPermissionType::from_code(m.permission_type),
                        },
                    })
                    .collect(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_kafka_tools_write_them() {
        let cases = [
            ("Write", Some(AclOperation::Write)),
            ("IdempotentWrite", Some(AclOperation::IdempotentWrite)),
            ("IDEMPOTENT_WRITE", Some(AclOperation::IdempotentWrite)),
            ("describe-configs", Some(AclOperation::DescribeConfigs)),
            ("ClusterAction", Some(AclOperation::ClusterAction)),
            ("all", Some(AclOperation::All)),
            ("Unknown", None),
            ("Wrte", None),
        ];
        for (name, want) in cases {
            assert_eq!(AclOperation::from_name(name), want, "{name}");
        }
        assert_eq!(
            AclPatternType::from_name("prefixed"),
            Some(AclPatternType::Prefixed)
        );
        assert_eq!(
            AclResourceType::from_name("transactional-id"),
            Some(AclResourceType::TransactionalId)
        );
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_stay_unknown() {
        for op in AclOperation::ALL_KNOWN {
            assert_eq!(AclOperation::from_code(op.code()), *op);
        }
        for p in AclPermissionType::ALL_KNOWN {
            assert_eq!(AclPermissionType::from_code(p.code()), *p);
        }
        assert_eq!(AclOperation::from_code(99), AclOperation::Unknown);
        assert_eq!(AclResourceType::from_code(-1), AclResourceType::Unknown);
        assert_eq!(AclPatternType::Literal.code(), 3);
        assert_eq!(AclResourceType::Cluster.code(), 4);
    }

    #[test]
    fn only_concrete_bindings_are_valid() {
        let good = AclBinding {
            resource_type: AclResourceType::Topic,
            resource_name: "T".into(),
            pattern_type: AclPatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Write,
            permission: AclPermissionType::Allow,
        };
        assert_eq!(good.invalid_reason(), None);
        let cases = [
            AclBinding {
                pattern_type: AclPatternType::Match,
                ..good.clone()
            },
            AclBinding {
                operation: AclOperation::Any,
                ..good.clone()
            },
            AclBinding {
                permission: AclPermissionType::Any,
                ..good.clone()
            },
            AclBinding {
                resource_type: AclResourceType::Any,
                ..good.clone()
            },
            AclBinding {
                principal: String::new(),
                ..good.clone()
            },
        ];
        for b in cases {
            assert!(b.invalid_reason().is_some(), "{b:?}");
        }
        let f = good.to_filter();
        assert_eq!(f.resource_name.as_deref(), Some("T"));
        assert_eq!(f.operation, AclOperation::Write);
    }
}
