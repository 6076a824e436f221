//! The store conformance suite: what every [`Store`] backend must do, as async checks that
//! panic on the first difference. `control/tests/store_conformance.rs` runs every case in
//! [`CASES`] against the embedded store and against a real etcd, each on a fresh store.
//!
//! The cases assert only what etcd and the embedded store do identically: revisions are
//! compared with each other (never with absolute numbers), every wait is bounded, and lease
//! TTLs are short (1 s; etcd may round a TTL up to its minimum).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use super::{KeyValue, RangeOptions, Store, StoreError, WatchEvent, WatchStream};

/// The longest any case waits for one thing (an event, a lease to expire).
pub const WAIT: Duration = Duration::from_secs(10);

/// One conformance case: a name that reads as a sentence and the check itself.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name, as its test is named.
    pub name: &'static str,
    /// Runs the case against a fresh store.
    pub run: for<'a> fn(&'a dyn Store) -> BoxFuture<'a, ()>,
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        /// Every case of the suite.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($case), run: |store| Box::pin($case(store)) },)*
        ];
    };
}

cases!(
    create_then_get_returns_the_value_and_its_revisions,
    creating_an_existing_key_fails_with_already_exists,
    update_with_the_expected_revision_replaces_the_value,
    update_with_a_stale_revision_fails_with_conflict,
    update_without_an_expected_revision_overwrites,
    missing_keys_report_not_found,
    delete_returns_the_previous_value_and_the_new_revision,
    every_write_advances_the_revision_by_exactly_one,
    range_returns_the_keys_under_a_prefix_sorted_by_key,
    paging_with_limit_and_continue_reads_one_snapshot,
    range_at_a_past_revision_returns_the_state_then,
    reads_before_the_compaction_point_fail_with_compacted,
    watch_from_a_revision_replays_later_events_in_order,
    watch_sees_only_its_prefix,
    watch_moves_from_history_to_live_events_without_gaps_or_duplicates,
    watch_from_a_compacted_revision_fails_with_compacted,
    lease_expiry_deletes_attached_keys_and_emits_delete_events,
    revoking_a_lease_deletes_its_keys_and_ends_the_lease,
    keep_alive_holds_a_lease_open,
    invalid_arguments_are_rejected,
);

