//! Console page timings at scale: seeds N exchanges (default 10 million) into a SQLite
//! store, folds the dashboards' rollup, starts gensetd in-process with the console, signs
//! in and times each page (median, p90 and max of `--iterations` loads over loopback, the
//! whole answer read). `bench/console/run.sh` runs it; figures go to docs/benchmarks.md.
//!
//! `console_bench [--rows N] [--db PATH] [--iterations K] [--days D]`
//! An existing `--db` with at least N exchanges is reused (seeding 10M takes minutes).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use genset::store::Store;
use genset_admin_ui::{Clock, Console, Options, db, password, rollup};

struct Args {
    rows: i64,
    db: Option<PathBuf>,
    iterations: usize,
    days: i64,
}

fn args() -> Args {
    let mut a = Args { rows: 10_000_000, db: None, iterations: 20, days: 30 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--rows" => a.rows = v.replace('_', "").parse().expect("--rows"),
            "--db" => a.db = Some(PathBuf::from(v)),
            "--iterations" => a.iterations = v.parse().expect("--iterations"),
            "--days" => a.days = v.parse().expect("--days"),
            o => panic!("unknown argument {o}"),
        }
    }
    a
}

/// Seed rows `from..to` (1-based sequence numbers) spread evenly over the last `days`, in one
/// transaction per million with `INSERT … SELECT` from a recursive CTE.
async fn seed(store: &Store, have: i64, want: i64, days: i64) {
    let Store::Sqlite(pool) = store else { panic!("the benchmark seeds SQLite") };
    let now = genset::record::now_ms();
    let span = days * 24 * 3_600_000;
    let step = (span / want).max(1);
    let start = now - span;
    let mut from = have + 1;
    let t0 = Instant::now();
    while from <= want {
        let to = (from + 1_000_000 - 1).min(want);
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c WHERE i < ?2) \
             INSERT INTO exchanges (ts_ms, api, endpoint, use_case, served_by, model, status, stream, completed, error, \
               client_key_hash, ttfb_ms, total_ms, prompt_tokens, completion_tokens, request_body, response_body, \
               request_bytes, response_bytes, truncated, prompt_fingerprint, request_id, attempt, final_attempt, mode) \
             SELECT ?3 + i * ?4, 'openai', '/v1/chat/completions', \
               CASE i % 10 WHEN 0 THEN 'invoices' WHEN 1 THEN 'invoices' WHEN 2 THEN 'summaries' WHEN 3 THEN 'unclassified' \
                 WHEN 4 THEN 'contracts' ELSE 'support' END, \
               CASE WHEN i % 5 = 0 THEN 'local:gemma' ELSE 'openai' END, 'gpt-4o-mini', \
               CASE WHEN i % 50 = 0 THEN 500 WHEN i % 97 = 0 THEN 429 ELSE 200 END, i % 2, \
               CASE WHEN i % 1000 = 0 THEN 0 ELSE 1 END, CASE WHEN i % 50 = 0 THEN 'upstream_error' END, \
               'a1b2c3d4e5f6', 90.0 + i % 50, 300.0 + i % 900, 40 + i % 200, 5 + i % 50, \
               '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"Triage the ticket.\"},{\"role\":\"user\",\"content\":\"ticket ' || i || ': the printer is on fire\"}]}', \
               '{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"category: hardware\"}}],\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":7}}', \
               180, 120, 0, 'fp' || (i % 40), 'req-' || i, 0, 1, 'cloud' \
             FROM c",
        )
        .bind(from)
        .bind(to)
        .bind(start)
        .bind(step)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        println!("  seeded {to} rows ({:.0} s)", t0.elapsed().as_secs_f64());
        from = to + 1;
    }
}

