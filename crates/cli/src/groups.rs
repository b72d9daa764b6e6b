//! `kraftwerk groups`: Kafka's kafka-consumer-groups.sh, same flag names.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use kraftwerk_client::{Admin, GroupDescription, OffsetSpec};
use serde_json::json;

use crate::{Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GroupsAction {
    List,
    Describe,
    ResetOffsets,
    Delete,
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// list | describe | reset-offsets | delete
    #[arg(value_enum)]
    action: GroupsAction,
    #[command(flatten)]
    connect: Connect,
    /// The consumer group.
    #[arg(long)]
    group: Option<String>,
    /// reset-offsets: `topic` (all partitions) or `topic:0,1`; repeatable.
    #[arg(long)]
    topic: Vec<String>,
    /// reset-offsets: to the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// reset-offsets: to the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// reset-offsets: to the first offset at or after `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]`.
    #[arg(long, value_name = "ISO8601")]
    to_datetime: Option<String>,
    /// reset-offsets: to this offset (kept within the log).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// reset-offsets: move the committed offset by N (may be negative).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// reset-offsets: apply the new offsets (without it, only print them).
    #[arg(long)]
    execute: bool,
    /// reset-offsets: only print the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client_config("kraftwerk-consumer-groups")?)
        .await
        .context("connecting to the cluster")?;
    let json = args.connect.output == Output::Json;
    let group = || args.group.clone().context("--group is required");
    match args.action {
        GroupsAction::List => {
            let groups = admin.list_groups().await?;
            if json {
                let list: Vec<_> = groups
                    .iter()
                    .map(|g| json!({"group": g.group_id, "state": g.state, "protocol_type": g.protocol_type}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for g in groups {
                    println!("{}", g.group_id);
                }
            }
        }
        GroupsAction::Describe => describe(&admin, &group()?, json).await?,
        GroupsAction::ResetOffsets => reset_offsets(&admin, &args, &group()?, json).await?,
        GroupsAction::Delete => {
            let group = group()?;
            for (name, error) in admin.delete_groups(vec![group]).await? {
                match error {
                    None if json => println!("{}", json!({"group": name, "deleted": true})),
                    None => {
                        println!("Deletion of requested consumer groups ('{name}') was successful.")
                    }
                    Some(e) if e.code() == Some(68) => {
                        bail!("deleting group '{name}': the group is not empty (it has active members)")
                    }
                    Some(e) if e.code() == Some(69) => {
                        bail!("deleting group '{name}': consumer group '{name}' does not exist")
                    }
                    Some(e) => bail!("deleting group '{name}': {e}"),
                }
            }
        }
    }
    Ok(())
}

/// One row of `describe`: a partition the group has committed or owns.
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end_offset: Option<i64>,
    member: Option<(String, String, String)>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        Some((self.log_end_offset? - self.committed?).max(0))
    }
}

async fn describe(admin: &Admin, group: &str, json: bool) -> anyhow::Result<()> {
    let description = admin
        .describe_group(group)
        .await
        .with_context(|| format!("describing group '{group}'"))?;
    let committed: BTreeMap<(String, i32), i64> = admin
        .list_group_offsets(group)
        .await
        .with_context(|| format!("fetching offsets of group '{group}'"))?
        .into_iter()
        .collect();
    if description.state == "Dead" && committed.is_empty() {
        bail!("Consumer group '{group}' does not exist.");
    }
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &description.members {
        for key in &m.assignment {
            owners.insert(
                key.clone(),
                (m.member_id.clone(), m.host.clone(), m.client_id.clone()),
            );
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let mut rows = Vec::with_capacity(keys.len());
    for (topic, partition) in keys {
        let log_end_offset = admin
            .list_offsets(&topic, partition, OffsetSpec::Latest)
            .await
            .map(|(offset, _)| offset)
            .ok();
        rows.push(PartitionRow {
            committed: committed.get(&(topic.clone(), partition)).copied(),
            member: owners.get(&(topic.clone(), partition)).cloned(),
            topic,
            partition,
            log_end_offset,
        });
    }
    let total_lag: i64 = rows.iter().filter_map(PartitionRow::lag).sum();
    if json {
        print_describe_json(group, &description, &rows, total_lag);
        return Ok(());
    }
    if description.members.is_empty() {
        println!("Consumer group '{group}' has no active members.");
    }
    println!(
        "\nGROUP STATE: {}  PROTOCOL: {}  MEMBERS: {}",
        description.state,
        if description.protocol.is_empty() {
            "-"
        } else {
            &description.protocol
        },
        description.members.len()
    );
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut table = vec![vec![
        "GROUP".to_string(),
        "TOPIC".into(),
        "PARTITION".into(),
        "CURRENT-OFFSET".into(),
        "LOG-END-OFFSET".into(),
        "LAG".into(),
        "CONSUMER-ID".into(),
        "HOST".into(),
        "CLIENT-ID".into(),
    ]];
    for r in &rows {
        let (member, host, client) = r
            .member
            .clone()
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        table.push(vec![
            group.to_string(),
            r.topic.clone(),
            r.partition.to_string(),
            dash(r.committed),
            dash(r.log_end_offset),
            dash(r.lag()),
            member,
            host,
            client,
        ]);
    }
    print_table(&table);
    println!("\nTOTAL LAG: {total_lag}");
    if !description.members.is_empty() {
        let mut members = vec![vec![
            "CONSUMER-ID".to_string(),
            "HOST".into(),
            "CLIENT-ID".into(),
            "#PARTITIONS".into(),
            "ASSIGNMENT".into(),
        ]];
        for m in &description.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            members.push(vec![
                m.member_id.clone(),
                m.host.clone(),
                m.client_id.clone(),
                m.assignment.len().to_string(),
                if assignment.is_empty() {
                    "-".into()
                } else {
                    assignment.join(",")
                },
            ]);
        }
        println!();
        print_table(&members);
    }
    Ok(())
}

fn print_describe_json(
    group: &str,
    description: &GroupDescription,
    rows: &[PartitionRow],
    total_lag: i64,
) {
    let members: Vec<_> = description
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "group_instance_id": m.group_instance_id,
                "assignment": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let partitions: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "topic": r.topic,
                "partition": r.partition,
                "committed_offset": r.committed,
                "log_end_offset": r.log_end_offset,
                "lag": r.lag(),
                "member_id": r.member.as_ref().map(|m| m.0.clone()),
                "host": r.member.as_ref().map(|m| m.1.clone()),
                "client_id": r.member.as_ref().map(|m| m.2.clone()),
            })
        })
        .collect();
    println!(
        "{}",
        json!({
            "group": group,
            "state": description.state,
            "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": members,
            "partitions": partitions,
            "total_lag": total_lag,
        })
    );
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join(" ").trim_end());
    }
}

