//! Requests per minute, use case and server: folded from `exchanges` into `console_minutes`
//! by an id high-water mark, so the dashboards read a few thousand small rows instead of
//! scanning millions of exchanges. Pages add the not-yet-folded tail themselves
//! ([`tail`]), so they are never stale by more than [`TAIL_LIMIT`] exchanges.

use std::collections::HashMap;
use std::time::Duration;

use genset::store::{Store, StoreError};

use crate::db::{self, ExchangeTick, MinuteRow};
use crate::latency::Hist;

/// Rows folded per transaction.
pub const BATCH: i64 = 20_000;
/// How far back the rollup starts on an existing store, and what it keeps.
pub const KEEP: Duration = Duration::from_secs(35 * 24 * 3600);
/// The most unfolded exchanges a page aggregates itself.
pub const TAIL_LIMIT: i64 = 5_000;

pub fn is_error(status: i64, completed: bool) -> bool {
    status >= 400 || !completed
}

/// Fold ticks into minute rows: requests, errors and latency of what clients got (the
/// final attempt of each request; failed attempts before a failover are left out).
pub fn fold(ticks: &[ExchangeTick]) -> Vec<MinuteRow> {
    let mut m: HashMap<(i64, &str, &str), (MinuteRow, Hist, Hist)> = HashMap::new();
    for t in ticks.iter().filter(|t| t.final_attempt) {
        let minute = t.ts_ms - t.ts_ms.rem_euclid(60_000);
        let e = m.entry((minute, &t.use_case, &t.served_by)).or_insert_with(|| {
            let row = MinuteRow {
                minute_ms: minute,
                use_case: t.use_case.clone(),
                served_by: t.served_by.clone(),
                requests: 0,
                errors: 0,
                total_ms_sum: 0.0,
                total_hist: String::new(),
                ttfb_hist: String::new(),
            };
            (row, Hist::default(), Hist::default())
        });
        e.0.requests += 1;
        e.0.errors += i64::from(is_error(t.status, t.completed));
        e.0.total_ms_sum += t.total_ms;
        e.1.add(t.total_ms);
        if let Some(f) = t.ttfb_ms {
            e.2.add(f);
        }
    }
    let mut v: Vec<MinuteRow> = m
        .into_values()
        .map(|(mut r, total, ttfb)| {
            r.total_hist = total.encode();
            r.ttfb_hist = ttfb.encode();
            r
        })
        .collect();
    v.sort_by(|a, b| (a.minute_ms, &a.use_case, &a.served_by).cmp(&(b.minute_ms, &b.use_case, &b.served_by)));
    v
}

pub async fn high_water(store: &Store) -> Result<Option<i64>, StoreError> {
    Ok(store.meta_get(db::ROLLUP_KEY).await?.and_then(|v| v.parse().ok()))
}

/// Fold one batch; returns how many exchanges were folded.
pub async fn step(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    let hw = match high_water(store).await? {
        Some(h) => h,
        None => start_point(store, now_ms).await?,
    };
    let ticks = db::exchanges_after(store, hw, BATCH).await?;
    let Some(last) = ticks.last().map(|t| t.id) else {
        if high_water(store).await?.is_none() {
            db::add_minutes(store, &[], hw).await?;
        }
        return Ok(0);
    };
    db::add_minutes(store, &fold(&ticks), last).await?;
    Ok(ticks.len())
}

/// Where to start on a store that has history: the first exchange of the kept window.
async fn start_point(store: &Store, now_ms: i64) -> Result<i64, StoreError> {
    let since = now_ms - KEEP.as_millis() as i64;
    let first = match store {
        Store::Sqlite(p) => {
            sqlx::query_as::<_, (i64,)>("SELECT id FROM exchanges WHERE ts_ms >= ?1 ORDER BY ts_ms LIMIT 1")
                .bind(since)
                .fetch_optional(p)
                .await?
        }
        Store::Postgres(p) => {
            sqlx::query_as::<_, (i64,)>("SELECT id FROM exchanges WHERE ts_ms >= $1 ORDER BY ts_ms LIMIT 1")
                .bind(since)
                .fetch_optional(p)
                .await?
        }
    };
    match first {
        Some((id,)) => Ok(id - 1),
        None => db::max_exchange_id(store).await,
    }
}

