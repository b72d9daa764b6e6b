//! openraft's conformance suite against the sled log store and the metadata
//! state machine.

#![allow(clippy::unwrap_used)]

use kraftwerk_controller::raft::{LogStore, StateMachineStore, StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use tokio::sync::watch;

struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let io = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::write(openraft::AnyError::error(e)))
        };
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let db = kraftwerk_controller::raft::open_db(dir.path())
            .await
            .map_err(|e| io(&e))?;
        let log_store = LogStore::open(&db).map_err(|e| io(&e))?;
        let (image_tx, _) = watch::channel(Default::default());
        let state_machine = StateMachineStore::open(&db, image_tx)?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn sled_store_passes_the_openraft_suite() {
    Suite::test_all(SledStoreBuilder).unwrap();
}