fn val(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn at(revision: i64) -> RangeOptions {
    RangeOptions {
        at_revision: Some(revision),
        ..RangeOptions::default()
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// The next event of `watch`, within [`WAIT`].
async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("the watch failed: {e:?}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

fn expect_put(event: WatchEvent) -> (KeyValue, Option<KeyValue>) {
    match event {
        WatchEvent::Put { kv, prev } => (kv, prev),
        other => panic!("expected a put, got {other:?}"),
    }
}

fn expect_delete(event: WatchEvent) -> (String, i64, Option<KeyValue>) {
    match event {
        WatchEvent::Delete {
            key,
            revision,
            prev,
        } => (key, revision, prev),
        other => panic!("expected a delete, got {other:?}"),
    }
}

/// Polls `condition` every 50 ms until it holds, for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(WAIT, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within {WAIT:?}");
}

/// A created key reads back with its value, and both its revisions are the create's.
pub async fn create_then_get_returns_the_value_and_its_revisions(store: &dyn Store) {
    let key = "/registry/pods/default/web-0";
    let rev = store.create(key, val("v1"), None).await.unwrap();
    let kv = store.get(key).await.unwrap().expect("the created key");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, val("v1"));
    assert_eq!(kv.create_revision, rev);
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(kv.lease, None);
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

/// `create` is create-if-absent: a second create fails and changes nothing.
pub async fn creating_an_existing_key_fails_with_already_exists(store: &dyn Store) {
    let key = "/registry/pods/default/web-0";
    let rev = store.create(key, val("v1"), None).await.unwrap();
    match store.create(key, val("v2"), None).await {
        Err(StoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!((kv.value, kv.mod_revision), (val("v1"), rev));
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

/// A compare-and-swap on the current `mod_revision` succeeds, keeping `create_revision`.
pub async fn update_with_the_expected_revision_replaces_the_value(store: &dyn Store) {
    let key = "/registry/pods/default/web-0";
    let created = store.create(key, val("v1"), None).await.unwrap();
    let updated = store.update(key, val("v2"), Some(created)).await.unwrap();
    assert_eq!(updated, created + 1);
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, val("v2"));
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, updated);
}

/// A compare-and-swap on an old `mod_revision` fails with the current one and writes nothing.
pub async fn update_with_a_stale_revision_fails_with_conflict(store: &dyn Store) {
    let key = "/registry/pods/default/web-0";
    let created = store.create(key, val("v1"), None).await.unwrap();
    let updated = store.update(key, val("v2"), Some(created)).await.unwrap();
    match store.update(key, val("v3"), Some(created)).await {
        Err(StoreError::Conflict {
            key: k,
            expected,
            actual,
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, created);
            assert_eq!(actual, updated);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap().unwrap().value, val("v2"));
    assert_eq!(store.current_revision().await.unwrap(), updated);
}

/// An update without an expected revision replaces whatever is there.
pub async fn update_without_an_expected_revision_overwrites(store: &dyn Store) {
    let key = "/registry/configmaps/default/settings";
    let created = store.create(key, val("v1"), None).await.unwrap();
    store.update(key, val("v2"), None).await.unwrap();
    let last = store.update(key, val("v3"), None).await.unwrap();
    assert_eq!(last, created + 2);
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (val("v3"), created, last)
    );
}

/// Reading, updating or deleting an absent key reports it, and writes nothing.
pub async fn missing_keys_report_not_found(store: &dyn Store) {
    let key = "/registry/pods/default/ghost";
    let before = store.current_revision().await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
    for expected in [None, Some(before)] {
        match store.update(key, val("x"), expected).await {
            Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
            other => panic!("update with {expected:?}: expected NotFound, got {other:?}"),
        }
        match store.delete(key, expected).await {
            Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
            other => panic!("delete with {expected:?}: expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
}

/// `delete` returns the key as it was and the delete's revision; a stale delete conflicts.
pub async fn delete_returns_the_previous_value_and_the_new_revision(store: &dyn Store) {
    let key = "/registry/pods/default/web-0";
    let created = store.create(key, val("v1"), None).await.unwrap();
    let updated = store.update(key, val("v2"), None).await.unwrap();
    match store.delete(key, Some(created)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (created, updated)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = store.delete(key, Some(updated)).await.unwrap();
    assert_eq!(deleted.revision, updated + 1);
    assert_eq!(deleted.prev.key, key);
    assert_eq!(deleted.prev.value, val("v2"));
    assert_eq!(deleted.prev.create_revision, created);
    assert_eq!(deleted.prev.mod_revision, updated);
    assert_eq!(store.get(key).await.unwrap(), None);

    // A key created again starts a new life.
    let recreated = store.create(key, val("v3"), None).await.unwrap();
    assert_eq!(recreated, deleted.revision + 1);
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.create_revision, recreated);
    // And a delete without a precondition deletes whatever is there.
    let gone = store.delete(key, None).await.unwrap();
    assert_eq!(gone.prev.value, val("v3"));
}

/// Each successful write advances the one global revision by exactly one; failed writes and
/// reads do not move it.
pub async fn every_write_advances_the_revision_by_exactly_one(store: &dyn Store) {
    let mut revision = store.current_revision().await.unwrap();
    let mut expect_next = |got: i64| {
        assert_eq!(
            got,
            revision + 1,
            "a write must advance the revision by one"
        );
        revision = got;
    };
    expect_next(store.create("/a/1", val("x"), None).await.unwrap());
    expect_next(store.create("/b/1", val("x"), None).await.unwrap());
    expect_next(store.update("/a/1", val("y"), None).await.unwrap());
    assert!(store.create("/a/1", val("z"), None).await.is_err());
    assert!(store.update("/a/1", val("z"), Some(1)).await.is_err());
    assert!(store.delete("/a/missing", None).await.is_err());
    store.get("/a/1").await.unwrap();
    store.range("/", RangeOptions::default()).await.unwrap();
    expect_next(store.delete("/b/1", None).await.unwrap().revision);
    expect_next(store.create("/b/1", val("x"), None).await.unwrap());
    assert_eq!(store.current_revision().await.unwrap(), revision);
}

/// `range` returns exactly the keys under the prefix, sorted by key, at the current revision.
pub async fn range_returns_the_keys_under_a_prefix_sorted_by_key(store: &dyn Store) {
    let all = [
        "/registry/pods/ns2/b",
        "/registry/pods/ns1/c",
        "/registry/podsecurity/x",
        "/registry/pods/ns1/a",
        "/registry/services/ns1/a",
        "/registry/pods/ns10/a",
        "/registry/pods/ns1/b",
    ];
    let mut last = 0;
    for key in all {
        last = store.create(key, Bytes::from(key), None).await.unwrap();
    }

    let ns1 = store
        .range("/registry/pods/ns1/", RangeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        keys(&ns1.kvs),
        [
            "/registry/pods/ns1/a",
            "/registry/pods/ns1/b",
            "/registry/pods/ns1/c"
        ]
    );
    assert_eq!(ns1.revision, last);
    assert!(!ns1.more);
    assert_eq!(ns1.continue_key(), None);
    for kv in &ns1.kvs {
        assert_eq!(kv.value, Bytes::from(kv.key.clone()));
    }

    let pods = store
        .range("/registry/pods/", RangeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        keys(&pods.kvs),
        [
            "/registry/pods/ns1/a",
            "/registry/pods/ns1/b",
            "/registry/pods/ns1/c",
            "/registry/pods/ns10/a",
            "/registry/pods/ns2/b",
        ]
    );

    let everything = store.range("", RangeOptions::default()).await.unwrap();
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    assert_eq!(keys(&everything.kvs), sorted);

    let none = store
        .range("/registry/nothing/", RangeOptions::default())
        .await
        .unwrap();
    assert!(none.kvs.is_empty() && !none.more);
}

/// Paging with `limit` and the continue key, at the first page's revision, sees one
/// snapshot even while keys are written between pages.
pub async fn paging_with_limit_and_continue_reads_one_snapshot(store: &dyn Store) {
    for i in 0..5 {
        let key = format!("/registry/pods/default/p{i}");
        store.create(&key, val("x"), None).await.unwrap();
    }
    let prefix = "/registry/pods/default/";
    let first = store
        .range(
            prefix,
            RangeOptions {
                limit: Some(2),
                ..RangeOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&first.kvs),
        [format!("{prefix}p0"), format!("{prefix}p1")]
    );
    assert!(first.more);
    let snapshot = first.revision;

    // Writes between pages: a key that would sort into a later page, a deleted key.
    store
        .create(&format!("{prefix}p9"), val("x"), None)
        .await
        .unwrap();
    store.delete(&format!("{prefix}p3"), None).await.unwrap();

    let mut seen = keys(&first.kvs)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut continue_key = first.continue_key().map(str::to_owned);
    let mut pages = 1;
    while let Some(after) = continue_key {
        let page = store
            .range(
                prefix,
                RangeOptions {
                    at_revision: Some(snapshot),
                    limit: Some(2),
                    start_after: Some(after),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, snapshot);
        assert!(page.kvs.len() <= 2);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        continue_key = page.continue_key().map(str::to_owned);
        pages += 1;
        assert!(pages <= 5, "paging does not end");
    }
    let expected: Vec<String> = (0..5).map(|i| format!("{prefix}p{i}")).collect();
    assert_eq!(
        seen, expected,
        "the pages read the snapshot of the first page"
    );

    // The latest state has both changes.
    let now = store.range(prefix, RangeOptions::default()).await.unwrap();
    assert_eq!(
        keys(&now.kvs),
        ["p0", "p1", "p2", "p4", "p9"].map(|k| format!("{prefix}{k}"))
    );
}

/// A read at a past revision returns the keys as they were then.
pub async fn range_at_a_past_revision_returns_the_state_then(store: &dyn Store) {
    let (a, b) = ("/registry/pods/ns/a", "/registry/pods/ns/b");
    let r1 = store.create(a, val("a1"), None).await.unwrap();
    let r2 = store.update(a, val("a2"), None).await.unwrap();
    let r3 = store.create(b, val("b1"), None).await.unwrap();
    let r4 = store.delete(a, None).await.unwrap().revision;
    let prefix = "/registry/pods/ns/";

    let then = store.range(prefix, at(r1)).await.unwrap();
    assert_eq!(then.revision, r1);
    assert_eq!(keys(&then.kvs), [a]);
    assert_eq!(then.kvs[0].value, val("a1"));
    assert_eq!(then.kvs[0].mod_revision, r1);

    let then = store.range(prefix, at(r2)).await.unwrap();
    assert_eq!(keys(&then.kvs), [a]);
    assert_eq!(
        (then.kvs[0].value.clone(), then.kvs[0].mod_revision),
        (val("a2"), r2)
    );
    assert_eq!(then.kvs[0].create_revision, r1);

    let then = store.range(prefix, at(r3)).await.unwrap();
    assert_eq!(keys(&then.kvs), [a, b]);

    let then = store.range(prefix, at(r4)).await.unwrap();
    assert_eq!(keys(&then.kvs), [b]);
    assert_eq!(then.revision, r4);

    // With a limit, at a past revision.
    let page = store
        .range(
            prefix,
            RangeOptions {
                at_revision: Some(r3),
                limit: Some(1),
                start_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&page.kvs), [a]);
    assert!(page.more);

    match store.range(prefix, at(r4 + 100)).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (r4 + 100, r4));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// After `compact(c)`, reads before `c` fail with `Compacted` and name `c`; reads at `c`
/// and later still work; compacting again at or below `c` does nothing.
pub async fn reads_before_the_compaction_point_fail_with_compacted(store: &dyn Store) {
    let key = "/registry/pods/ns/a";
    let r1 = store.create(key, val("v1"), None).await.unwrap();
    let r2 = store.update(key, val("v2"), None).await.unwrap();
    let r3 = store.update(key, val("v3"), None).await.unwrap();
    store.update(key, val("v4"), None).await.unwrap();
    store.compact(r3).await.unwrap();
    let before = store.current_revision().await.unwrap();

    for old in [r1, r2] {
        match store.range("/registry/", at(old)).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (old, r3)),
            other => panic!("range at {old}: expected Compacted, got {other:?}"),
        }
    }
    let then = store.range("/registry/", at(r3)).await.unwrap();
    assert_eq!(then.kvs[0].value, val("v3"));
    let now = store
        .range("/registry/", RangeOptions::default())
        .await
        .unwrap();
    assert_eq!(now.kvs[0].value, val("v4"));

    store.compact(r3).await.unwrap();
    store.compact(r2).await.unwrap();
    assert_eq!(
        store.current_revision().await.unwrap(),
        before,
        "compaction writes no revision"
    );
    match store.compact(before + 100).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, before + 100),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// A watch from revision `r` replays every later write under its prefix, in order, with the
/// previous values, then goes on with new writes.
pub async fn watch_from_a_revision_replays_later_events_in_order(store: &dyn Store) {
    let (a, b) = ("/registry/pods/ns/a", "/registry/pods/ns/b");
    let r1 = store.create(a, val("a1"), None).await.unwrap();
    let r2 = store.update(a, val("a2"), None).await.unwrap();
    let r3 = store.create(b, val("b1"), None).await.unwrap();
    let r4 = store.delete(a, None).await.unwrap().revision;

    // A client that listed at r1 watches from r1.
    let mut watch = store.watch("/registry/pods/", r1).await.unwrap();

    let (kv, prev) = expect_put(next_event(&mut watch).await);
    assert_eq!(
        (kv.key.as_str(), kv.value.clone(), kv.mod_revision),
        (a, val("a2"), r2)
    );
    assert_eq!(kv.create_revision, r1);
    let prev = prev.expect("an update's event carries the previous value");
    assert_eq!((prev.value, prev.mod_revision), (val("a1"), r1));

    let (kv, prev) = expect_put(next_event(&mut watch).await);
    assert_eq!(
        (kv.key.as_str(), kv.mod_revision, kv.create_revision),
        (b, r3, r3)
    );
    assert_eq!(prev, None, "a create has no previous value");

    let (key, revision, prev) = expect_delete(next_event(&mut watch).await);
    assert_eq!((key.as_str(), revision), (a, r4));
    let prev = prev.expect("a delete's event carries the deleted value");
    assert_eq!((prev.value, prev.mod_revision), (val("a2"), r2));

    // Then live events.
    let r5 = store.update(b, val("b2"), None).await.unwrap();
    let (kv, _) = expect_put(next_event(&mut watch).await);
    assert_eq!((kv.key.as_str(), kv.mod_revision), (b, r5));
}

/// A watch reports only keys under its prefix (a prefix is a string prefix: `/ns1/` does not
/// match `/ns10`).
pub async fn watch_sees_only_its_prefix(store: &dyn Store) {
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/pods/ns1/", from).await.unwrap();
    store
        .create("/registry/pods/ns10/a", val("x"), None)
        .await
        .unwrap();
    store
        .create("/registry/pods/ns2/a", val("x"), None)
        .await
        .unwrap();
    store
        .create("/registry/pods/ns1", val("x"), None)
        .await
        .unwrap();
    let mine = store
        .create("/registry/pods/ns1/a", val("x"), None)
        .await
        .unwrap();
    store
        .create("/registry/services/ns1/a", val("x"), None)
        .await
        .unwrap();
    let mine_too = store
        .update("/registry/pods/ns1/a", val("y"), None)
        .await
        .unwrap();

    let first = next_event(&mut watch).await;
    assert_eq!(
        (first.key(), first.revision()),
        ("/registry/pods/ns1/a", mine)
    );
    let second = next_event(&mut watch).await;
    assert_eq!(
        (second.key(), second.revision()),
        ("/registry/pods/ns1/a", mine_too)
    );
}

/// A watch that starts in the past replays history and then follows live writes made while
/// it replays: every revision exactly once, in order.
pub async fn watch_moves_from_history_to_live_events_without_gaps_or_duplicates(store: &dyn Store) {
    let from = store.current_revision().await.unwrap();
    for i in 0..20 {
        store
            .create(&format!("/registry/events/ns/e{i:02}"), val("x"), None)
            .await
            .unwrap();
    }
    let mut watch = store.watch("/registry/events/", from).await.unwrap();
    let writer = async {
        for i in 20..40 {
            store
                .create(&format!("/registry/events/ns/e{i:02}"), val("x"), None)
                .await
                .unwrap();
        }
    };
    let reader = async {
        let mut got = Vec::new();
        for _ in 0..40 {
            let event = next_event(&mut watch).await;
            got.push((event.key().to_owned(), event.revision()));
        }
        got
    };
    let ((), got) = futures::join!(writer, reader);
    let expected: Vec<(String, i64)> = (0..40)
        .map(|i| (format!("/registry/events/ns/e{i:02}"), from + 1 + i))
        .collect();
    assert_eq!(got, expected);
}

/// A watch from before the compaction point fails with `Compacted` naming that point; a watch
/// from the compaction point itself still replays what followed.
pub async fn watch_from_a_compacted_revision_fails_with_compacted(store: &dyn Store) {
    let key = "/registry/pods/ns/a";
    let r1 = store.create(key, val("v1"), None).await.unwrap();
    store.update(key, val("v2"), None).await.unwrap();
    store.update(key, val("v3"), None).await.unwrap();
    let r4 = store.update(key, val("v4"), None).await.unwrap();
    let r5 = store.update(key, val("v5"), None).await.unwrap();
    store.compact(r4).await.unwrap();

    match store.watch("/registry/", r1).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r1, r4)),
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }

    let mut watch = store.watch("/registry/", r4).await.unwrap();
    let (kv, prev) = expect_put(next_event(&mut watch).await);
    assert_eq!((kv.value, kv.mod_revision), (val("v5"), r5));
    assert_eq!(prev.map(|p| p.value), Some(val("v4")));
}

/// When a lease expires, its keys are deleted, each with a delete event; other keys stay.
pub async fn lease_expiry_deletes_attached_keys_and_emits_delete_events(store: &dyn Store) {
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/leases/", from).await.unwrap();
    let lease = store.grant_lease(1).await.unwrap();
    let held = ["/registry/leases/ns/a", "/registry/leases/ns/b"];
    for key in held {
        store.create(key, val("x"), Some(lease)).await.unwrap();
    }
    let free = "/registry/leases/ns/free";
    store.create(free, val("x"), None).await.unwrap();
    assert_eq!(
        store.get(held[0]).await.unwrap().unwrap().lease,
        Some(lease)
    );

    for _ in 0..3 {
        expect_put(next_event(&mut watch).await);
    }
    let mut deleted = BTreeSet::new();
    for _ in 0..2 {
        let (key, _, prev) = expect_delete(next_event(&mut watch).await);
        let prev = prev.expect("an expiry's delete carries the deleted value");
        assert_eq!(prev.lease, Some(lease));
        deleted.insert(key);
    }
    assert_eq!(deleted, held.map(str::to_owned).into_iter().collect());
    for key in held {
        assert_eq!(store.get(key).await.unwrap(), None);
    }
    assert!(store.get(free).await.unwrap().is_some());
    eventually("the expired lease disappears", || async {
        matches!(
            store.keep_alive(lease).await,
            Err(StoreError::LeaseNotFound { .. })
        )
    })
    .await;
}

/// Revoking a lease deletes its keys (also those updated since, which keep their lease) and
/// ends the lease.
pub async fn revoking_a_lease_deletes_its_keys_and_ends_the_lease(store: &dyn Store) {
    let lease = store.grant_lease(60).await.unwrap();
    let key = "/registry/masterleases/10.0.0.1";
    store.create(key, val("v1"), Some(lease)).await.unwrap();
    let updated = store.update(key, val("v2"), None).await.unwrap();
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.lease, Some(lease), "an update keeps the key's lease");

    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/masterleases/", from).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
    let (k, revision, prev) = expect_delete(next_event(&mut watch).await);
    assert_eq!(k, key);
    assert_eq!(revision, updated + 1);
    assert_eq!(prev.map(|p| p.value), Some(val("v2")));

    match store.revoke_lease(lease).await {
        Err(StoreError::LeaseNotFound { lease: l }) => assert_eq!(l, lease),
        other => panic!("revoking again: expected LeaseNotFound, got {other:?}"),
    }
    match store.keep_alive(lease).await {
        Err(StoreError::LeaseNotFound { .. }) => {}
        other => panic!("keep-alive: expected LeaseNotFound, got {other:?}"),
    }
    match store.create(key, val("v3"), Some(lease)).await {
        Err(StoreError::LeaseNotFound { .. }) => {}
        other => panic!("create with a revoked lease: expected LeaseNotFound, got {other:?}"),
    }
    // Revoking a lease without keys writes no revision.
    let empty = store.grant_lease(60).await.unwrap();
    let before = store.current_revision().await.unwrap();
    store.revoke_lease(empty).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), before);
}

/// Keep-alives hold a lease (and its keys) past its TTL; without them it expires.
pub async fn keep_alive_holds_a_lease_open(store: &dyn Store) {
    let lease = store.grant_lease(1).await.unwrap();
    let key = "/registry/leases/kube-node-lease/node-1";
    store.create(key, val("x"), Some(lease)).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        store.keep_alive(lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        store.get(key).await.unwrap().is_some(),
        "a kept-alive lease holds its key past its TTL"
    );
    eventually("the lease expires without keep-alives", || async {
        store.get(key).await.unwrap().is_none()
    })
    .await;
}

/// Empty keys and non-positive TTLs are refused before anything is written.
pub async fn invalid_arguments_are_rejected(store: &dyn Store) {
    let before = store.current_revision().await.unwrap();
    match store.create("", val("x"), None).await {
        Err(StoreError::InvalidArgument { .. }) => {}
        other => panic!("empty key: expected InvalidArgument, got {other:?}"),
    }
    match store.grant_lease(0).await {
        Err(StoreError::InvalidArgument { .. }) => {}
        other => panic!("zero TTL: expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
}
