//! Any body as a multipart frame upload (the capture protocol's form):
//! parsed or refused, never a panic.
#![no_main]

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use facegate_server::routes::session::multipart_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let request = Request::builder()
            .method("POST")
            .header("content-type", "multipart/form-data; boundary=fuzz")
            .body(Body::from(body.to_vec()))
            .expect("request");
        if let Ok(form) = Multipart::from_request(request, &()).await {
            let _ = multipart_request(form).await;
        }
    });
});
