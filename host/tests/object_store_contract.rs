//! The object store contract: each generic test runs against the SQLite store (`objects.db`)
//! and the in-memory one, so the mock host used by the policy tests behaves like the real store.

#[macro_use]
mod store_support;

use serde_json::json;
use session_archiver::store::memory::MemoryObjects;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{Meta, ObjectStore, StoreError};
use store_support::meta;
use tempfile::TempDir;

fn sqlite_objects() -> (TempDir, Box<dyn ObjectStore>) {
    let dir = TempDir::new().unwrap();
    let store = SqliteObjects::open(dir.path().join("objects.db")).unwrap();
    (dir, Box::new(store))
}

fn memory_objects() -> (TempDir, Box<dyn ObjectStore>) {
    (TempDir::new().unwrap(), Box::new(MemoryObjects::new()))
}

fn list_pages_through_2500_objects_in_id_order(s: &dyn ObjectStore) {
    // Inserted out of order: the listing must sort.
    for i in (0..2500).rev() {
        s.insert(&format!("obj-{i:05}"), &meta(json!({ "n": i })))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = s.list(after.as_deref(), 1000).unwrap();
        sizes.push(page.objects.len());
        for o in &page.objects {
            assert_eq!(o.version, 1);
            assert_eq!(o.meta["n"], json!(seen.len()));
            seen.push(o.id.clone());
        }
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "next is the last id of the page");
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    let expected: Vec<String> = (0..2500).map(|i| format!("obj-{i:05}")).collect();
    assert_eq!(seen, expected);

    // Limits: over 1000 is capped, 0 is refused.
    assert_eq!(s.list(None, 5000).unwrap().objects.len(), 1000);
    assert!(matches!(s.list(None, 0), Err(StoreError::Invalid(_))));
    // `after` need not be an existing id.
    let page = s.list(Some("obj-00041x"), 2).unwrap();
    let ids: Vec<_> = page.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["obj-00042", "obj-00043"]);
    assert_eq!(page.next.as_deref(), Some("obj-00043"));
    // After the last id: an empty last page.
    let page = s.list(Some("obj-02499"), 10).unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.next, None);
}

fn a_page_that_ends_exactly_at_the_last_object_has_no_next(s: &dyn ObjectStore) {
    for id in ["a", "b", "c", "d"] {
        s.insert(id, &Meta::new()).unwrap();
    }
    let p1 = s.list(None, 2).unwrap();
    assert_eq!(p1.next.as_deref(), Some("b"));
    let p2 = s.list(p1.next.as_deref(), 2).unwrap();
    let ids: Vec<_> = p2.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["c", "d"]);
    assert_eq!(p2.next, None);
    assert_eq!(s.list(None, 4).unwrap().next, None);
    assert_eq!(s.list(None, 3).unwrap().next.as_deref(), Some("c"));
}

fn an_empty_store_lists_one_empty_last_page(s: &dyn ObjectStore) {
    let page = s.list(None, 10).unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.next, None);
}

fn get_of_a_missing_object_is_not_found(s: &dyn ObjectStore) {
    assert!(matches!(s.get("nope"), Err(StoreError::NotFound(_))));
    s.insert("yes", &meta(json!({"view": "agent"}))).unwrap();
    let o = s.get("yes").unwrap();
    assert_eq!(o.id, "yes");
    assert_eq!(o.meta, meta(json!({"view": "agent"})));
    assert_eq!(o.version, 1);
}

