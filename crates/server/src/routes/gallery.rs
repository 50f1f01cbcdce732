//! 1:N search: `POST /api/v1/face/one-to-n/search`, `POST
//! /api/v1/face/one-to-n/insert` and `DELETE /api/v1/face/one-to-n/search/{id}`.
//!
//! The decision threshold grows with the gallery: against N faces the
//! expected false-positive identification rate is about N·FMR(t), so the
//! threshold is the smallest t with N·FMR(t) ≤ the FPIR target (1% by
//! default), and never below level 4.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use facegate_auth::Permission;
use facegate_gallery::Candidate;
use facegate_storage::{NewFace, Template};
use facegate_vision::Embedding;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::analysis::{Analysed, Keep, analyze};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiJson;
use crate::gallery::{face_id, face_key};
use crate::inference::Admitted;
use crate::state::AppState;

/// 409 while the tenant's gallery is on another model version.
fn current_gallery(state: &AppState, tenant: &str) -> Result<(), ApiError> {
    if state.galleries.needs_reindex(tenant) {
        return Err(ApiError::new(
            ErrorCode::ReindexRequired,
            "this gallery was made by another model version; it needs `facegate reindex`",
        ));
    }
    Ok(())
}

/// Candidates scanned before exact re-ranking (at least).
const SHORTLIST: usize = 16;
const MAX_CANDIDATES: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// The photo to search for, base64 JPEG or PNG.
    pub id_photo: String,
    /// Insert the face when it matches nobody. Default false.
    #[serde(default)]
    pub insert: bool,
    /// facegate addition: return up to this many best candidates (0..100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub max_candidates: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsertRequest {
    /// The photo to enrol, base64 JPEG or PNG.
    pub id_photo: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateOut {
    pub id: String,
    pub similarity: f32,
}

/// With a match: the matched face's id and `oneToNVerificationMatch: true`.
/// With no match and `insert: true`: the new face's id and `false`. With no
/// match and `insert: false`: `false` and no `oneToNVerificationId` field.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_to_n_verification_id: Option<String>,
    pub one_to_n_verification_match: bool,
    /// facegate addition: similarity of the best candidate (absent in an empty gallery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// facegate addition: the 1:1 level the best candidate reaches.
    pub match_level: u8,
    /// facegate addition: the threshold in use for this gallery size.
    pub threshold: f32,
    /// facegate addition: how the threshold was set.
    pub threshold_basis: ThresholdBasis,
    /// facegate addition: the best candidates, when `maxCandidates` > 0.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateOut>,
    /// facegate addition: the calibration behind the threshold, `name@sha256-prefix`.
    pub calibration: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdBasis {
    pub gallery_size: usize,
    pub fpir_target: f64,
    /// FMR per comparison at the threshold, from the calibration in force
    /// and never below its floor (the rarest rate it observed).
    pub false_match_rate: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsertResponse {
    pub one_to_n_verification_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteParams {
    /// facegate addition: also remove the template (right to erasure).
    #[serde(default)]
    pub purge: bool,
}

/// Search the tenant's gallery; optionally enrol the face when it is new.
#[utoipa::path(
    post, path = "/api/v1/face/one-to-n/search", operation_id = "faceSearch", tag = "face",
    request_body = SearchRequest,
    security(("bearer" = ["face:search"])),
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, description = "Invalid input or no face", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "face:search missing, or face:search:insert missing with insert: true", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = ErrorBody),
        (status = 409, description = "The gallery awaits `facegate reindex` onto this model version", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Admitted(admission): Admitted<1>,
    caller: Caller,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<axum::Json<SearchResponse>, ApiError> {
    caller.require(Permission::FaceSearch)?;
    if request.insert {
        caller.require(Permission::FaceSearchInsert)?;
    }
    current_gallery(&state, caller.tenant())?;
    if request.max_candidates > MAX_CANDIDATES {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("maxCandidates is at most {MAX_CANDIDATES}"),
        ));
    }
    let keep = if request.insert { Keep::Image } else { Keep::Nothing };
    let analysed = analyze(&state, &admission, "idPhoto", request.id_photo.into(), keep).await?;
    drop(admission);
    let tenant = caller.tenant().to_string();
    // Held across search and insert so two uploads of one new face cannot
    // both miss each other: within this node, then across nodes.
    let lock = state.galleries.insert_lock(&tenant);
    let _guard = if request.insert { Some(lock.lock().await) } else { None };
    let _lease = match request.insert {
        true => Some(InsertLease::take(&state, &tenant).await?),
        false => None,
    };
    let (ranked, size) = ranked_candidates(
        &state,
        &tenant,
        &analysed.analysis.face.embedding,
        request.max_candidates,
    )
    .await?;
    let calibration = &state.calibration;
    let fpir = state.config.fpir_target;
    let threshold = calibration.gallery_threshold(size, fpir);
    let best = ranked.first().map(|c| c.similarity);
    let matched = best.is_some_and(|s| s >= threshold);
    let id = match (matched, request.insert) {
        (true, _) => ranked.first().map(|c| c.id.clone()),
        (false, true) => Some(enrol(&state, &tenant, analysed).await?),
        (false, false) => None,
    };
    Ok(axum::Json(SearchResponse {
        one_to_n_verification_id: id,
        one_to_n_verification_match: matched,
        similarity: best,
        match_level: best.map_or(0, |s| calibration.match_level(s)),
        threshold,
        threshold_basis: ThresholdBasis {
            gallery_size: size,
            fpir_target: fpir,
            false_match_rate: calibration.false_match_rate(threshold),
        },
        candidates: ranked.into_iter().take(request.max_candidates).collect(),
        calibration: calibration.id().to_string(),
    }))
}

