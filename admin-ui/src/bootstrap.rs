//! The first admin. There is no default password: while no admin exists, a one-time setup
//! token (256 bits, stored as sha256, valid for `Options::bootstrap_ttl`) is issued at start
//! and written to the daemon's log; `/setup?token=…` lets its holder choose the first admin's
//! name and password. `gensetctl admin bootstrap` issues a fresh one through
//! `POST /api/v1/console/bootstrap` (admin bearer token). Every token dies when the first
//! admin is created.

use genset::store::Store;

use crate::Console;
use crate::session::{new_token, token_hash};

/// A fresh setup token, or `None` when an admin exists already.
pub async fn issue(store: &Store, console: &Console) -> Result<Option<String>, genset::store::StoreError> {
    if crate::db::any_admin(store).await? {
        return Ok(None);
    }
    let token = new_token();
    let now = console.now_ms();
    crate::db::insert_bootstrap(store, &token_hash(&token), now, now + console.options.bootstrap_ttl.as_millis() as i64).await?;
    Ok(Some(token))
}

pub fn setup_path(token: &str) -> String {
    format!("/setup?token={token}")
}

/// At start: when no admin exists, issue a token and log the setup link.
pub async fn announce_at_start(store: &Store, console: &Console) -> Result<(), genset::store::StoreError> {
    if let Some(token) = issue(store, console).await? {
        tracing::warn!(
            setup = %setup_path(&token),
            valid_for = %humantime::format_duration(console.options.bootstrap_ttl),
            "console: no admin yet. Open the admin listener at this path to choose the first admin's password \
             (one-time link; `gensetctl admin bootstrap` prints a fresh one)"
        );
    }
    Ok(())
}
