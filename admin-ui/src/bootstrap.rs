//! The first admin. There is no default password: while no admin exists, a one-time setup
//! token (256 bits, stored as sha256, valid for `Options::bootstrap_ttl`) lets its holder
//! choose the first admin's name and password at `/setup?token=…`. Tokens are issued only
//! through `POST /api/v1/console/bootstrap` (admin bearer token), which `gensetctl admin
//! bootstrap` calls: whoever can read the admin token file can set up the console, and the
//! link, a credential, never goes to the log (which the journal shows more widely). At start
//! the daemon only logs that no admin exists and that command. Every token dies when the
//! first admin is created.

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

/// At start: when no admin exists, say how to get a setup link (never the link itself).
pub async fn announce_at_start(store: &Store) -> Result<(), genset::store::StoreError> {
    if !crate::db::any_admin(store).await? {
        tracing::warn!(
            "console: no admin yet. Run `gensetctl admin bootstrap` on this machine for a one-time link to choose the \
             first admin's password"
        );
    }
    Ok(())
}
