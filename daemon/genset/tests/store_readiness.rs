//! The readiness queries against both backends: the latest computation of each use case is
//! found by index seeks (the table keeps every computation), with the same answer in SQLite
//! and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use genset::store::Store;
use genset::store::evaluate::ReadinessRow;

fn row(use_case: &str, ts_ms: i64, verdict: &str, score: f64) -> ReadinessRow {
    ReadinessRow {
        ts_ms,
        use_case: use_case.to_string(),
        verdict: verdict.to_string(),
        score,
        score_lower: score - 0.05,
        score_upper: score + 0.05,
        n: 100,
        reasons: "[]".into(),
        detail: "{}".into(),
    }
}

/// Several computations per use case, interleaved; the latest of each (by insertion) must
/// come back, one row per use case, sorted by name.
async fn latest_of_each(store: &Store, prefix: &str) {
    let names = [format!("{prefix}-b"), format!("{prefix}-a"), format!("{prefix}-c")];
    for round in 0..5 {
        for (i, n) in names.iter().enumerate() {
            // Timestamps deliberately not in insertion order: "latest" is the newest row.
            let verdict = if round == 4 { "ready" } else { "not-ready" };
            store.insert_readiness(&row(n, 1_000 - round * 10 + i as i64, verdict, 0.5 + round as f64 / 10.0)).await.unwrap();
        }
    }
    let latest: Vec<ReadinessRow> =
        store.latest_readiness().await.unwrap().into_iter().filter(|r| r.use_case.starts_with(prefix)).collect();
    let got: Vec<(&str, &str)> = latest.iter().map(|r| (r.use_case.as_str(), r.verdict.as_str())).collect();
    assert_eq!(
        got,
        vec![(names[1].as_str(), "ready"), (names[0].as_str(), "ready"), (names[2].as_str(), "ready")],
        "one row per use case, the newest, by name"
    );
    assert!(latest.iter().all(|r| (r.score - 0.9).abs() < 1e-9), "{:?}", latest.iter().map(|r| r.score).collect::<Vec<_>>());
    let history = store.readiness_history(&names[0], 2).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].verdict, "ready");
}

/// A report's points: the period's computations, plus the latest before it per use case.
async fn report_points(store: &Store, prefix: &str) {
    let (a, b, c) = (format!("{prefix}-pa"), format!("{prefix}-pb"), format!("{prefix}-pc"));
    for ts in [100, 200, 300, 400, 500] {
        store.insert_readiness(&row(&a, ts, "ready", ts as f64 / 1000.0)).await.unwrap();
    }
    store.insert_readiness(&row(&b, 150, "marginal", 0.7)).await.unwrap();
    store.insert_readiness(&row(&b, 160, "not-ready", 0.6)).await.unwrap();
    store.insert_readiness(&row(&c, 900, "ready", 0.9)).await.unwrap();
    let got: Vec<(String, i64)> = store
        .readiness_points(300, 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.use_case.starts_with(prefix))
        .map(|r| (r.use_case, r.ts_ms))
        .collect();
    assert_eq!(
        got,
        vec![(b.clone(), 160), (a.clone(), 200), (a.clone(), 300), (a.clone(), 400)],
        "a's points in [300, 500) and its last before (200); b's last before (160); nothing of c (after)"
    );
}

#[tokio::test]
async fn latest_readiness_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display()), 2).await.unwrap();
    assert!(store.latest_readiness().await.unwrap().is_empty(), "an empty table has no latest row");
    latest_of_each(&store, "uc").await;
    report_points(&store, "uc").await;
    store.close().await;
}

#[tokio::test]
async fn latest_readiness_postgres() {
    let Ok(url) = std::env::var("GENSET_TEST_PG_URL") else {
        panic!("GENSET_TEST_PG_URL is not set: run the README's test command (scripts/test.sh), which starts a throwaway PostgreSQL");
    };
    let store = Store::open(&url, 2).await.unwrap();
    // The database is shared with other tests: names unique to this run.
    let prefix = format!("readiness-{}-{}", std::process::id(), genset::record::now_ms());
    latest_of_each(&store, &prefix).await;
    report_points(&store, &prefix).await;
    store.close().await;
}