/// The console's other tables at the size a year of service leaves: readiness computed every
/// 10 minutes for each of the 4 use cases (210k rows), 1M audit entries, 200k sign-in
/// attempts. Seeded once, with the exchanges.
async fn seed_console(store: &Store) {
    let Store::Sqlite(pool) = store else { panic!("the benchmark seeds SQLite") };
    let now = genset::record::now_ms();
    let year = 365 * 24 * 3_600_000_i64;
    let t0 = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?1) \
         INSERT INTO readiness (ts_ms, use_case, verdict, score, score_lower, score_upper, n, reasons, detail) \
         SELECT ?2 + (i / 4) * 600000, \
           CASE i % 4 WHEN 0 THEN 'support' WHEN 1 THEN 'invoices' WHEN 2 THEN 'summaries' ELSE 'contracts' END, \
           CASE WHEN i % 7 = 0 THEN 'marginal' WHEN i % 13 = 0 THEN 'not-ready' ELSE 'ready' END, \
           0.80 + (i % 17) / 100.0, 0.72 + (i % 17) / 100.0, 0.88 + (i % 11) / 100.0, 120 + i % 80, \
           '[\"score 0.86 over 120 samples\"]', '{\"readiness\":{\"trend\":\"stable\"},\"model\":\"gemma\"}' \
         FROM c",
    )
    .bind(4 * (year / 600_000) - 1)
    .bind(now - year)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 999999) \
         INSERT INTO console_audit (ts_ms, actor, action, target, outcome, address, detail) \
         SELECT ?1 + i * 31536, CASE i % 5 WHEN 0 THEN '-' WHEN 1 THEN 'alice' WHEN 2 THEN 'bob' ELSE 'carol' END, \
           CASE i % 9 WHEN 0 THEN 'login.failed' WHEN 1 THEN 'access.denied' WHEN 2 THEN 'mode.flip' ELSE 'login' END, \
           'console', CASE i % 9 WHEN 0 THEN 'failed' WHEN 1 THEN 'denied' ELSE 'ok' END, '10.0.' || (i % 200) || '.7', NULL \
         FROM c",
    )
    .bind(now - year)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 199999) \
         INSERT INTO console_login_attempts (ts_ms, username, address, ok) \
         SELECT ?1 + i * 38880, CASE i % 3 WHEN 0 THEN 'alice' ELSE 'mallory' || (i % 50) END, '10.1.' || (i % 250) || '.9', i % 3 = 0 \
         FROM c",
    )
    .bind(now - 90 * 24 * 3_600_000)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    println!("  seeded readiness, audit and sign-in history ({:.0} s)", t0.elapsed().as_secs_f64());
}

/// 300 sessions of the bench user (most of them ended), so the account and users pages list
/// a long-serving admin's history.
async fn seed_sessions(store: &Store, user_id: i64) {
    let Store::Sqlite(pool) = store else { panic!("the benchmark seeds SQLite") };
    let now = genset::record::now_ms();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 299) \
         INSERT INTO console_sessions (id_hash, user_id, created_ms, last_seen_ms, address, user_agent, revoked_ms) \
         SELECT printf('%064x', ?1 * 1000 + i), ?1, ?2 - i * 3600000, ?2 - i * 3600000 + 600000, '10.2.0.' || (i % 250), \
           'Mozilla/5.0 (X11; Linux x86_64) bench', CASE WHEN i % 10 = 0 THEN NULL ELSE ?2 - i * 3600000 + 900000 END \
         FROM c",
    )
    .bind(user_id)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
}

struct Http {
    c: reqwest::Client,
    base: String,
    cookie: String,
}

impl Http {
    async fn get(&self, path: &str) -> (u16, usize) {
        let r = self.c.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        let s = r.status().as_u16();
        let b = r.bytes().await.unwrap();
        (s, b.len())
    }
}

fn csrf_of(body: &str) -> String {
    let needle = "name=\"csrf\" value=\"";
    let i = body.find(needle).unwrap() + needle.len();
    body[i..i + body[i..].find('"').unwrap()].to_string()
}

