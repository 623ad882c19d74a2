//! The kept state in memory, for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Checkpoint, StateStore};
use crate::error::MartsError;
use crate::fold::{CityKey, SOURCE_PG, SaleKey, SaleRecord};

/// [`StateStore`] in a mutex.
#[derive(Debug, Default)]
pub struct MemoryState {
    inner: Mutex<(Option<Checkpoint>, HashMap<SaleKey, SaleRecord>)>,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (Option<Checkpoint>, HashMap<SaleKey, SaleRecord>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, MartsError> {
        Ok(self.lock().0.clone())
    }

    async fn sales(&self, keys: &[SaleKey]) -> Result<Vec<SaleRecord>, MartsError> {
        let state = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| state.1.get(k).cloned())
            .collect())
    }

    async fn sales_naming(
        &self,
        codes: &[String],
        cities: &[CityKey],
    ) -> Result<Vec<SaleRecord>, MartsError> {
        let state = self.lock();
        Ok(state
            .1
            .values()
            .filter(|r| !r.deleted && r.key.source != SOURCE_PG)
            .filter(|r| {
                (r.refs.salesman_id.is_none()
                    && r.refs
                        .salesman_code
                        .as_ref()
                        .is_some_and(|c| codes.contains(c)))
                    || (r.refs.city_id.is_none()
                        && r.refs.city_key.as_ref().is_some_and(|k| cities.contains(k)))
            })
            .cloned()
            .collect())
    }

    async fn commit(
        &self,
        base: Option<u64>,
        sales: &[SaleRecord],
        checkpoint: &Checkpoint,
    ) -> Result<(), MartsError> {
        let mut state = self.lock();
        let found = state.0.as_ref().map(|c| c.generation);
        if found != base {
            return Err(MartsError::StateConflict {
                expected: base.unwrap_or(0),
                found: found.unwrap_or(0),
            });
        }
        for record in sales {
            state.1.insert(record.key.clone(), record.clone());
        }
        state.0 = Some(checkpoint.clone());
        Ok(())
    }

    async fn reset(&self) -> Result<(), MartsError> {
        *self.lock() = Default::default();
        Ok(())
    }
}
