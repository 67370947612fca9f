//! Usage booking on the control plane's side: reports from gateways (the one in this
//! process, and remote ones through `POST /internal/v1/usage`) into the store, and the
//! month's standing back.

use crate::clock::Clock;
use crate::control::store::{Store, StoreError, usage};
use crate::usage::{Ledger, LedgerError, Report, Standing};

/// Books `report` from `gateway` (once) and answers the month's standing, both as of
/// `clock`'s now.
pub async fn exchange(
    store: &Store,
    clock: &Clock,
    gateway: &str,
    report: &Report,
) -> Result<Standing, StoreError> {
    let now = clock.now();
    let mut conn = store.read().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let booked = usage::book(&mut tx, gateway, report, now).await?;
    let standing = usage::standing(&mut tx, now).await?;
    tx.commit().await?;
    if !booked {
        tracing::debug!(
            gateway,
            seq = report.seq,
            "usage: report booked before; not again"
        );
    }
    Ok(standing)
}

/// The ledger of the gateway in the control plane's own process: the store.
pub struct StoreLedger {
    store: Store,
    clock: Clock,
    gateway: String,
}

impl StoreLedger {
    /// Books into `store` as `gateway`, by `clock`.
    pub fn new(store: Store, clock: Clock, gateway: &str) -> Self {
        Self {
            store,
            clock,
            gateway: gateway.to_owned(),
        }
    }
}

impl Ledger for StoreLedger {
    async fn exchange(&mut self, report: &Report) -> Result<Standing, LedgerError> {
        exchange(&self.store, &self.clock, &self.gateway, report)
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))
    }

    fn describe(&self) -> String {
        format!("the control plane's store ({:?})", self.store.backend())
    }
}
