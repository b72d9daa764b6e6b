//! Data directories of single nodes from before a single node ran a
//! controller quorum of one voter.
//!
//! Such a node kept its whole metadata image in one JSON file,
//! `<log.dirs>/__cluster_metadata/metadata.json`, beside where the Raft
//! store lives now. On the first start of this version the file's content
//! is proposed once as [`MetadataCommand::ImportSingleNode`] and the file
//! is renamed `metadata.json.imported`, so the topics, their ids and leader
//! epochs, credentials, ACLs, quotas and producer ids carry over and the
//! partition logs beside them are served as before.

use std::path::{Path, PathBuf};

use kraftwerk_metadata::MetadataImage;
use serde::Deserialize;

use crate::commands::MetadataCommand;

/// The file a single node kept its metadata in.
pub const LEGACY_FILE: &str = "metadata.json";
/// What the file is renamed to once imported.
pub const IMPORTED_FILE: &str = "metadata.json.imported";

#[derive(Deserialize)]
struct Legacy {
    image: MetadataImage,
    /// Producer ids below this were handed out (or reserved) already.
    producer_id_block_end: i64,
}

/// A single node's metadata found in `dir`, to import.
#[derive(Debug)]
pub struct LegacyMetadata {
    pub path: PathBuf,
    pub cluster_id: String,
    pub command: MetadataCommand,
}

impl LegacyMetadata {
    /// Reads `dir/metadata.json`; `None` when there is none. A file that
    /// cannot be read or parsed is an error naming it: the node must not
    /// start with its topics forgotten.
    pub fn find(dir: &Path) -> Result<Option<LegacyMetadata>, String> {
        let path = dir.join(LEGACY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let legacy: Legacy = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is not a single node's metadata ({e}); move it away to start without it",
                path.display()
            )
        })?;
        let image = legacy.image;
        let cluster_id = image.cluster_id.clone();
        let command = MetadataCommand::ImportSingleNode {
            cluster_id: cluster_id.clone(),
            topics: image.topics.into_values().collect(),
            scram_credentials: image.scram_credentials,
            acls: image.acls,
            client_quotas: image.client_quotas,
            next_producer_id: legacy.producer_id_block_end.max(image.next_producer_id),
        };
        Ok(Some(LegacyMetadata {
            path,
            cluster_id,
            command,
        }))
    }

    /// Renames the file once its content is in the metadata log.
    pub fn retire(&self) -> std::io::Result<()> {
        let to = self.path.with_file_name(IMPORTED_FILE);
        std::fs::rename(&self.path, &to)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{apply, CommandResult};
    use kraftwerk_metadata::{PartitionRecord, TopicRecord};
    use kraftwerk_types::TopicId;

    fn legacy_file(dir: &Path) -> TopicId {
        let id = TopicId::random();
        let mut image = MetadataImage::new("q1w2e3r4t5y6u7i8o9p0aa".into(), 1);
        image.topics.insert(
            "orders".into(),
            TopicRecord {
                name: "orders".into(),
                id,
                partitions: vec![PartitionRecord {
                    partition: 0,
                    leader: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    leader_epoch: 7,
                    partition_epoch: 3,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                    offline_replicas: vec![],
                }],
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            },
        );
        let json = serde_json::json!({ "image": image, "producer_id_block_end": 2000 });
        std::fs::write(dir.join(LEGACY_FILE), json.to_string()).unwrap();
        id
    }

    #[test]
    fn a_single_nodes_file_imports_once_with_ids_and_epochs_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = legacy_file(dir.path());
        let found = LegacyMetadata::find(dir.path())
            .unwrap()
            .expect("file found");
        assert_eq!(found.cluster_id, "q1w2e3r4t5y6u7i8o9p0aa");

        let mut image = MetadataImage::default();
        assert_eq!(apply(&mut image, &found.command, 1), CommandResult::Ok);
        let t = image.topic("orders").expect("imported");
        assert_eq!(t.id, id);
        assert_eq!(t.partitions[0].leader_epoch, 7);
        assert_eq!(t.configs["retention.ms"], "1000");
        assert_eq!(image.next_producer_id, 2000);
        assert_eq!(image.cluster_id, "q1w2e3r4t5y6u7i8o9p0aa");
        assert!(image.topic_by_id(&id).is_some());

        // A second import (a crash before the rename) changes nothing.
        let before = image.topics.clone();
        assert!(matches!(
            apply(&mut image, &found.command, 2),
            CommandResult::Error { .. }
        ));
        assert_eq!(image.topics, before);

        found.retire().unwrap();
        assert!(LegacyMetadata::find(dir.path()).unwrap().is_none());
        assert!(dir.path().join(IMPORTED_FILE).exists());
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_FILE), b"{not json").unwrap();
        let e = LegacyMetadata::find(dir.path()).unwrap_err();
        assert!(e.contains("metadata.json"), "{e}");
    }
}