/// The best candidates with exact similarities (re-ranked from the stored
/// f32 templates), and the gallery size.
async fn ranked_candidates(
    state: &AppState,
    tenant: &str,
    embedding: &Embedding,
    wanted: usize,
) -> Result<(Vec<CandidateOut>, usize), ApiError> {
    catch_up(state).await?;
    let partition = state.galleries.partition(tenant);
    let query = embedding.clone();
    let k = wanted.max(SHORTLIST);
    let (shortlist, size) = tokio::task::spawn_blocking(move || {
        let p = partition.read().unwrap_or_else(|e| e.into_inner());
        (p.search(query.as_slice(), k), p.len())
    })
    .await
    .map_err(ApiError::internal)?;
    let ids: Vec<String> = shortlist.iter().map(|c: &Candidate| face_id(c.key)).collect();
    let version = state.galleries.model_version().to_string();
    let templates = state.store(move |s| s.template_vectors(&version, &ids)).await?;
    let mut ranked: Vec<CandidateOut> = templates
        .into_iter()
        .map(|t| CandidateOut {
            similarity: facegate_matching::cosine(embedding.as_slice(), &t.vector),
            id: t.face_id,
        })
        .collect();
    ranked.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    Ok((ranked, size))
}

/// Stores the face (image sealed, template durable) and adds it to the index.
async fn enrol(state: &AppState, tenant: &str, analysed: Analysed) -> Result<String, ApiError> {
    let key = uuid::Uuid::new_v4();
    let id = key.to_string();
    let sealed = state
        .galleries
        .cipher
        .seal(&id, &analysed.bytes)
        .map_err(ApiError::internal)?;
    let vector = analysed.analysis.face.embedding.as_slice().to_vec();
    let face = NewFace {
        id: id.clone(),
        tenant_id: tenant.to_string(),
        created_at: facegate_auth::now(),
        sealed_image: sealed,
        template: Template {
            face_id: id.clone(),
            model_version: state.galleries.model_version().to_string(),
            vector,
        },
    };
    let version = state.galleries.model_version().to_string();
    state
        .store(move |s| {
            // The first enrolment pins the tenant to this model version, so a
            // later build with another model knows the gallery needs reindexing.
            if s.tenant_model(&face.tenant_id)?.is_none() {
                s.set_tenant_model(&face.tenant_id, &version)?;
            }
            s.insert_face(&face)
        })
        .await?;
    // The index learns of the face from the log, like every other node.
    catch_up(state).await?;
    Ok(id)
}

