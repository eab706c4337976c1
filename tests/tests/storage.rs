//! The embedded object store opens with no published secret: its account is generated per store, and a
//! request signed with any constant account is refused. Against the real embedded s3s endpoint (SigV4).

#![allow(clippy::unwrap_used)]

use ehealth_infra::{storage::Storage, Config};
use ehealth_tests::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_with_a_constant_account_is_refused_and_the_generated_one_is_taken() {
    let app = TestApp::spawn_without_worker().await;
    let bucket = app.storage.files_bucket.clone();
    assert_eq!(
        app.storage.head(&bucket, "nothing-here").await.unwrap(),
        None,
        "the store's own account is taken"
    );
    for (id, secret) in [
        ("ehealth", "ehealth-local-secret"),
        ("minioadmin", "minioadmin"),
        (
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ] {
        let config = Config {
            s3_access_key_id: Some(id.to_owned()),
            s3_secret_access_key: Some(secret.to_owned()),
            ..app.config.clone()
        };
        let stranger = Storage::new(&config);
        assert!(
            stranger.head(&bucket, "nothing-here").await.is_err(),
            "{id} is refused"
        );
    }
    let (configured_id, _) = app.config.s3_static_keys().unwrap();
    assert!(
        configured_id.starts_with("EH") && configured_id.len() == 20,
        "{configured_id}"
    );
}