#[actix_web::main]
async fn main() {
    genset::install_crypto_provider();
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let db_path = a.db.clone().unwrap_or_else(|| tmp.path().join("bench.db"));
    let url = format!("sqlite://{}", db_path.display());
    println!("# console benchmark: {} exchanges in {}", a.rows, db_path.display());

    let store = Store::open(&url, 4).await.unwrap();
    let have = db::max_exchange_id(&store).await.unwrap();
    if have < a.rows {
        println!("seeding {} rows over {} days…", a.rows - have, a.days);
        let t = Instant::now();
        seed(&store, have, a.rows, a.days).await;
        println!("seeded in {:.1} s", t.elapsed().as_secs_f64());
        let Store::Sqlite(pool) = &store else { unreachable!() };
        sqlx::query("PRAGMA analysis_limit = 1000").execute(pool).await.unwrap();
        sqlx::query("ANALYZE").execute(pool).await.unwrap();
    }
    let Store::Sqlite(pool) = &store else { unreachable!() };
    let readiness_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readiness").fetch_one(pool).await.unwrap();
    if readiness_rows == 0 {
        seed_console(&store).await;
    }
    let t = Instant::now();
    let folded = rollup::catch_up(&store, genset::record::now_ms()).await.unwrap();
    println!("rollup: folded {folded} exchanges in {:.1} s", t.elapsed().as_secs_f64());
    store.close().await;

    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\
         [store]\nurl = \"{url}\"\n\
         [[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[use_cases]]\nname = \"support\"\n[[use_cases]]\nname = \"invoices\"\n[[use_cases]]\nname = \"summaries\"\n[[use_cases]]\nname = \"contracts\"\n",
        dir.path().join("admin.token").display()
    );
    let cfg = genset::config::Config::from_toml(&toml, std::path::Path::new("bench.toml")).unwrap();
    let console = Console::new(Options::default(), Clock::system(), Some(url.clone()));
    let running = genset::daemon::start_with(cfg, genset_admin_ui::extensions_for(console)).await.unwrap();
    let base = format!("http://{}", running.admin_addr);
    let user = format!("bench-{}", std::process::id());
    let hash = password::hash_blocking("bench password 123", password::Params { m_kib: 256, t: 1, p: 1 }).unwrap();
    let user_id = db::create_user(&running.store, &user, &hash, "admin", genset::record::now_ms()).await.unwrap().unwrap();
    seed_sessions(&running.store, user_id).await;

    let c = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = c.get(format!("{base}/login")).send().await.unwrap();
    let pre = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let csrf = csrf_of(&login.text().await.unwrap());
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", &pre)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("csrf", csrf.as_str()),
                ("username", user.as_str()),
                ("password", "bench password 123"),
                ("next", ""),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("genset_session="))
        .unwrap();
    let http = Http { c, base, cookie };

    let max = db::max_exchange_id(&running.store).await.unwrap();
    let now = genset::record::now_ms();
    let day_ago = genset_admin_ui::text::iso(now - 24 * 3_600_000)[..16].to_string();
    let week_ago = genset_admin_ui::text::iso(now - 7 * 24 * 3_600_000)[..16].to_string();
    let week_ago_plus_hour = genset_admin_ui::text::iso(now - 7 * 24 * 3_600_000 + 3_600_000)[..16].to_string();
    let pages: Vec<(String, String)> = vec![
        ("overview".into(), "/".into()),
        ("use cases".into(), "/use-cases".into()),
        ("use case".into(), "/use-cases/support".into()),
        ("traffic".into(), "/traffic".into()),
        ("traffic, deep page (keyset)".into(), format!("/traffic?before={}_{}", now - 15 * 24 * 3_600_000, max / 2)),
        ("traffic, use case, deep page".into(), format!("/traffic?use_case=contracts&before={}_{}", now - 20 * 24 * 3_600_000, max)),
        ("traffic by use case".into(), "/traffic?use_case=invoices".into()),
        ("traffic by served-by".into(), "/traffic?served_by=local%3Agemma".into()),
        ("traffic by status".into(), "/traffic?status=500".into()),
        ("traffic, rare status".into(), "/traffic?status=404".into()),
        ("traffic, use case + status".into(), "/traffic?use_case=contracts&status=429".into()),
        ("traffic, last 24 h".into(), format!("/traffic?from={day_ago}")),
        ("traffic, one hour a week ago".into(), format!("/traffic?from={week_ago}&to={week_ago_plus_hour}")),
        ("traffic, use case, last 7 days".into(), format!("/traffic?use_case=summaries&from={week_ago}")),
        ("traffic, status, hour a week ago".into(), format!("/traffic?status=500&from={week_ago}&to={week_ago_plus_hour}")),
        ("exchange detail".into(), format!("/traffic/{}", max / 3)),
        ("models".into(), "/models".into()),
        ("failover".into(), "/failover".into()),
        ("keys".into(), "/keys".into()),
        ("users".into(), "/users".into()),
        ("audit log".into(), "/audit".into()),
        ("audit log by action".into(), "/audit?action=mode.flip".into()),
        ("audit log by actor".into(), "/audit?actor=bob".into()),
        ("account (own sessions)".into(), "/account".into()),
    ];
    println!("\n| page | path | median ms | p90 ms | max ms | bytes |\n|---|---|---:|---:|---:|---:|");
    for (name, path) in &pages {
        for _ in 0..2 {
            let (s, _) = http.get(path).await;
            assert_eq!(s, 200, "{path}");
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..a.iterations {
            let t = Instant::now();
            let (_, n) = http.get(path).await;
            times.push(t.elapsed());
            bytes = n;
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        println!("| {name} | `{path}` | {:.1} | {:.1} | {:.1} | {bytes} |", ms(p(0.5)), ms(p(0.9)), ms(*times.last().unwrap()));
    }
    running.shutdown().await;
}
