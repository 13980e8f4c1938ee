//! Snapshot downloads against a real HTTP server: a picture's body holds a download slot
//! for as long as its bytes live, error answers take none, and no connection is kept
//! between pictures.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::http::{self, Response};
use crate::support::images;
use snapmail::event::SnapshotSource;
use snapmail::snapshot::fetch::Fetcher;
use snapmail::snapshot::http::FetchError;
use tokio::sync::Semaphore;

fn fetcher(slots: &Arc<Semaphore>) -> Fetcher {
    let config = snapmail::config::load_from(None, Some(HashMap::new())).expect("defaults");
    let settings = snapmail::snapshot::Settings::from_config(&config, &config.resolved_cameras())
        .expect("default snapshot settings");
    Fetcher::new(&settings, slots.clone()).expect("http client")
}

#[tokio::test]
async fn a_downloaded_picture_holds_its_slot_until_its_bytes_are_dropped() {
    let jpeg = images::camera_jpeg(640, 360, 85);
    let server = http::start(move |req: &http::Request| {
        if req.path_only() == "/missing.jpg" {
            Response::status(404, "no such picture")
        } else {
            Response::jpeg(jpeg.clone())
        }
    })
    .await;
    let slots = Arc::new(Semaphore::new(2));
    let fetcher = fetcher(&slots);
    let source = |path: &str| SnapshotSource::Url {
        url: format!("{}{path}", server.url()),
        key: "sources[0].allowed_hosts".into(),
    };

    let first = fetcher.fetch(&source("/a.jpg")).await.expect("picture");
    assert!(first.starts_with(&[0xFF, 0xD8]));
    assert_eq!(slots.available_permits(), 1, "the body holds one slot");
    // A clone is the same bytes: still one slot, released with the last reference.
    let clone = first.clone();
    drop(first);
    assert_eq!(slots.available_permits(), 1);
    drop(clone);
    assert_eq!(
        slots.available_permits(),
        2,
        "dropping the bytes frees the slot"
    );

    let err = fetcher.fetch(&source("/missing.jpg")).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { ref body, .. } if body.contains("no such picture")),
        "{err}"
    );
    assert_eq!(
        slots.available_permits(),
        2,
        "an error answer takes no slot"
    );

    // With every slot held, the next picture waits for one; it completes once a slot frees.
    let (a, b) = (
        fetcher.fetch(&source("/a.jpg")).await.unwrap(),
        fetcher.fetch(&source("/b.jpg")).await.unwrap(),
    );
    assert_eq!(slots.available_permits(), 0);
    let waiting = tokio::spawn({
        let fetcher = fetcher.clone();
        let url = source("/c.jpg");
        async move { fetcher.fetch(&url).await.map(|b| b.len()) }
    });
    drop(a);
    let len = waiting.await.unwrap().expect("picture after a slot freed");
    assert!(len > 0);
    drop(b);
    assert_eq!(slots.available_permits(), 2);
}

/// A kept-alive connection would keep hyper's read buffer, grown to the size of a picture,
/// for as long as it sat in the pool: one per camera fetched at once. Each picture gets a
/// connection of its own instead, closed once its body is read.
#[tokio::test]
async fn no_connection_is_kept_between_pictures() {
    let jpeg = images::camera_jpeg(640, 360, 85);
    let server = http::start(move |_: &http::Request| Response::jpeg(jpeg.clone())).await;
    let slots = Arc::new(Semaphore::new(2));
    let fetcher = fetcher(&slots);
    let url = SnapshotSource::Url {
        url: format!("{}/latest.jpg", server.url()),
        key: "sources[0].allowed_hosts".into(),
    };
    for n in 1..=3 {
        let picture = fetcher.fetch(&url).await.expect("picture");
        assert!(picture.starts_with(&[0xFF, 0xD8]));
        assert_eq!(
            server.connection_count(),
            n,
            "picture {n}: a new connection"
        );
    }
}
