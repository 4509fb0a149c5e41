//! The SQLite store as the recorder uses it: a new file is created in WAL mode with 16 KiB
//! pages, and SQLite, allocating through the process allocator (`store::sqlite_lib`), keeps
//! every byte of large and many small rows written in one batch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use genset::store::{NewExchange, Store, TrafficFilter};

fn row(i: i64, body: &str) -> NewExchange {
    NewExchange {
        ts_ms: 1_000 + i,
        api: "openai",
        endpoint: "/v1/chat/completions",
        use_case: "uc".into(),
        served_by: "cloud:openai".into(),
        model: Some("gpt-4o".into()),
        status: 200,
        stream: false,
        completed: true,
        error: None,
        client_key_hash: None,
        virtual_key_id: None,
        ttfb_ms: Some(1.5),
        total_ms: 2.5,
        prompt_tokens: Some(i),
        completion_tokens: Some(2 * i),
        request_body: Some(format!("{{\"n\":{i},\"text\":\"{body}\"}}")),
        response_body: Some(body.chars().rev().collect()),
        request_bytes: body.len() as i64,
        response_bytes: body.len() as i64,
        truncated: false,
        prompt_fingerprint: Some(format!("{i:016x}")),
        request_id: None,
        attempt: 0,
        final_attempt: true,
        rescue: None,
        mode: None,
    }
}

#[tokio::test]
async fn new_sqlite_store_uses_wal_and_large_pages_and_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display()), 2).await.unwrap();
    let Store::Sqlite(pool) = &store else { panic!("a sqlite: URL opens SQLite") };
    let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await.unwrap();
    assert_eq!(page, 16384, "a new database gets 16 KiB pages");
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    assert_eq!(journal, "wal");

    // Bodies from a few bytes to past one page and past SQLite's own small-allocation sizes
    // (overflow pages, reallocations), non-ASCII included.
    let bodies: Vec<String> =
        [0usize, 1, 100, 5_000, 40_000, 300_000].iter().map(|&n| "é✓a".repeat(n / 3 + 1).chars().take(n).collect()).collect();
    let rows: Vec<NewExchange> = (0..600).map(|i| row(i, &bodies[i as usize % bodies.len()])).collect();
    store.insert_exchanges(&rows, &[]).await.unwrap();

    let back = store.list_exchanges(&TrafficFilter { limit: 1_000, ..Default::default() }).await.unwrap();
    assert_eq!(back.len(), rows.len());
    for r in &back {
        let want = &rows[(r.ts_ms - 1_000) as usize];
        assert_eq!(r.request_body, want.request_body, "request body of row {}", r.ts_ms);
        assert_eq!(r.response_body, want.response_body, "response body of row {}", r.ts_ms);
        assert_eq!((r.prompt_tokens, r.prompt_fingerprint.as_deref()), (want.prompt_tokens, want.prompt_fingerprint.as_deref()));
    }
    store.close().await;

    // Reopened, the file keeps its page size and its rows.
    let store = Store::open(&format!("sqlite://{}", dir.path().join("g.db").display()), 2).await.unwrap();
    let Store::Sqlite(pool) = &store else { panic!("a sqlite: URL opens SQLite") };
    let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await.unwrap();
    assert_eq!(page, 16384);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM exchanges").fetch_one(pool).await.unwrap();
    assert_eq!(n, 600);
    store.close().await;
}
