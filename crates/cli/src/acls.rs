//! `kraftwerk acls`: add, list and remove ACLs with the flags of Kafka's
//! `kafka-acls.sh` (`--allow-principal`, `--operation`, `--topic`,
//! `--resource-pattern-type`, `--producer`, `--consumer`, ...). The flags
//! are turned into bindings or filters before anything is sent, so a bad
//! flag is reported without a broker.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use kraftwerk_client::acls::{
    AclBinding, AclBindingFilter, AclOperation, AclPatternType, AclPermissionType, AclResourceType,
    CLUSTER_RESOURCE_NAME,
};
use kraftwerk_client::Admin;
use serde_json::json;

use crate::{Connect, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AclsAction {
    /// Add ACLs (kafka-acls.sh --add).
    Add,
    /// List ACLs, all of them or those of the given resources and principals
    /// (kafka-acls.sh --list).
    List,
    /// Remove the ACLs matching the flags, without asking for confirmation
    /// (kafka-acls.sh --remove --force).
    Remove,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kraftwerk acls add --allow-principal User:alice --operation Write --topic orders
  kraftwerk acls add --allow-principal User:alice --consumer --topic orders --group billing
  kraftwerk acls add --allow-principal User:app --producer --topic logs- --resource-pattern-type prefixed
  kraftwerk acls list --topic orders --resource-pattern-type match
  kraftwerk acls list --principal User:alice --output json
  kraftwerk acls remove --allow-principal User:alice --operation Write --topic orders

remove never prompts (as kafka-acls.sh --remove --force). It removes the ACLs
of the given resources that match every flag given: flags left out
(principal, host, operation) match any value, so `remove --topic orders`
removes every ACL of the literal topic orders.")]
pub struct AclsArgs {
    /// add | list | remove
    #[arg(value_enum)]
    action: AclsAction,
    #[command(flatten)]
    connect: Connect,
    /// add, remove: a principal (`User:alice`, `User:*` for everyone) the
    /// ACLs allow. Repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    allow_principal: Vec<String>,
    /// add, remove: a principal the ACLs deny (DENY wins over ALLOW). Repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    deny_principal: Vec<String>,
    /// add, remove: the host allowed principals connect from. add: default
    /// `*` (every host); remove: default any host. Repeatable.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// add, remove: the host denied principals connect from. add: default
    /// `*`; remove: default any host. Repeatable.
    #[arg(long, value_name = "HOST")]
    deny_host: Vec<String>,
    /// The operation: Read, Write, Create, Delete, Alter, Describe,
    /// ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite,
    /// CreateTokens, DescribeTokens, TwoPhaseCommit, All. add: default All;
    /// list, remove: default any operation. Repeatable.
    #[arg(long = "operation", value_name = "OPERATION", value_parser = parse_operation)]
    operations: Vec<AclOperation>,
    /// A topic (`*` for every topic, or a prefix with
    /// `--resource-pattern-type prefixed`). Repeatable.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// A consumer group (`*` for every group). Repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The cluster (`kafka-cluster`).
    #[arg(long)]
    cluster: bool,
    /// A transactional id (`*` for every one). Repeatable.
    #[arg(long = "transactional-id", value_name = "TRANSACTIONAL_ID")]
    transactional_ids: Vec<String>,
    /// literal or prefixed (add); list and remove also take `match` (every
    /// ACL that applies to the named resource: literal, `*` and prefixes)
    /// and `any` (any pattern type with exactly this name).
    #[arg(long, value_name = "TYPE", default_value = "literal", value_parser = parse_pattern_type)]
    resource_pattern_type: AclPatternType,
    /// list: only the ACLs of this principal. Repeatable.
    #[arg(long = "principal", value_name = "PRINCIPAL")]
    principals: Vec<String>,
    /// add, remove: the producer's ACLs: WRITE, DESCRIBE and CREATE on each
    /// --topic, WRITE and DESCRIBE on each --transactional-id.
    #[arg(long)]
    producer: bool,
    /// With --producer: also IDEMPOTENT_WRITE on the cluster.
    #[arg(long)]
    idempotent: bool,
    /// add, remove: the consumer's ACLs: READ and DESCRIBE on each --topic,
    /// READ on each --group.
    #[arg(long)]
    consumer: bool,
    /// Accepted for kafka-acls.sh compatibility; remove never prompts.
    #[arg(long)]
    force: bool,
}

fn camel_case(kafka_name: &str) -> String {
    kafka_name
        .split('_')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn parse_operation(s: &str) -> Result<AclOperation, String> {
    match AclOperation::from_name(s) {
        Some(op) if op != AclOperation::Any => Ok(op),
        _ => {
            let names: Vec<String> = AclOperation::ALL_KNOWN
                .iter()
                .filter(|op| **op != AclOperation::Any)
                .map(|op| camel_case(op.name()))
                .collect();
            Err(format!(
                "unknown operation; valid operations are {}",
                names.join(", ")
            ))
        }
    }
}

fn parse_pattern_type(s: &str) -> Result<AclPatternType, String> {
    AclPatternType::from_name(s)
        .ok_or_else(|| "unknown pattern type; one of literal, prefixed, match, any".to_string())
}

/// The ACL entries (principal, host, permission) the principal flags name.
fn entries(
    args: &AclsArgs,
    default_host: Option<&str>,
) -> anyhow::Result<Vec<(String, Option<String>, AclPermissionType)>> {
    let mut out = Vec::new();
    let sides = [
        (
            &args.allow_principal,
            &args.allow_host,
            AclPermissionType::Allow,
            "--allow",
        ),
        (
            &args.deny_principal,
            &args.deny_host,
            AclPermissionType::Deny,
            "--deny",
        ),
    ];
    for (principals, hosts, permission, flag) in sides {
        if principals.is_empty() && !hosts.is_empty() {
            bail!("{flag}-host needs {flag}-principal");
        }
        for p in principals {
            check_principal(p)?;
            if hosts.is_empty() {
                out.push((p.clone(), default_host.map(str::to_string), permission));
            }
            for h in hosts {
                out.push((p.clone(), Some(h.clone()), permission));
            }
        }
    }
    Ok(out)
}

fn check_principal(p: &str) -> anyhow::Result<()> {
    match p.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => bail!("principal '{p}' is not in principalType:name format (e.g. User:alice)"),
    }
}

/// The resources the resource flags name, as (type, name).
fn resources(args: &AclsArgs) -> Vec<(AclResourceType, String)> {
    let mut out = Vec::new();
    out.extend(
        args.topics
            .iter()
            .map(|t| (AclResourceType::Topic, t.clone())),
    );
    out.extend(
        args.groups
            .iter()
            .map(|g| (AclResourceType::Group, g.clone())),
    );
    if args.cluster {
        out.push((AclResourceType::Cluster, CLUSTER_RESOURCE_NAME.to_string()));
    }
    out.extend(
        args.transactional_ids
            .iter()
            .map(|t| (AclResourceType::TransactionalId, t.clone())),
    );
    out
}

const NO_RESOURCE: &str = "give a resource: --topic, --group, --cluster or --transactional-id";

/// A resource and the operations of its ACLs (`None`: any operation).
type ResourceOperations = (AclResourceType, String, Vec<Option<AclOperation>>);

/// (resource type, name, operations) for add and remove: the --producer
/// and --consumer roles, or the resource flags with --operation.
fn resource_operations(
    args: &AclsArgs,
    default_operation: Option<AclOperation>,
) -> anyhow::Result<Vec<ResourceOperations>> {
    use AclOperation as Op;
    if args.idempotent && !args.producer {
        bail!("--idempotent is used with --producer");
    }
    if !(args.producer || args.consumer) {
        let named = resources(args);
        if named.is_empty() {
            bail!(NO_RESOURCE);
        }
        let ops: Vec<Option<Op>> = if args.operations.is_empty() {
            vec![default_operation]
        } else {
            args.operations.iter().copied().map(Some).collect()
        };
        for (kind, _) in &named {
            let valid = kind.valid_operations();
            for op in ops.iter().flatten() {
                if !valid.contains(op) {
                    let names: Vec<String> = valid.iter().map(|o| camel_case(o.name())).collect();
                    bail!(
                        "a {kind} ACL cannot name operation {}: valid are {}",
                        camel_case(op.name()),
                        names.join(", ")
                    );
                }
            }
        }
        return Ok(named
            .into_iter()
            .map(|(kind, name)| (kind, name, ops.clone()))
            .collect());
    }
    if !args.operations.is_empty() {
        bail!("--producer and --consumer choose the operations; leave out --operation");
    }
    if !args.deny_principal.is_empty() || !args.deny_host.is_empty() {
        bail!("--producer and --consumer add ALLOW ACLs; use --allow-principal");
    }
    if args.producer && args.topics.is_empty() {
        bail!("with --producer give a --topic");
    }
    if args.consumer && (args.topics.is_empty() || args.groups.is_empty()) {
        bail!("with --consumer give a --topic and a --group");
    }
    if args.consumer && !args.producer && (args.cluster || !args.transactional_ids.is_empty()) {
        bail!("--consumer takes no --cluster or --transactional-id");
    }
    let mut out: Vec<ResourceOperations> = Vec::new();
    let mut push = |kind: AclResourceType, name: &str, ops: &[Op]| {
        let ops = ops.iter().copied().map(Some);
        match out.iter_mut().find(|(k, n, _)| *k == kind && n == name) {
            Some((_, _, existing)) => {
                for op in ops {
                    if !existing.contains(&op) {
                        existing.push(op);
                    }
                }
            }
            None => out.push((kind, name.to_string(), ops.collect())),
        }
    };
    if args.producer {
        for t in &args.topics {
            push(
                AclResourceType::Topic,
                t,
                &[Op::Write, Op::Describe, Op::Create],
            );
        }
        for t in &args.transactional_ids {
            push(
                AclResourceType::TransactionalId,
                t,
                &[Op::Write, Op::Describe],
            );
        }
        if args.idempotent {
            push(
                AclResourceType::Cluster,
                CLUSTER_RESOURCE_NAME,
                &[Op::IdempotentWrite],
            );
        }
    }
    if args.consumer {
        for t in &args.topics {
            push(AclResourceType::Topic, t, &[Op::Read, Op::Describe]);
        }
        for g in &args.groups {
            push(AclResourceType::Group, g, &[Op::Read]);
        }
    }
    Ok(out)
}

/// The bindings `kraftwerk acls add` creates.
fn add_bindings(args: &AclsArgs) -> anyhow::Result<Vec<AclBinding>> {
    if !args.principals.is_empty() {
        bail!("--principal filters `list`; add with --allow-principal or --deny-principal");
    }
    let pattern_type = args.resource_pattern_type;
    if !matches!(
        pattern_type,
        AclPatternType::Literal | AclPatternType::Prefixed
    ) {
        bail!("add takes --resource-pattern-type literal or prefixed, not {pattern_type}");
    }
    let entries = entries(args, Some("*"))?;
    if entries.is_empty() {
        bail!("give at least one --allow-principal or --deny-principal");
    }
    let mut out = Vec::new();
    for (kind, name, ops) in resource_operations(args, Some(AclOperation::All))? {
        for (principal, host, permission) in &entries {
            for op in ops.iter().flatten() {
                out.push(AclBinding {
                    resource_type: kind,
                    resource_name: name.clone(),
                    // The cluster is one resource: its ACLs are literal.
                    pattern_type: if kind == AclResourceType::Cluster {
                        AclPatternType::Literal
                    } else {
                        pattern_type
                    },
                    principal: principal.clone(),
                    host: host.clone().unwrap_or_else(|| "*".into()),
                    operation: *op,
                    permission: *permission,
                });
            }
        }
    }
    Ok(out)
}

/// The filters `kraftwerk acls remove` sends.
fn remove_filters(args: &AclsArgs) -> anyhow::Result<Vec<AclBindingFilter>> {
    if !args.principals.is_empty() {
        bail!("--principal filters `list`; remove with --allow-principal or --deny-principal");
    }
    let mut entries: Vec<(Option<String>, Option<String>, AclPermissionType)> =
        entries(args, None)?
            .into_iter()
            .map(|(p, h, perm)| (Some(p), h, perm))
            .collect();
    if entries.is_empty() {
        entries.push((None, None, AclPermissionType::Any));
    }
    let mut out = Vec::new();
    for (kind, name, ops) in resource_operations(args, None)? {
        for (principal, host, permission) in &entries {
            for op in &ops {
                out.push(AclBindingFilter {
                    resource_type: kind,
                    resource_name: Some(name.clone()),
                    pattern_type: args.resource_pattern_type,
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: op.unwrap_or(AclOperation::Any),
                    permission: *permission,
                });
            }
        }
    }
    Ok(out)
}

/// The filters `kraftwerk acls list` describes, one DescribeAcls each.
fn list_filters(args: &AclsArgs) -> anyhow::Result<Vec<AclBindingFilter>> {
    if !args.allow_principal.is_empty()
        || !args.deny_principal.is_empty()
        || !args.allow_host.is_empty()
        || !args.deny_host.is_empty()
    {
        bail!("list filters by --principal, not --allow-/--deny-principal or host");
    }
    if args.producer || args.consumer || args.idempotent {
        bail!("--producer, --consumer and --idempotent are for add and remove");
    }
    for p in &args.principals {
        check_principal(p)?;
    }
    // No resource: every ACL, whatever its pattern type (as kafka-acls.sh).
    let named: Vec<(AclResourceType, Option<String>, AclPatternType)> = {
        let named = resources(args);
        if named.is_empty() {
            vec![(AclResourceType::Any, None, AclPatternType::Any)]
        } else {
            named
                .into_iter()
                .map(|(k, n)| (k, Some(n), args.resource_pattern_type))
                .collect()
        }
    };
    let principals: Vec<Option<String>> = if args.principals.is_empty() {
        vec![None]
    } else {
        args.principals.iter().cloned().map(Some).collect()
    };
    let operations: Vec<AclOperation> = if args.operations.is_empty() {
        vec![AclOperation::Any]
    } else {
        args.operations.clone()
    };
    let mut out = Vec::new();
    for (kind, name, pattern_type) in &named {
        for principal in &principals {
            for op in &operations {
                out.push(AclBindingFilter {
                    resource_type: *kind,
                    resource_name: name.clone(),
                    pattern_type: *pattern_type,
                    principal: principal.clone(),
                    host: None,
                    operation: *op,
                    permission: AclPermissionType::Any,
                });
            }
        }
    }
    Ok(out)
}

fn pattern_text(b: &AclBinding) -> String {
    format!(
        "ResourcePattern(resourceType={}, name={}, patternType={})",
        b.resource_type, b.resource_name, b.pattern_type
    )
}

fn entry_text(b: &AclBinding) -> String {
    format!(
        "(principal={}, host={}, operation={}, permissionType={})",
        b.principal, b.host, b.operation, b.permission
    )
}

/// A filter as Kafka prints `AclBindingFilter` (`null` where anything matches).
fn filter_text(f: &AclBindingFilter) -> String {
    let or_null = |s: &Option<String>| s.clone().unwrap_or_else(|| "null".into());
    format!(
        "ResourcePatternFilter(resourceType={}, name={}, patternType={}) \
         (principal={}, host={}, operation={}, permissionType={})",
        f.resource_type,
        or_null(&f.resource_name),
        f.pattern_type,
        or_null(&f.principal),
        or_null(&f.host),
        f.operation,
        f.permission
    )
}

fn binding_json(b: &AclBinding) -> serde_json::Value {
    json!({
        "resource_type": b.resource_type.name(),
        "resource_name": b.resource_name,
        "pattern_type": b.pattern_type.name(),
        "principal": b.principal,
        "host": b.host,
        "operation": b.operation.name(),
        "permission_type": b.permission.name(),
    })
}

fn binding_with_error_json(b: &AclBinding, error: Option<String>) -> serde_json::Value {
    let mut v = binding_json(b);
    if let Some(map) = v.as_object_mut() {
        map.insert("error".into(), json!(error));
    }
    v
}

/// Prints bindings grouped by resource pattern, as kafka-acls.sh does.
fn print_grouped<'a>(heading: &str, bindings: impl IntoIterator<Item = &'a AclBinding>) {
    let mut by_pattern: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in bindings {
        by_pattern
            .entry(pattern_text(b))
            .or_default()
            .push(entry_text(b));
    }
    for (pattern, entries) in by_pattern {
        println!("{heading} for resource `{pattern}`:");
        for e in entries {
            println!(" \t{e}");
        }
        println!();
    }
}

pub async fn run(args: AclsArgs) -> anyhow::Result<()> {
    let json = args.connect.output == Output::Json;
    match args.action {
        AclsAction::Add => {
            let bindings = add_bindings(&args)?;
            let admin = connect(&args).await?;
            let results = admin.create_acls(&bindings).await.context("adding ACLs")?;
            let failed: Vec<_> = results.iter().filter(|r| r.error.is_some()).collect();
            if json {
                let rows: Vec<_> = results
                    .iter()
                    .map(|r| {
                        binding_with_error_json(&r.binding, r.error.as_ref().map(|e| e.to_string()))
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                print_grouped(
                    "Adding ACLs",
                    results
                        .iter()
                        .filter(|r| r.error.is_none())
                        .map(|r| &r.binding),
                );
            }
            for r in &failed {
                if let Some(e) = &r.error {
                    eprintln!(
                        "error: adding {} {}: {e}",
                        pattern_text(&r.binding),
                        entry_text(&r.binding)
                    );
                }
            }
            if !failed.is_empty() {
                bail!(
                    "{} of {} ACLs could not be added",
                    failed.len(),
                    results.len()
                );
            }
        }
        AclsAction::List => {
            let filters = list_filters(&args)?;
            let admin = connect(&args).await?;
            let mut all = Vec::new();
            for f in &filters {
                all.extend(admin.describe_acls(f).await.context("listing ACLs")?);
            }
            all.sort();
            all.dedup();
            if json {
                let rows: Vec<_> = all.iter().map(binding_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                print_grouped("Current ACLs", &all);
            }
        }
        AclsAction::Remove => {
            let filters = remove_filters(&args)?;
            let admin = connect(&args).await?;
            let results = admin.delete_acls(&filters).await.context("removing ACLs")?;
            let mut removed = Vec::new();
            let mut errors = 0usize;
            for r in &results {
                if let Some(e) = &r.error {
                    errors += 1;
                    eprintln!(
                        "error: removing ACLs matching {}: {e}",
                        filter_text(&r.filter)
                    );
                }
                for d in &r.deleted {
                    if let Some(e) = &d.error {
                        errors += 1;
                        eprintln!(
                            "error: removing {} {}: {e}",
                            pattern_text(&d.binding),
                            entry_text(&d.binding)
                        );
                    }
                    removed.push((&d.binding, d.error.as_ref().map(|e| e.to_string())));
                }
            }
            removed.sort();
            removed.dedup();
            if json {
                let rows: Vec<_> = removed
                    .iter()
                    .map(|(b, e)| binding_with_error_json(b, e.clone()))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if removed.is_empty() && errors == 0 {
                println!("No ACLs matched.");
            } else {
                print_grouped(
                    "Removed ACLs",
                    removed.iter().filter(|(_, e)| e.is_none()).map(|(b, _)| *b),
                );
            }
            if errors > 0 {
                bail!("{errors} of the removals failed");
            }
        }
    }
    Ok(())
}

async fn connect(args: &AclsArgs) -> anyhow::Result<Admin> {
    Admin::new(args.connect.client_config("kraftwerk-acls")?)
        .await
        .context("connecting to the cluster")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        acls: AclsArgs,
    }

    fn parse(line: &str) -> Result<AclsArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("acls").chain(line.split_whitespace())).map(|c| c.acls)
    }

    fn ops(bindings: &[AclBinding], kind: AclResourceType) -> Vec<AclOperation> {
        let mut v: Vec<_> = bindings
            .iter()
            .filter(|b| b.resource_type == kind)
            .map(|b| b.operation)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn add_defaults_to_all_operations_from_every_host() -> anyhow::Result<()> {
        let b = add_bindings(&parse("add --allow-principal User:alice --topic T")?)?;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].operation, AclOperation::All);
        assert_eq!(b[0].host, "*");
        assert_eq!(b[0].pattern_type, AclPatternType::Literal);
        assert_eq!(b[0].permission, AclPermissionType::Allow);
        let b = add_bindings(&parse(
            "add --allow-principal User:a --deny-principal User:b --deny-host 10.0.0.1 \
             --operation Read --operation Describe --topic x- --group g \
             --resource-pattern-type prefixed",
        )?)?;
        // 2 entries x 2 resources x 2 operations.
        assert_eq!(b.len(), 8);
        assert!(b
            .iter()
            .any(|x| x.principal == "User:b" && x.host == "10.0.0.1"));
        assert!(b.iter().all(|x| x.pattern_type == AclPatternType::Prefixed));
        Ok(())
    }

    #[test]
    fn producer_and_consumer_roles_are_kafkas() -> anyhow::Result<()> {
        use AclOperation as Op;
        let b = add_bindings(&parse(
            "add --allow-principal User:p --producer --topic T --transactional-id tx --idempotent",
        )?)?;
        assert_eq!(
            ops(&b, AclResourceType::Topic),
            vec![Op::Write, Op::Create, Op::Describe]
        );
        assert_eq!(
            ops(&b, AclResourceType::TransactionalId),
            vec![Op::Write, Op::Describe]
        );
        assert_eq!(ops(&b, AclResourceType::Cluster), vec![Op::IdempotentWrite]);
        let b = add_bindings(&parse(
            "add --allow-principal User:c --consumer --topic T --group G",
        )?)?;
        assert_eq!(
            ops(&b, AclResourceType::Topic),
            vec![Op::Read, Op::Describe]
        );
        assert_eq!(ops(&b, AclResourceType::Group), vec![Op::Read]);
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused_before_connecting() -> anyhow::Result<()> {
        assert!(parse("add --allow-principal User:a --operation Wrte --topic T").is_err());
        assert!(parse("list --resource-pattern-type sometimes").is_err());
        let refused = [
            ("add --allow-principal User:a --operation Write", "resource"),
            ("add --operation Write --topic T", "principal"),
            (
                "add --allow-principal alice --topic T",
                "principalType:name",
            ),
            (
                "add --allow-principal User:a --operation IdempotentWrite --topic T",
                "cannot name operation IdempotentWrite",
            ),
            (
                "add --allow-principal User:a --topic T --resource-pattern-type match",
                "literal or prefixed",
            ),
            (
                "add --allow-principal User:a --consumer --topic T",
                "--group",
            ),
            (
                "add --allow-principal User:a --idempotent --topic T",
                "--producer",
            ),
            ("add --allow-host 1.2.3.4 --topic T", "--allow-principal"),
        ];
        for (line, wanted) in refused {
            match add_bindings(&parse(line)?) {
                Ok(b) => panic!("{line}: accepted {b:?}"),
                Err(e) => assert!(e.to_string().contains(wanted), "{line}: {e}"),
            }
        }
        assert!(remove_filters(&parse("remove --operation Write")?).is_err());
        assert!(list_filters(&parse("list --allow-principal User:a")?).is_err());
        Ok(())
    }

    #[test]
    fn remove_and_list_leave_out_what_is_not_given() -> anyhow::Result<()> {
        let f = remove_filters(&parse("remove --topic T")?)?;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].principal, None);
        assert_eq!(f[0].host, None);
        assert_eq!(f[0].operation, AclOperation::Any);
        assert_eq!(f[0].permission, AclPermissionType::Any);
        assert_eq!(f[0].pattern_type, AclPatternType::Literal);
        let f = remove_filters(&parse(
            "remove --allow-principal User:a --operation Write --topic T --resource-pattern-type any",
        )?)?;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].principal.as_deref(), Some("User:a"));
        assert_eq!(f[0].permission, AclPermissionType::Allow);
        assert_eq!(f[0].operation, AclOperation::Write);
        assert_eq!(f[0].pattern_type, AclPatternType::Any);
        let f = list_filters(&parse("list")?)?;
        assert_eq!(f, vec![AclBindingFilter::ANY]);
        let f = list_filters(&parse(
            "list --topic T --resource-pattern-type match --principal User:a",
        )?)?;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].pattern_type, AclPatternType::Match);
        assert_eq!(f[0].principal.as_deref(), Some("User:a"));
        Ok(())
    }

    #[test]
    fn names_print_as_kafka_tools_spell_them() {
        assert_eq!(camel_case("IDEMPOTENT_WRITE"), "IdempotentWrite");
        assert_eq!(camel_case("ALL"), "All");
    }
}
