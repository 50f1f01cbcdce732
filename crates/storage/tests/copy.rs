//! `copy_in_pages` with a page of two rows: a copy that crosses page
//! boundaries moves every row once, verifies each table, and a second run
//! adds nothing. Against a real PostgreSQL; skips loudly without one.

use facegate_storage::{
    Location, NewFace, PostgresOptions, PostgresStore, SqliteStore, Store, Template, Tenant, copy_in_pages,
};

#[test]
fn a_copy_in_small_pages_moves_every_row_once_and_verifies() {
    let Some(server) = facegate_testdb::shared() else {
        eprintln!("SKIPPED a_copy_in_small_pages_moves_every_row_once_and_verifies: no PostgreSQL");
        return;
    };
    let from = SqliteStore::in_memory().expect("sqlite");
    for t in 0..3 {
        let tenant = format!("t{t}");
        from.create_tenant(&Tenant {
            id: tenant.clone(),
            name: tenant.clone(),
            created_at: 1,
        })
        .expect("tenant");
        for f in 0..5 {
            let id = format!("00000000-0000-4000-8000-0000000000{t}{f}");
            from.insert_face(&NewFace {
                id: id.clone(),
                tenant_id: tenant.clone(),
                created_at: 2,
                sealed_image: vec![t * 10 + f; 3000],
                template: Template {
                    face_id: id,
                    model_version: "sface-2021dec".into(),
                    vector: vec![f32::from(f) / 10.0; 128],
                },
            })
            .expect("face");
        }
    }
    let url = server.database();
    let options = PostgresOptions::default();
    facegate_storage::migrate(&Location::Postgres {
        url: url.clone(),
        options,
    })
    .expect("migrate");
    let to = PostgresStore::open(&url, options).expect("open");
    let first = copy_in_pages(&from, &to, 2).expect("copy");
    let rows = |table: &str| first.iter().find(|c| c.table == table).expect("table").clone();
    assert_eq!((rows("tenants").rows, rows("tenants").added), (3, 3));
    assert_eq!((rows("faces").rows, rows("faces").added), (15, 15));
    assert_eq!((rows("templates").rows, rows("templates").added), (15, 15));
    assert!(first.iter().all(|c| c.verified), "{first:?}");
    let again = copy_in_pages(&from, &to, 2).expect("copy again");
    assert!(again.iter().all(|c| c.verified && c.added == 0), "{again:?}");
    assert_eq!(to.templates("t1", "sface-2021dec").expect("templates").len(), 5);
}
