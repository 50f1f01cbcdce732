//! Re-indexing a gallery onto a new model version.
//!
//! Every face that still has its image is re-embedded into a template of the
//! target version; faces are taken in a stable order and only those lacking
//! a target template, so an interrupted run resumes where it stopped. When a
//! tenant is done its searches switch to the target version in one write,
//! so a search never mixes versions.
//!
//! Policy for faces that cannot be re-embedded (image deleted, or no face
//! found by the new model): they keep their old-version templates in
//! storage, are not searchable under the new version, are counted in the
//! report, and are removed by `DELETE …?purge=true` like any other face.

use facegate_storage::{Cipher, Store, StoreError, Template};
use facegate_vision::{FaceEngine, MODEL_VERSION};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("this build embeds with {MODEL_VERSION}; it cannot produce {0} templates")]
    UnknownModel(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("face {0}: the stored image cannot be decrypted with this data key")]
    Sealed(String),
    #[error("inference failed: {0}")]
    Model(String),
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantReindex {
    pub tenant: String,
    pub embedded: usize,
    /// Images deleted earlier: kept on the old version until purged.
    pub without_image: usize,
    /// Images in which the new model found no face.
    pub no_face: usize,
    pub switched: bool,
}

const BATCH: usize = 64;

/// Re-indexes every tenant onto `target`; `progress` is told of each face.
pub fn reindex(
    store: &dyn Store,
    cipher: &Cipher,
    engine: &mut FaceEngine,
    target: &str,
    mut progress: impl FnMut(),
) -> Result<Vec<TenantReindex>, ReindexError> {
    if target != MODEL_VERSION {
        return Err(ReindexError::UnknownModel(target.into()));
    }
    let mut reports = Vec::new();
    for tenant in store.tenants()? {
        let mut report = TenantReindex {
            tenant: tenant.id.clone(),
            ..TenantReindex::default()
        };
        let mut cursor = 0;
        loop {
            let batch = store.faces_without_template(&tenant.id, target, cursor, BATCH)?;
            let Some(last) = batch.last() else { break };
            cursor = last.cursor;
            for face in batch {
                reembed(store, cipher, engine, target, face, &mut report)?;
                progress();
            }
        }
        if store.tenant_model(&tenant.id)?.as_deref() != Some(target) {
            store.set_tenant_model(&tenant.id, target)?;
            report.switched = true;
        }
        reports.push(report);
    }
    Ok(reports)
}

fn reembed(
    store: &dyn Store,
    cipher: &Cipher,
    engine: &mut FaceEngine,
    target: &str,
    face: facegate_storage::PendingFace,
    report: &mut TenantReindex,
) -> Result<(), ReindexError> {
    let Some(sealed) = face.sealed_image else {
        report.without_image += 1;
        return Ok(());
    };
    let image = cipher
        .open(&face.id, &sealed)
        .map_err(|_| ReindexError::Sealed(face.id.clone()))?;
    match engine.analyze(&image) {
        Ok(analysis) => {
            store.put_template(&Template {
                face_id: face.id,
                model_version: target.into(),
                vector: analysis.face.embedding.as_slice().to_vec(),
            })?;
            report.embedded += 1;
        }
        Err(facegate_vision::VisionError::Model(e)) => return Err(ReindexError::Model(e.to_string())),
        Err(_) => report.no_face += 1,
    }
    Ok(())
}
