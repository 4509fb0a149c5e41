//! The rollup under a moving fold: a page reads the folded minutes and then the unfolded
//! tail while the folder moves exchanges from one to the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use genset::store::Store;
use genset_admin_ui::rollup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_never_misses_exchanges_a_fold_is_moving() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/genset.db", dir.path().display()), 4).await.unwrap();
    let now = genset::record::now_ms();
    let since = now - 2 * 3_600_000;
    let (mut seeded, mut reads) = (0_i64, 0);
    for round in 0..40 {
        common::seed_exchanges(&store, 50).await;
        seeded += 50;
        let folder = tokio::spawn({
            let store = store.clone();
            async move { rollup::step(&store, now).await.unwrap() }
        });
        // Read while the fold runs (and once more after it committed).
        loop {
            let done = folder.is_finished();
            let totals = rollup::totals(&store, since, None).await.unwrap();
            let minutes = rollup::minutes(&store, since, None).await.unwrap();
            reads += 1;
            assert_eq!(totals.iter().map(|r| r.requests).sum::<i64>(), seeded, "totals, round {round}");
            assert_eq!(minutes.iter().map(|r| r.requests).sum::<i64>(), seeded, "minutes, round {round}");
            if done {
                break;
            }
        }
        assert_eq!(folder.await.unwrap(), 50);
    }
    // Everything ended up folded.
    assert_eq!(rollup::tail(&store).await.unwrap().len(), 0);
    eprintln!("{reads} reads over 40 folds");
}
