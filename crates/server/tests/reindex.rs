//! Re-indexing onto a model version: re-embeds faces with images, reports
//! the rest, resumes, switches the tenant, and the server then searches the
//! new templates only.

mod support;

use facegate_server::admin::Admin;
use facegate_storage::{NewFace, SqliteStore, Store, Template};
use facegate_vision::{MODEL_VERSION, ModelsDir};
use serde_json::json;
use support::{TestApp, b64, sample};

const OLD: &str = "sface-previous";

#[tokio::test]
async fn reindex_moves_a_gallery_to_the_new_model() {
    let data = tempfile::tempdir().expect("tempdir");
    let admin = Admin::open_dir(data.path()).expect("admin");
    let tenant = admin.create_tenant("acme").expect("tenant");
    let (client, _, secret) = admin.create_client("acme", "all").expect("client");
    // A gallery made by an older model: real images, placeholder vectors.
    let store = SqliteStore::open(&data.path().join("facegate.db")).expect("store");
    let cipher = admin.keys(None).expect("keys").data;
    let photos = ["Female_40_1_1_1.jpg", "Male_40_1_1_1.jpg", "Female_41_1_1_1.jpg"];
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (id, photo) in ids.iter().zip(photos) {
        store
            .insert_face(&NewFace {
                id: id.clone(),
                tenant_id: tenant.id.clone(),
                created_at: 1,
                sealed_image: cipher.seal(id, &sample(photo)).expect("seal"),
                template: Template {
                    face_id: id.clone(),
                    model_version: OLD.into(),
                    vector: vec![0.0; 128],
                },
            })
            .expect("insert");
    }
    store.set_tenant_model(&tenant.id, OLD).expect("pin");
    assert!(store.delete_face_image(&tenant.id, &ids[2], 5).expect("delete image"));

    drop(store);
    // Before re-indexing, the server refuses to search a gallery of another model.
    let app = TestApp::spawn_in(data, support::on_sqlite).await;
    let creds = support::Credentials {
        id: client.id.clone(),
        secret: secret.clone(),
        tenant: tenant.id.clone(),
    };
    let token = app.token(&creds).await;
    let body = json!({"idPhoto": b64(&sample(photos[0]))});
    let refused = app.post_json("/api/v1/face/one-to-n/search", &token, &body).await;
    support::assert_error(refused, 409, "reindex_required").await;
    let data = app.stop().await;
    let store = SqliteStore::open(&data.path().join("facegate.db")).expect("store");

    let models = ModelsDir::new(support::models_dir());
    assert!(
        admin.reindex(&models, None, "sface-unknown", || {}).is_err(),
        "only this build's model"
    );
    let mut ticks = 0;
    let reports = admin
        .reindex(&models, None, MODEL_VERSION, || ticks += 1)
        .expect("reindex");
    assert_eq!(ticks, 3);
    assert_eq!(
        (reports[0].embedded, reports[0].without_image, reports[0].no_face),
        (2, 1, 0)
    );
    assert!(reports[0].switched);
    assert_eq!(
        store.tenant_model(&tenant.id).expect("model").as_deref(),
        Some(MODEL_VERSION)
    );
    assert_eq!(
        store.templates(&tenant.id, OLD).expect("old").len(),
        3,
        "old templates are kept"
    );
    // Resumable: a second run finds nothing left to embed.
    let again = admin.reindex(&models, None, MODEL_VERSION, || {}).expect("again");
    assert_eq!(
        (again[0].embedded, again[0].without_image, again[0].switched),
        (0, 1, false)
    );
    drop(store);

    let app = TestApp::spawn_in(data, support::on_sqlite).await;
    let token = app.token(&creds).await;
    let found: serde_json::Value = app
        .post_json("/api/v1/face/one-to-n/search", &token, &body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(found["oneToNVerificationId"], ids[0].as_str(), "{found}");
    assert_eq!(
        found["thresholdBasis"]["gallerySize"], 2,
        "only new-version templates are searched"
    );
}
