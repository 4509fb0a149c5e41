//! The audit log: every login, failed login, denied access and admin action, with who, what,
//! when (UTC) and from where. Also written to the daemon's log, so a failing store does not
//! make an action invisible.

use genset::store::Store;

pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub address: &'a str,
    pub detail: Option<&'a str>,
}

pub async fn record(store: &Store, now_ms: i64, e: Entry<'_>) {
    tracing::info!(
        target: "genset::console::audit",
        actor = e.actor,
        action = e.action,
        target_ = e.target,
        outcome = e.outcome,
        address = e.address,
        detail = e.detail.unwrap_or(""),
        "console audit"
    );
    if let Err(err) = crate::db::insert_audit(store, now_ms, e.actor, e.action, e.target, e.outcome, e.address, e.detail).await {
        tracing::error!(error = %err, action = e.action, "console: could not write the audit log");
    }
}
