//! ACLs with the semantics of Kafka's StandardAuthorizer.
//!
//! An ACL allows or denies one principal (or `User:*`), from one host (or
//! `*`), one operation on resources of one type named literally, by `*`, or
//! by prefix. A request is allowed when no DENY matches and some ALLOW
//! does; ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, ALLOW of
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS. A resource that no ACL names at
//! all follows `allow.everyone.if.no.acl.found` (default: denied).
//! `super.users` are allowed everything. Without `authorizer.class.name`
//! there is no authorizer: everything is allowed and the ACL APIs answer
//! SECURITY_DISABLED, as Kafka does.
//!
//! Everything here is pure: the ACLs come from the metadata image.

use kraftwerk_metadata::AclBinding;
use kraftwerk_types::BrokerConfig;

/// Kafka's resource types (`ResourceType`).
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's pattern types (`PatternType`).
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's operations (`AclOperation`).
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Kafka's permission types (`AclPermissionType`).
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Names every resource of a type in a LITERAL ACL.
pub const WILDCARD: &str = "*";

/// The authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
}

impl Authorizer {
    /// `authorizer.class.name` (Kafka's StandardAuthorizer, or its older
    /// AclAuthorizer name), `super.users` (`;`-separated principals),
    /// `allow.everyone.if.no.acl.found`.
    pub fn from_config(config: &BrokerConfig) -> Result<Authorizer, String> {
        let class = config
            .value_of("authorizer.class.name")
            .unwrap_or_default()
            .trim()
            .to_string();
        let enabled = match class.as_str() {
            "" => false,
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            | "kafka.security.authorizer.AclAuthorizer" => true,
            other => {
                return Err(format!(
                    "authorizer.class.name={other}: Kraftwerk's authorizer is Kafka's \
                     StandardAuthorizer (org.apache.kafka.metadata.authorizer.StandardAuthorizer)"
                ))
            }
        };
        let super_users = config
            .value_of("super.users")
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let allow_if_no_acl = config
            .value_of("allow.everyone.if.no.acl.found")
            .is_some_and(|v| v.trim() == "true");
        Ok(Authorizer {
            enabled,
            super_users,
            allow_if_no_acl,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// May `principal`, connected from `host`, do `operation` on the
    /// resource of `resource_type` called `name`?
    pub fn authorize(
        &self,
        acls: &[AclBinding],
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut any_on_resource = false;
        let mut allowed = false;
        for acl in acls {
            if acl.resource_type != resource_type || !pattern_covers(acl, name) {
                continue;
            }
            any_on_resource = true;
            if !(acl.principal == principal || acl.principal == "User:*") {
                continue;
            }
            if !(acl.host == host || acl.host == WILDCARD) {
                continue;
            }
            match acl.permission_type {
                permission::DENY if acl.operation == operation || acl.operation == op::ALL => {
                    return false;
                }
                permission::ALLOW if grants(acl.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_on_resource && self.allow_if_no_acl)
    }

    /// Whether `principal` may do `operation` on some resource of the type
    /// (Kafka's `authorizeByResourceType`, used for IDEMPOTENT_WRITE by
    /// topic WRITE): an ALLOW on any name, with no DENY covering all names.
    pub fn authorize_any(
        &self,
        acls: &[AclBinding],
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let applies = |acl: &&AclBinding| {
            acl.resource_type == resource_type
                && (acl.principal == principal || acl.principal == "User:*")
                && (acl.host == host || acl.host == WILDCARD)
        };
        let denied_everywhere = acls.iter().filter(applies).any(|acl| {
            acl.permission_type == permission::DENY
                && (acl.operation == operation || acl.operation == op::ALL)
                && acl.pattern_type == pattern::LITERAL
                && acl.resource_name == WILDCARD
        });
        if denied_everywhere {
            return false;
        }
        acls.iter()
            .filter(applies)
            .any(|acl| acl.permission_type == permission::ALLOW && grants(acl.operation, operation))
            || self.allow_if_no_acl
    }
}

/// Whether an ACL's resource pattern covers the resource called `name`.
fn pattern_covers(acl: &AclBinding, name: &str) -> bool {
    match acl.pattern_type {
        pattern::LITERAL => acl.resource_name == name || acl.resource_name == WILDCARD,
        pattern::PREFIXED => name.starts_with(&acl.resource_name),
        _ => false,
    }
}

/// Whether an ALLOW of `granted` allows `wanted`.
fn grants(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE
            && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

/// A DescribeAcls / DeleteAcls filter.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Kafka refuses filters with UNKNOWN (0) values.
    pub fn validate(&self) -> Result<(), String> {
        if !(resource::ANY..=resource::USER).contains(&self.resource_type) {
            return Err(format!("unknown resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Err(format!("unknown pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Err(format!("unknown operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission_type) {
            return Err(format!("unknown permission type {}", self.permission_type));
        }
        Ok(())
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        if self.resource_type != resource::ANY && self.resource_type != acl.resource_type {
            return false;
        }
        let name_ok = match (&self.resource_name, self.pattern_type) {
            (None, pattern::ANY | pattern::MATCH) => true,
            (None, p) => p == acl.pattern_type,
            (Some(name), pattern::ANY) => *name == acl.resource_name,
            (Some(name), pattern::MATCH) => match acl.pattern_type {
                pattern::LITERAL => acl.resource_name == *name || acl.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&acl.resource_name),
                _ => false,
            },
            (Some(name), p) => p == acl.pattern_type && *name == acl.resource_name,
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == op::ANY || self.operation == acl.operation)
            && (self.permission_type == permission::ANY
                || self.permission_type == acl.permission_type)
    }
}

/// Kafka's checks on an ACL to create.
pub fn validate_new_acl(acl: &AclBinding) -> Result<(), String> {
    if !(resource::TOPIC..=resource::USER).contains(&acl.resource_type) {
        return Err(format!("Invalid resource type {}", acl.resource_type));
    }
    if !matches!(acl.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
        return Err(format!("Invalid pattern type {}", acl.pattern_type));
    }
    if !(op::ALL..=op::DESCRIBE_TOKENS).contains(&acl.operation) {
        return Err(format!("Invalid operation {}", acl.operation));
    }
    if !matches!(acl.permission_type, permission::DENY | permission::ALLOW) {
        return Err(format!("Invalid permission type {}", acl.permission_type));
    }
    if acl.resource_name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if acl.resource_type == resource::CLUSTER && acl.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    match acl.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                acl.principal
            ))
        }
    }
    if acl.host.is_empty() {
        return Err("Host should not be empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission_type: perm,
        }
    }

    fn on(allow_if_no_acl: bool) -> Authorizer {
        Authorizer {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_no_acl,
        }
    }

    use permission::{ALLOW, DENY};
    use resource::{GROUP, TOPIC};

    #[test]
    fn standard_authorizer_table() {
        let acls = vec![
            acl(
                TOPIC,
                "orders",
                pattern::LITERAL,
                "User:alice",
                op::WRITE,
                ALLOW,
            ),
            acl(
                TOPIC,
                "logs-",
                pattern::PREFIXED,
                "User:alice",
                op::READ,
                ALLOW,
            ),
            acl(
                TOPIC,
                "logs-secret",
                pattern::LITERAL,
                "User:alice",
                op::READ,
                DENY,
            ),
            acl(TOPIC, "*", pattern::LITERAL, "User:carol", op::ALL, ALLOW),
            acl(
                TOPIC,
                "orders",
                pattern::LITERAL,
                "User:carol",
                op::DELETE,
                DENY,
            ),
            acl(GROUP, "g", pattern::LITERAL, "User:*", op::READ, ALLOW),
            acl(
                TOPIC,
                "cfg",
                pattern::LITERAL,
                "User:alice",
                op::ALTER_CONFIGS,
                ALLOW,
            ),
        ];
        let a = on(false);
        // (principal, operation, type, name, allowed, why)
        let table: &[(&str, i8, i8, &str, bool, &str)] = &[
            (
                "User:alice",
                op::WRITE,
                TOPIC,
                "orders",
                true,
                "literal allow",
            ),
            (
                "User:alice",
                op::READ,
                TOPIC,
                "orders",
                false,
                "no allow for READ",
            ),
            (
                "User:alice",
                op::DESCRIBE,
                TOPIC,
                "orders",
                true,
                "WRITE implies DESCRIBE",
            ),
            (
                "User:alice",
                op::READ,
                TOPIC,
                "logs-app",
                true,
                "prefixed allow",
            ),
            (
                "User:alice",
                op::READ,
                TOPIC,
                "logs-secret",
                false,
                "deny beats allow",
            ),
            (
                "User:alice",
                op::DESCRIBE,
                TOPIC,
                "logs-secret",
                true,
                "READ denied, DESCRIBE implied by the prefixed READ",
            ),
            (
                "User:alice",
                op::READ,
                TOPIC,
                "log",
                false,
                "prefix longer than the name",
            ),
            (
                "User:bob",
                op::WRITE,
                TOPIC,
                "orders",
                false,
                "other principal",
            ),
            (
                "User:carol",
                op::WRITE,
                TOPIC,
                "anything",
                true,
                "wildcard ALL",
            ),
            (
                "User:carol",
                op::DELETE,
                TOPIC,
                "orders",
                false,
                "literal deny beats wildcard allow",
            ),
            (
                "User:bob",
                op::READ,
                GROUP,
                "g",
                true,
                "User:* matches everyone",
            ),
            (
                "User:bob",
                op::READ,
                GROUP,
                "h",
                false,
                "no ACL names h: denied by default",
            ),
            (
                "User:admin",
                op::DELETE,
                TOPIC,
                "orders",
                true,
                "super user",
            ),
            (
                "User:alice",
                op::DESCRIBE_CONFIGS,
                TOPIC,
                "cfg",
                true,
                "ALTER_CONFIGS implies DESCRIBE_CONFIGS",
            ),
            (
                "User:alice",
                op::ALTER,
                TOPIC,
                "cfg",
                false,
                "ALTER_CONFIGS is not ALTER",
            ),
            (
                "User:alice",
                op::CREATE,
                resource::CLUSTER,
                CLUSTER_NAME,
                false,
                "nothing on the cluster",
            ),
        ];
        for &(principal, operation, rt, name, expected, why) in table {
            assert_eq!(
                a.authorize(&acls, principal, "127.0.0.1", operation, rt, name),
                expected,
                "{why}: {principal} {operation} {rt} {name}"
            );
        }
        // allow.everyone.if.no.acl.found opens resources no ACL names, only those.
        let open = on(true);
        assert!(open.authorize(&acls, "User:bob", "h", op::READ, GROUP, "h"));
        assert!(!open.authorize(&acls, "User:bob", "h", op::WRITE, TOPIC, "orders"));
        // Off: everything goes.
        assert!(Authorizer::default().authorize(
            &acls,
            "User:bob",
            "h",
            op::DELETE,
            TOPIC,
            "orders"
        ));
    }

    #[test]
    fn hosts_must_match() {
        let mut only_local = acl(TOPIC, "t", pattern::LITERAL, "User:alice", op::READ, ALLOW);
        only_local.host = "127.0.0.1".into();
        let acls = vec![only_local];
        assert!(on(false).authorize(&acls, "User:alice", "127.0.0.1", op::READ, TOPIC, "t"));
        assert!(!on(false).authorize(&acls, "User:alice", "10.0.0.9", op::READ, TOPIC, "t"));
    }

    #[test]
    fn idempotent_write_by_any_topic_write() {
        let acls = vec![acl(
            TOPIC,
            "orders",
            pattern::LITERAL,
            "User:alice",
            op::WRITE,
            ALLOW,
        )];
        let a = on(false);
        assert!(a.authorize_any(&acls, "User:alice", "h", op::WRITE, TOPIC));
        assert!(!a.authorize_any(&acls, "User:bob", "h", op::WRITE, TOPIC));
    }

    #[test]
    fn filters_match_as_kafka_filters() {
        let lit = acl(
            TOPIC,
            "orders",
            pattern::LITERAL,
            "User:alice",
            op::WRITE,
            ALLOW,
        );
        let pre = acl(
            TOPIC,
            "ord",
            pattern::PREFIXED,
            "User:alice",
            op::READ,
            ALLOW,
        );
        let wild = acl(TOPIC, "*", pattern::LITERAL, "User:bob", op::READ, ALLOW);
        let f = |name: Option<&str>, pt: i8| AclFilter {
            resource_type: resource::ANY,
            resource_name: name.map(str::to_string),
            pattern_type: pt,
            principal: None,
            host: None,
            operation: op::ANY,
            permission_type: permission::ANY,
        };
        let matched = |filter: AclFilter| -> Vec<bool> {
            [&lit, &pre, &wild]
                .iter()
                .map(|a| filter.matches(a))
                .collect()
        };
        assert_eq!(matched(f(None, pattern::ANY)), [true, true, true]);
        assert_eq!(
            matched(f(Some("orders"), pattern::MATCH)),
            [true, true, true]
        );
        assert_eq!(
            matched(f(Some("orders"), pattern::LITERAL)),
            [true, false, false]
        );
        assert_eq!(
            matched(f(Some("ord"), pattern::PREFIXED)),
            [false, true, false]
        );
        assert_eq!(
            matched(f(Some("orders"), pattern::ANY)),
            [true, false, false]
        );
        assert_eq!(matched(f(None, pattern::PREFIXED)), [false, true, false]);
        let mut by_principal = f(None, pattern::ANY);
        by_principal.principal = Some("User:bob".into());
        assert_eq!(matched(by_principal), [false, false, true]);
    }

    #[test]
    fn new_acls_are_checked() {
        let good = acl(TOPIC, "t", pattern::LITERAL, "User:alice", op::READ, ALLOW);
        assert!(validate_new_acl(&good).is_ok());
        for bad in [
            AclBinding {
                pattern_type: pattern::MATCH,
                ..good.clone()
            },
            AclBinding {
                resource_type: resource::ANY,
                ..good.clone()
            },
            AclBinding {
                operation: op::ANY,
                ..good.clone()
            },
            AclBinding {
                permission_type: permission::ANY,
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
            AclBinding {
                resource_type: resource::CLUSTER,
                resource_name: "c".into(),
                ..good.clone()
            },
        ] {
            assert!(validate_new_acl(&bad).is_err(), "{bad:?}");
        }
    }
}