/// The partitions named by `--topic` values (`t` or `t:0,1`).
async fn reset_targets(admin: &Admin, topics: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for spec in topics {
        match spec.split_once(':') {
            Some((topic, list)) => {
                for p in list.split(',').filter(|s| !s.trim().is_empty()) {
                    let partition: i32 = p
                        .trim()
                        .parse()
                        .with_context(|| format!("'{p}' in --topic {spec} is not a partition"))?;
                    out.push((topic.to_string(), partition));
                }
            }
            None => {
                let described = admin
                    .describe_topics(std::slice::from_ref(spec))
                    .await
                    .with_context(|| format!("looking up topic {spec}"))?;
                for t in described {
                    out.extend(t.partitions.iter().map(|p| (t.name.clone(), p.partition)));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn reset_offsets(
    admin: &Admin,
    args: &GroupsArgs,
    group: &str,
    json: bool,
) -> anyhow::Result<()> {
    let chosen = [
        args.to_earliest,
        args.to_latest,
        args.to_datetime.is_some(),
        args.to_offset.is_some(),
        args.shift_by.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen != 1 {
        bail!("reset-offsets needs exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by");
    }
    if args.topic.is_empty() {
        bail!("reset-offsets needs --topic");
    }
    let description = admin.describe_group(group).await?;
    if !matches!(description.state.as_str(), "Empty" | "Dead") {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
            description.state
        );
    }
    let datetime_ms = match &args.to_datetime {
        Some(text) => Some(parse_datetime_ms(text)?),
        None => None,
    };
    let committed: BTreeMap<(String, i32), i64> =
        admin.list_group_offsets(group).await?.into_iter().collect();
    let targets = reset_targets(admin, &args.topic).await?;
    let mut new_offsets = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        let earliest = admin
            .list_offsets(&topic, partition, OffsetSpec::Earliest)
            .await?
            .0;
        let latest = admin
            .list_offsets(&topic, partition, OffsetSpec::Latest)
            .await?
            .0;
        let wanted = if args.to_earliest {
            earliest
        } else if args.to_latest {
            latest
        } else if let Some(ms) = datetime_ms {
            let (offset, _) = admin
                .list_offsets(&topic, partition, OffsetSpec::Timestamp(ms))
                .await?;
            if offset < 0 {
                latest
            } else {
                offset
            }
        } else if let Some(offset) = args.to_offset {
            offset
        } else if let Some(shift) = args.shift_by {
            let Some(current) = committed.get(&(topic.clone(), partition)) else {
                bail!("Cannot shift offset for partition {topic}-{partition} since there is no current committed offset");
            };
            current.saturating_add(shift)
        } else {
            bail!("no reset option chosen");
        };
        new_offsets.push((
            (topic, partition),
            wanted.clamp(earliest, latest.max(earliest)),
        ));
    }
    if args.execute {
        admin
            .alter_group_offsets(group, new_offsets.clone())
            .await
            .with_context(|| format!("committing the new offsets of group '{group}'"))?;
    }
    if json {
        let offsets: Vec<_> = new_offsets
            .iter()
            .map(|((t, p), o)| json!({"topic": t, "partition": p, "new_offset": o}))
            .collect();
        println!(
            "{}",
            json!({"group": group, "executed": args.execute, "offsets": offsets})
        );
    } else {
        let mut table = vec![vec![
            "GROUP".to_string(),
            "TOPIC".into(),
            "PARTITION".into(),
            "NEW-OFFSET".into(),
        ]];
        for ((t, p), o) in &new_offsets {
            table.push(vec![
                group.to_string(),
                t.clone(),
                p.to_string(),
                o.to_string(),
            ]);
        }
        println!();
        print_table(&table);
        if !args.execute {
            eprintln!("Dry run: nothing was changed; add --execute to apply these offsets.");
        }
    }
    Ok(())
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]`
/// (local time is not known here, so no zone means UTC).
fn parse_datetime_ms(text: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow::anyhow!("--to-datetime '{text}' is not YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]");
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.split('-');
    let next_number = |parts: &mut std::str::Split<'_, char>| -> anyhow::Result<i64> {
        parts
            .next()
            .ok_or_else(bad)?
            .parse::<i64>()
            .map_err(|_| bad())
    };
    let year = next_number(&mut date_parts)?;
    let month = next_number(&mut date_parts)?;
    let day = next_number(&mut date_parts)?;
    let (time, offset_minutes) = if let Some(time) = rest.strip_suffix('Z') {
        (time, 0)
    } else if let Some(index) = rest.rfind(['+', '-']) {
        let (time, zone) = rest.split_at(index);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (time, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock_parts = clock.split(':');
    let hour = next_number(&mut clock_parts)?;
    let minute = next_number(&mut clock_parts)?;
    let second = clock_parts
        .next()
        .map_or(Ok(0), |s| s.parse::<i64>().map_err(|_| bad()))?;
    let millis: i64 = format!("{fraction:0<3}")
        .get(..3)
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_kafka_writes_them() {
        let cases = [
            ("1970-01-01T00:00:00.000", 0),
            ("1970-01-01T00:00:01Z", 1_000),
            ("2024-02-29T12:30:00.5", 1_709_209_800_500),
            ("2024-02-29T14:30:00.500+02:00", 1_709_209_800_500),
            ("2024-02-29T10:30:00.500-02:00", 1_709_209_800_500),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_datetime_ms(text).expect(text), expected, "{text}");
        }
        assert!(parse_datetime_ms("yesterday").is_err());
        assert!(parse_datetime_ms("2024-13-01T00:00:00").is_err());
    }
}