fn insert_of_a_taken_id_is_already_exists(s: &dyn ObjectStore) {
    s.insert("x", &meta(json!({"a": 1}))).unwrap();
    assert!(matches!(
        s.insert("x", &meta(json!({"a": 2}))),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.get("x").unwrap().meta["a"], json!(1));
    assert!(matches!(
        s.insert("", &Meta::new()),
        Err(StoreError::Invalid(_))
    ));
}

fn update_meta_merges_removes_nulls_and_bumps_the_version(s: &dyn ObjectStore) {
    s.insert(
        "s1",
        &meta(json!({"view": "agent", "session:line_count": 3, "keep": {"nested": true}})),
    )
    .unwrap();
    let o = s
        .update_meta(
            "s1",
            &meta(
                json!({"session:line_count": 7, "session:archived_at": 123, "view": null,
                         "absent": null}),
            ),
        )
        .unwrap();
    let want = meta(json!({"session:line_count": 7, "session:archived_at": 123,
                           "keep": {"nested": true}}));
    assert_eq!(o.meta, want);
    assert_eq!(o.version, 2);
    assert_eq!(
        s.get("s1").unwrap(),
        o,
        "the update is stored, not just returned"
    );
    let o = s.update_meta("s1", &Meta::new()).unwrap();
    assert_eq!(o.version, 3, "even an empty patch bumps the version");
    assert_eq!(o.meta, want);
    assert!(matches!(
        s.update_meta("missing", &Meta::new()),
        Err(StoreError::NotFound(_))
    ));
}

fn concurrent_meta_updates_lose_nothing(s: &dyn ObjectStore) {
    s.insert("hot", &Meta::new()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..25 {
                    s.update_meta("hot", &meta(json!({ format!("k{t}-{i}"): i })))
                        .unwrap();
                }
            });
        }
    });
    let o = s.get("hot").unwrap();
    assert_eq!(o.meta.len(), 100);
    assert_eq!(o.version, 101);
}

fn update_meta_if_writes_only_at_the_version_read(s: &dyn ObjectStore) {
    let read = s.insert("s1", &meta(json!({"a": 1}))).unwrap();
    // Someone else writes in between.
    let theirs = s.update_meta("s1", &meta(json!({"b": 2}))).unwrap();
    assert!(matches!(
        s.update_meta_if("s1", &meta(json!({"a": null, "c": 3})), read.version),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get("s1").unwrap(),
        theirs,
        "nothing changed on a conflict"
    );
    let o = s
        .update_meta_if("s1", &meta(json!({"a": null, "c": 3})), theirs.version)
        .unwrap();
    assert_eq!(o.meta, meta(json!({"b": 2, "c": 3})));
    assert_eq!(o.version, theirs.version + 1);
    assert_eq!(s.get("s1").unwrap(), o);
    assert!(matches!(
        s.update_meta_if("missing", &Meta::new(), 1),
        Err(StoreError::NotFound(_))
    ));
}

fn concurrent_conditional_updates_let_exactly_one_writer_win_each_version(s: &dyn ObjectStore) {
    s.insert("hot", &Meta::new()).unwrap();
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let wins = &wins;
            scope.spawn(move || {
                for i in 0..25 {
                    let seen = s.get("hot").unwrap().version;
                    match s.update_meta_if("hot", &meta(json!({ format!("k{t}-{i}"): i })), seen) {
                        Ok(o) => {
                            assert_eq!(o.version, seen + 1);
                            wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let o = s.get("hot").unwrap();
    let wins = wins.into_inner();
    assert!(wins >= 1);
    assert_eq!(o.meta.len(), wins, "every win stored, no loser's key");
    assert_eq!(o.version, 1 + wins as u64);
}

contract!(
    sqlite_objects_contract,
    sqlite_objects,
    [
        list_pages_through_2500_objects_in_id_order,
        a_page_that_ends_exactly_at_the_last_object_has_no_next,
        an_empty_store_lists_one_empty_last_page,
        get_of_a_missing_object_is_not_found,
        insert_of_a_taken_id_is_already_exists,
        update_meta_merges_removes_nulls_and_bumps_the_version,
        concurrent_meta_updates_lose_nothing,
        update_meta_if_writes_only_at_the_version_read,
        concurrent_conditional_updates_let_exactly_one_writer_win_each_version,
    ]
);
contract!(
    memory_objects_contract,
    memory_objects,
    [
        list_pages_through_2500_objects_in_id_order,
        a_page_that_ends_exactly_at_the_last_object_has_no_next,
        an_empty_store_lists_one_empty_last_page,
        get_of_a_missing_object_is_not_found,
        insert_of_a_taken_id_is_already_exists,
        update_meta_merges_removes_nulls_and_bumps_the_version,
        concurrent_meta_updates_lose_nothing,
        update_meta_if_writes_only_at_the_version_read,
        concurrent_conditional_updates_let_exactly_one_writer_win_each_version,
    ]
);