/// Fold until caught up.
pub async fn catch_up(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = step(store, now_ms).await?;
        total += n;
        if (n as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// The exchanges not folded yet (at most [`TAIL_LIMIT`]), folded in memory for a page.
pub async fn tail(store: &Store) -> Result<Vec<MinuteRow>, StoreError> {
    Ok(tail_with_mark(store).await?.1)
}

/// [`tail`], and the high-water mark it read (`None` before the first fold).
async fn tail_with_mark(store: &Store) -> Result<(Option<i64>, Vec<MinuteRow>), StoreError> {
    let mark = high_water(store).await?;
    // Before the first fold: the newest exchanges.
    let hw = match mark {
        Some(h) => h,
        None => (db::max_exchange_id(store).await? - TAIL_LIMIT).max(0),
    };
    let ticks = db::exchanges_after(store, hw, TAIL_LIMIT).await?;
    Ok((mark, fold(&ticks)))
}

/// Folded rows read by `folded`, plus the tail, as of one high-water mark. The folder moves
/// exchanges from the tail into the folded rows in one transaction; a fold that commits
/// between the two reads would leave its exchanges in neither, so a read that straddles one
/// is retried (the mark only grows: an unchanged mark means no fold came between).
async fn with_tail<F, Fut>(store: &Store, since_ms: i64, use_case: Option<&str>, folded: F) -> Result<Vec<MinuteRow>, StoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<MinuteRow>, StoreError>>,
{
    loop {
        let before = high_water(store).await?;
        let mut rows = folded().await?;
        let (after, tail) = tail_with_mark(store).await?;
        if before == after {
            rows.extend(tail.into_iter().filter(|r| r.minute_ms >= since_ms && use_case.is_none_or(|u| u == r.use_case)));
            return Ok(rows);
        }
    }
}

/// Minute rows since `since_ms` (folded plus tail), optionally for one use case.
pub async fn minutes(store: &Store, since_ms: i64, use_case: Option<&str>) -> Result<Vec<MinuteRow>, StoreError> {
    with_tail(store, since_ms, use_case, || db::minutes_since(store, since_ms, use_case)).await
}

/// Totals per (use case, served_by) since `since_ms` (folded, summed in SQL, plus tail).
pub async fn totals(store: &Store, since_ms: i64, use_case: Option<&str>) -> Result<Vec<MinuteRow>, StoreError> {
    with_tail(store, since_ms, use_case, || db::sums_since(store, since_ms, use_case)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: i64, ts: i64, uc: &str, by: &str, status: i64) -> ExchangeTick {
        ExchangeTick {
            id,
            ts_ms: ts,
            use_case: uc.into(),
            served_by: by.into(),
            status,
            completed: true,
            total_ms: 10.0 * id as f64,
            ttfb_ms: (id % 2 == 0).then_some(5.0),
            final_attempt: true,
        }
    }

    #[test]
    fn folds_by_minute() {
        let rows = fold(&[
            t(1, 60_000, "a", "cloud", 200),
            t(2, 119_999, "a", "cloud", 500),
            t(3, 120_000, "a", "cloud", 200),
            t(4, 60_001, "b", "local:x", 200),
        ]);
        let v: Vec<_> = rows.iter().map(|r| (r.minute_ms, r.use_case.as_str(), r.served_by.as_str(), r.requests, r.errors)).collect();
        assert_eq!(v, vec![(60_000, "a", "cloud", 2, 1), (60_000, "b", "local:x", 1, 0), (120_000, "a", "cloud", 1, 0)]);
        // Latency: total times 10 and 20 ms; a time to first byte only where recorded.
        let first = Hist::decode(&rows[0].total_hist);
        assert_eq!(first.count(), 2);
        assert!((first.quantile(1.0).unwrap() / 20.0 - 1.0).abs() < 0.1);
        assert_eq!(Hist::decode(&rows[0].ttfb_hist).count(), 1);
        assert_eq!(Hist::decode(&rows[1].ttfb_hist).count(), 1);
        assert!(rows[2].ttfb_hist.is_empty());
    }

    #[test]
    fn failed_attempts_before_a_failover_are_not_client_requests() {
        let mut failed = t(1, 60_000, "a", "cloud", 503);
        failed.final_attempt = false;
        let rows = fold(&[failed, t(2, 60_500, "a", "local:x", 200)]);
        let v: Vec<_> = rows.iter().map(|r| (r.served_by.as_str(), r.requests, r.errors)).collect();
        assert_eq!(v, vec![("local:x", 1, 0)]);
    }
}
