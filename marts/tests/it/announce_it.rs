//! Publication announcements on the catalog's real Postgres (the local stack's): what the marts
//! send after each publish wakes an API listening for the same namespace, and only that one.
//! Fails — never skips — when Postgres is not running: run `make test`.

use std::time::Duration;

use tributary_common::LakeSettings;
use tributary_raw::commits::{Announcer, listen_for_publications};

#[tokio::test]
async fn a_publication_announced_wakes_the_listeners_of_its_namespace_only() {
    let suffix = std::process::id();
    let ours = LakeSettings {
        namespace: format!("it_announce_{suffix}"),
        ..LakeSettings::default()
    };
    let theirs = LakeSettings {
        namespace: format!("it_announce_other_{suffix}"),
        ..LakeSettings::default()
    };
    let (ours_woken, ours_task) = listen_for_publications(&ours)
        .await
        .expect("the local catalog is on Postgres");
    let (theirs_woken, theirs_task) = listen_for_publications(&theirs)
        .await
        .expect("the local catalog is on Postgres");

    Announcer::for_publications(&ours)
        .expect("the local catalog is on Postgres")
        .publication()
        .await;

    tokio::time::timeout(Duration::from_secs(10), ours_woken.notified())
        .await
        .unwrap_or_else(|_| {
            panic!("no announcement heard within 10 s: run `make test` (or `dev/up`) first")
        });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), theirs_woken.notified())
            .await
            .is_err(),
        "another namespace's listener was woken"
    );
    ours_task.abort();
    theirs_task.abort();
}