/// Applies the gallery change log up to what is committed now.
pub async fn catch_up(state: &AppState) -> Result<(), ApiError> {
    let galleries = Arc::clone(&state.galleries);
    state.store(move |s| galleries.catch_up(s)).await.map(|_| ())
}

/// A tenant's search-then-insert lease, held across nodes; released on drop.
struct InsertLease {
    state: AppState,
    name: String,
}

/// A search-then-insert holds the lease for at most this long (a node that
/// dies holding it blocks the tenant's inserts no longer than that).
const INSERT_LEASE_MS: i64 = 10_000;
/// How long a search-then-insert waits for another node's before a 503.
const INSERT_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl InsertLease {
    async fn take(state: &AppState, tenant: &str) -> Result<Self, ApiError> {
        let name = format!("gallery-insert:{tenant}");
        let deadline = tokio::time::Instant::now() + INSERT_LEASE_WAIT;
        loop {
            let (lease, holder) = (name.clone(), state.node_id.clone());
            let now = facegate_storage::shared::now_ms();
            let won = state
                .store(move |s| s.acquire_lease(&lease, &holder, now, now + INSERT_LEASE_MS))
                .await?;
            if won {
                return Ok(Self {
                    state: state.clone(),
                    name,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(ErrorCode::Busy, "the gallery is busy; try again").retry_after(1));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for InsertLease {
    fn drop(&mut self) {
        let (store, name, holder) = (
            Arc::clone(&self.state.store),
            std::mem::take(&mut self.name),
            self.state.node_id.clone(),
        );
        // Best effort: an unreleased lease lapses after INSERT_LEASE_MS.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.release_lease(&name, &holder) {
                tracing::warn!(error = %e, "releasing a gallery insert lease failed");
            }
        });
    }
}

/// Enrol a face unconditionally.
#[utoipa::path(
    post, path = "/api/v1/face/one-to-n/insert", operation_id = "faceSearchInsert", tag = "face",
    request_body = InsertRequest,
    security(("bearer" = ["face:search:insert"])),
    responses(
        (status = 200, body = InsertResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 409, description = "The gallery awaits `facegate reindex`", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn insert(
    State(state): State<AppState>,
    Admitted(admission): Admitted<1>,
    caller: Caller,
    ApiJson(request): ApiJson<InsertRequest>,
) -> Result<axum::Json<InsertResponse>, ApiError> {
    caller.require(Permission::FaceSearchInsert)?;
    current_gallery(&state, caller.tenant())?;
    let analysed = analyze(&state, &admission, "idPhoto", request.id_photo.into(), Keep::Image).await?;
    drop(admission);
    let id = enrol(&state, caller.tenant(), analysed).await?;
    Ok(axum::Json(InsertResponse {
        one_to_n_verification_id: id,
    }))
}

/// Delete a face's stored image; its template stays searchable under the
/// same id, as uqudo documents. `?purge=true` (a facegate addition) also
/// removes the template, for right-to-erasure requests.
#[utoipa::path(
    delete, path = "/api/v1/face/one-to-n/search/{id}", operation_id = "faceSearchDelete", tag = "face",
    params(("id" = String, Path, description = "oneToNVerificationId"), DeleteParams),
    security(("bearer" = ["face:search:delete"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such face in this tenant", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::FaceSearchDelete)?;
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such face");
    face_key(&id).ok_or_else(not_found)?;
    let tenant = caller.tenant().to_string();
    let purge = params.purge;
    let (tenant_for_store, id_for_store) = (tenant.clone(), id.clone());
    let found = state
        .store(move |s| match purge {
            true => s.purge_face(&tenant_for_store, &id_for_store),
            false => s.delete_face_image(&tenant_for_store, &id_for_store, facegate_auth::now()),
        })
        .await?;
    if !found {
        return Err(not_found());
    }
    caller.record(if purge { "face_purged" } else { "face_image_deleted" }, &id);
    if purge {
        catch_up(&state).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
