use std::time::Duration;

use super::*;

fn blob(text: &str) -> Blob {
    Blob::from_content(text.as_bytes()).expect("blob")
}

#[test]
fn stored_blobs_survive_a_reopen_and_come_back_byte_identical() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (blob("kind: A"), blob("kind: B"));
    {
        let store = ContentStore::open(dir.path()).expect("open");
        assert_eq!(
            store.put(&[a.clone(), b.clone(), a.clone()]).expect("put"),
            2
        );
        assert_eq!(
            store.put(std::slice::from_ref(&a)).expect("put"),
            0,
            "held already"
        );
    }
    let store = ContentStore::open(dir.path()).expect("reopen");
    assert_eq!(store.len(), 2);
    assert!(store.holds(&a.hash) && store.holds(&b.hash));
    assert_eq!(store.get(&a.hash).expect("get"), Some(a.clone()));
    assert_eq!(store.get(&b.hash).expect("get"), Some(b));
    assert_eq!(store.get(&blob("kind: C").hash).expect("get"), None);
    assert_eq!(
        store
            .get(&a.hash)
            .expect("get")
            .expect("held")
            .content()
            .expect("content"),
        b"kind: A"
    );
}

#[test]
fn collection_keeps_live_and_young_blobs() {
    let dir = tempfile::tempdir().expect("dir");
    let store = ContentStore::open(dir.path()).expect("open");
    let (live, dead) = (blob("live"), blob("dead"));
    store.put(&[live.clone(), dead.clone()]).expect("put");
    let is_live = |h: &BlobHash| *h == live.hash;
    let all_dead = |candidates: &[BlobHash]| candidates.to_vec();
    // Young: an unreferenced blob may belong to a proposal in flight.
    assert_eq!(
        store
            .collect(&is_live, &all_dead, GC_GRACE)
            .expect("collect"),
        0
    );
    // Referenced by the time it would go: kept.
    let referenced_meanwhile = |_: &[BlobHash]| Vec::new();
    assert_eq!(
        store
            .collect(&is_live, &referenced_meanwhile, Duration::ZERO)
            .expect("collect"),
        0
    );
    assert_eq!(
        store
            .collect(&is_live, &all_dead, Duration::ZERO)
            .expect("collect"),
        1
    );
    assert!(store.holds(&live.hash) && !store.holds(&dead.hash));
    drop(store);
    let store = ContentStore::open(dir.path()).expect("reopen");
    assert_eq!(store.len(), 1, "the deletion is durable");
}

#[test]
fn storing_a_held_blob_again_renews_it_so_it_is_not_collected() {
    let dir = tempfile::tempdir().expect("dir");
    let store = ContentStore::open(dir.path()).expect("open");
    let old = blob("garbage once, pushed again");
    store.put(std::slice::from_ref(&old)).expect("put");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(store.put(std::slice::from_ref(&old)).expect("again"), 0);
    let nothing_live = |_: &BlobHash| false;
    let all_dead = |candidates: &[BlobHash]| candidates.to_vec();
    assert_eq!(
        store
            .collect(&nothing_live, &all_dead, Duration::from_millis(20))
            .expect("collect"),
        0,
        "stored again 0 ms ago, within the grace"
    );
    assert!(store.holds(&old.hash));
}

#[test]
fn a_claimed_size_past_the_bound_or_unlike_the_content_is_refused() {
    let mut huge = blob("small");
    huge.size = MAX_BLOB_BYTES + 1;
    assert!(matches!(check(&huge), Err(ContentError::Corrupt { .. })));
    let mut short = blob("twelve bytes");
    short.size -= 1;
    assert!(check(&short).is_err(), "decompresses to more than claimed");
    let mut long = blob("twelve bytes");
    long.size += 5;
    assert!(check(&long).is_err(), "decompresses to less than claimed");
}

#[test]
fn bytes_that_do_not_hash_to_their_name_are_refused() {
    let mut forged = blob("apiVersion: v1");
    forged.compressed = blob("something else").compressed;
    let error = check(&forged).expect_err("refused");
    assert!(matches!(error, ContentError::Corrupt { .. }), "{error}");
    assert!(check(&blob("fine")).is_ok());
}

#[test]
fn batches_stay_under_the_byte_budget_and_keep_every_blob_once() {
    let big = Blob {
        hash: BlobHash::of(b"big"),
        size: 1,
        compressed: vec![0; BATCH_BYTES / 3],
    };
    let blobs: Vec<Blob> = (0..10).map(|_| big.clone()).collect();
    let batches = batches(&blobs);
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 10);
    assert!(
        batches.iter().all(|b| b.len() <= 3),
        "{:?}",
        batches.iter().map(|b| b.len()).collect::<Vec<_>>()
    );
    let huge = Blob {
        compressed: vec![0; BATCH_BYTES * 2],
        ..big
    };
    assert_eq!(
        super::batches(std::slice::from_ref(&huge)).len(),
        1,
        "a large blob goes alone"
    );
}

#[test]
fn a_second_process_on_the_same_store_is_told_what_to_do() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = ContentStore::open(dir.path()).expect("open");
    let Err(error) = ContentStore::open(dir.path()) else {
        panic!("a second open succeeded");
    };
    assert!(error.to_string().contains("--data-dir"), "{error}");
}
