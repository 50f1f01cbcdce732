//! The whole pipeline for one worker: bytes → decode → detect → align → embed.
//!
//! A `FaceEngine` owns one YuNet and one SFace session. ONNX Runtime sessions
//! take `&mut self` to run in `ort`, so a server keeps one engine per worker
//! thread rather than sharing one behind a lock.

use std::time::{Duration, Instant};

use image::RgbImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use serde::Serialize;

use crate::align::{AlignedFace, align};
use crate::decode::{DecodeLimits, Decoded, decode, decode_reduced, decode_reduced_for};
use crate::detect::{Detector, DetectorOptions, MIN_COARSE_INTEROCULAR, input_scale, select_subject};
use crate::embed::{Embedder, Embedding};
use crate::error::{ModelError, VisionError};
use crate::models::{ModelFile, ModelsDir, Recognizer, YUNET, runtime};
use crate::quality::{Quality, measure};
use crate::types::Detection;

/// How a session uses the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadOptions {
    /// Intra-op threads for this session.
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin. Spinning steals the other core from
    /// a second worker, so it is off by default.
    pub spinning: bool,
}

impl Default for ThreadOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            spinning: false,
        }
    }
}

/// Settings for a `FaceEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EngineOptions {
    pub detector: DetectorOptions,
    pub limits: DecodeLimits,
    pub detector_threads: ThreadOptions,
    pub embedder_threads: ThreadOptions,
    /// Embed the mirrored crop too and average the two. Off by default:
    /// measured on LFW it did not pay for doubling the SFace time (README).
    pub flip_fusion: bool,
    /// Decode every JPEG at full resolution instead of at the reduced DCT
    /// scale the detector and the aligner need, and detect every face at the
    /// detector's full side without a coarse pass first. Off by default: it
    /// costs a 12 MP photo about 3 times more and, on `bench photos`,
    /// changed no decision at level 3 (README, "Large photos").
    pub full_decode: bool,
    /// Which SFace embeds: fp32 (served) or int8 (measured).
    pub recognizer: Recognizer,
}

/// The fewest pixels between the eyes the aligner is given from a reduced
/// decode: 1.3 times the template's 35, so the 112x112 crop is still sampled
/// down, never up. A face smaller than this is decoded again more finely.
/// At 70 (twice the template) a 12 MP portrait needed a second decode at
/// 1/4 after its 1/8 one. With the same landmarks, a clean face aligned from
/// 51 px between the eyes at 1/8 rather than 101 at 1/4 moved 0.001 in
/// cosine to its portrait, and `bench photos` made the same decisions
/// (README, "Large photos").
pub const MIN_REDUCED_INTEROCULAR: f32 = 45.0;

/// Wall time of each stage of one analysis.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageTimings {
    pub decode: Duration,
    pub detect: Duration,
    pub align: Duration,
    pub embed: Duration,
}

impl StageTimings {
    pub fn total(&self) -> Duration {
        self.decode + self.detect + self.align + self.embed
    }
}

/// The subject's face: where it is, how good it is, and its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub detection: Detection,
    pub quality: Quality,
    pub embedding: Embedding,
}

/// The result of analysing one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub face: Face,
    /// How many faces scored above the detection threshold.
    pub faces_found: usize,
    /// How many of them are at least half the subject's height: another
    /// person beside the subject, not a face on a poster far behind.
    pub comparable_faces: usize,
    pub width: u32,
    pub height: u32,
    /// Encoded pixels per pixel the face was aligned from: 1 at full
    /// resolution, 2, 4 or 8 for a reduced JPEG decode.
    pub decode_factor: u32,
    /// Which detector passes found the subject and its landmarks.
    pub search: SubjectSearch,
    pub timings: StageTimings,
}

/// Where the subject is and its aligned crop, before embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub detection: Detection,
    pub aligned: AlignedFace,
    pub faces_found: usize,
    pub comparable_faces: usize,
    /// See [`Analysis::search`].
    pub search: SubjectSearch,
}

/// How the subject of a photo was found (see [`DetectorOptions::coarse_side`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectSearch {
    /// One pass at the detector's full side.
    Full,
    /// One pass at the coarse side: the face was large enough.
    Coarse,
    /// The coarse pass found a small face, and a pass on a crop around it
    /// gave its landmarks.
    CoarseRefined,
}

/// Every face a detector pass found, and which one is the subject.
struct Subject {
    found: Vec<Detection>,
    index: usize,
    search: SubjectSearch,
}

/// One YuNet and one SFace session.
pub struct FaceEngine {
    detector: Detector,
    embedder: Embedder,
    limits: DecodeLimits,
    flip_fusion: bool,
    full_decode: bool,
}

/// The coarsest factor, no coarser than `current`, at which a face with
/// `interocular` pixels between the eyes (at `current`) has at least
/// [`MIN_REDUCED_INTEROCULAR`].
pub fn finer_factor(current: u32, interocular: f32) -> u32 {
    let full = interocular * current as f32;
    let mut factor = current;
    while factor > 1 && full / (factor as f32) < MIN_REDUCED_INTEROCULAR {
        factor /= 2;
    }
    factor
}

/// Runs `work`, adding the time it took to `stage`.
fn timed<T>(stage: &mut Duration, work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = work();
    *stage += start.elapsed();
    value
}

fn located(subject: &Subject, aligned: AlignedFace) -> Located {
    let detection = subject.found[subject.index];
    Located {
        detection,
        aligned,
        faces_found: subject.found.len(),
        comparable_faces: subject
            .found
            .iter()
            .filter(|f| f.bbox.height >= 0.5 * detection.bbox.height)
            .count(),
        search: subject.search,
    }
}

/// Opens a session on a verified model file.
pub fn load_session(models: &ModelsDir, file: &ModelFile, threads: ThreadOptions) -> Result<Session, ModelError> {
    let environment = runtime(models)?;
    let path = models.verified(file)?;
    let session = Session::builder(&environment)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort::Error::from)?
        .with_intra_threads(threads.intra_threads)
        .map_err(ort::Error::from)?
        .with_intra_op_spinning(threads.spinning)
        .map_err(ort::Error::from)?
        .with_inter_op_spinning(false)
        .map_err(ort::Error::from)?
        .commit_from_file(path)?;
    Ok(session)
}

impl FaceEngine {
    /// Loads both models from `models`, checking their hashes.
    pub fn load(models: &ModelsDir, options: EngineOptions) -> Result<Self, ModelError> {
        Ok(Self {
            detector: Detector::new(
                load_session(models, &YUNET, options.detector_threads)?,
                options.detector,
            ),
            embedder: Embedder::new(load_session(
                models,
                &options.recognizer.file,
                options.embedder_threads,
            )?),
            limits: options.limits,
            flip_fusion: options.flip_fusion,
            full_decode: options.full_decode,
        })
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Decodes with this engine's limits.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, VisionError> {
        Ok(decode(bytes, &self.limits)?)
    }

    /// Every face above the detection threshold, best score first.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        self.detector.detect(image)
    }

    /// Embeds a batch of aligned faces.
    pub fn embed(&mut self, faces: &[AlignedFace]) -> Result<Vec<Embedding>, VisionError> {
        self.embedder.embed(faces)
    }

    /// Detects the subject (the most prominent face) and aligns it.
    pub fn locate(&mut self, image: &RgbImage, timings: &mut StageTimings) -> Result<Located, VisionError> {
        let subject = self.find_subject(image, timings)?;
        let aligned = timed(&mut timings.align, || {
            align(image, &subject.found[subject.index].landmarks)
        });
        Ok(located(&subject, aligned))
    }

    /// The full pipeline on encoded bytes.
    pub fn analyze(&mut self, bytes: &[u8]) -> Result<Analysis, VisionError> {
        let prepared = self.prepare(bytes)?;
        self.finish_one(prepared)
    }

    /// Every stage but the embedding: decode, detect, align.
    ///
    /// A large JPEG is decoded first at the coarsest DCT scale that still
    /// gives the detector's coarse pass its input (see
    /// [`DetectorOptions::coarse_side`]): 1/8 for a 12 MP photo. When the
    /// subject's face then has too few pixels for the aligner, it is decoded
    /// again at the scale it needs (full resolution at worst). A smaller
    /// image is decoded at the scale of the detector's full side. Boxes and
    /// landmarks are reported in the full-resolution image's coordinates
    /// either way.
    pub fn prepare(&mut self, bytes: &[u8]) -> Result<Prepared, VisionError> {
        let mut timings = StageTimings::default();
        let options = *self.detector.options();
        let coarse_first = !self.full_decode && options.coarse_side > 0;
        let large = |long: u32| long >= 2 * options.max_side;
        let first_side = |long| {
            if coarse_first && large(long) {
                options.coarse_side
            } else {
                options.max_side
            }
        };
        let decoded = timed(&mut timings.decode, || {
            decode_reduced_for(bytes, &self.limits, first_side, self.max_factor())
        })?;
        let (decoded, subject) = if coarse_first && large(decoded.full_width.max(decoded.full_height)) {
            self.find_subject_coarse_first(bytes, decoded, &mut timings)?
        } else {
            let subject = self.find_subject(&decoded.image, &mut timings)?;
            (decoded, subject)
        };
        let face = subject.found[subject.index];
        let wanted = finer_factor(decoded.factor, face.interocular());
        let (image, factor) = if wanted < decoded.factor {
            let finer = self.decode_at(bytes, wanted, &mut timings)?;
            (finer.image, finer.factor)
        } else {
            (decoded.image, decoded.factor)
        };
        let ratio = decoded.factor as f32 / factor as f32;
        let aligned = timed(&mut timings.align, || align(&image, &face.scaled(ratio).landmarks));
        let mut located = located(&subject, aligned);
        located.detection = located.detection.scaled(decoded.factor as f32);
        Ok(Prepared::new(
            located,
            decoded.full_width,
            decoded.full_height,
            factor,
            timings,
        ))
    }

    fn max_factor(&self) -> u32 {
        if self.full_decode { 1 } else { 8 }
    }

    /// Decodes again at `factor` or finer, adding the time to `timings`.
    fn decode_at(&self, bytes: &[u8], factor: u32, timings: &mut StageTimings) -> Result<Decoded, VisionError> {
        let decoded = timed(&mut timings.decode, || decode_reduced(bytes, &self.limits, 1, factor))?;
        Ok(decoded)
    }

    /// The pipeline on an already decoded image.
    pub fn analyze_image(&mut self, image: &RgbImage) -> Result<Analysis, VisionError> {
        let mut timings = StageTimings::default();
        let located = self.locate(image, &mut timings)?;
        self.finish_one(Prepared::new(located, image.width(), image.height(), 1, timings))
    }

    /// Embeds every prepared face in one SFace call. Each analysis's embed
    /// time is the whole call's: what its request waited for.
    pub fn finish_batch(&mut self, prepared: Vec<Prepared>) -> Result<Vec<Analysis>, VisionError> {
        let start = Instant::now();
        let faces: Vec<AlignedFace> = prepared.iter().map(|p| p.located.aligned.clone()).collect();
        let embeddings = self.embed_subjects(&faces)?;
        if embeddings.len() != faces.len() {
            return Err(missing_embedding());
        }
        let embed = start.elapsed();
        Ok(prepared
            .into_iter()
            .zip(embeddings)
            .map(|(p, embedding)| p.into_analysis(embedding, embed))
            .collect())
    }
}

/// An analysis up to its embedding, which [`FaceEngine::finish_batch`] adds
/// alone or together with other requests' faces.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    located: Located,
    quality: Quality,
    width: u32,
    height: u32,
    decode_factor: u32,
    timings: StageTimings,
}

impl Prepared {
    fn new(located: Located, width: u32, height: u32, decode_factor: u32, timings: StageTimings) -> Self {
        Self {
            quality: measure(&located.detection, &located.aligned),
            located,
            width,
            height,
            decode_factor,
            timings,
        }
    }

    /// The subject face's quality, known before it is embedded.
    pub fn quality(&self) -> &Quality {
        &self.quality
    }

    fn into_analysis(self, embedding: Embedding, embed: Duration) -> Analysis {
        Analysis {
            face: Face {
                detection: self.located.detection,
                quality: self.quality,
                embedding,
            },
            faces_found: self.located.faces_found,
            comparable_faces: self.located.comparable_faces,
            width: self.width,
            height: self.height,
            decode_factor: self.decode_factor,
            search: self.located.search,
            timings: StageTimings { embed, ..self.timings },
        }
    }
}

impl FaceEngine {
    /// Every face and which is the subject, at the detector's full side.
    fn find_subject(&mut self, image: &RgbImage, timings: &mut StageTimings) -> Result<Subject, VisionError> {
        let side = self.detector.options().max_side;
        let subject = self.detect_subject(image, side, SubjectSearch::Full, timings)?;
        subject.ok_or(VisionError::NoFaceDetected)
    }

    /// One detector pass at `side`; `None` when it finds no face.
    fn detect_subject(
        &mut self,
        image: &RgbImage,
        side: u32,
        search: SubjectSearch,
        timings: &mut StageTimings,
    ) -> Result<Option<Subject>, VisionError> {
        let found = timed(&mut timings.detect, || self.detector.detect_at(image, side))?;
        Ok(select_subject(&found, image.width(), image.height()).map(|index| Subject { found, index, search }))
    }

    /// [`FaceEngine::find_subject`] on a large photo, decoded for the
    /// coarse side: first at that side, which costs YuNet a quarter of the
    /// full input's time, and on that decode alone when the subject has
    /// enough pixels between the eyes there for landmarks as fine as LFW's.
    /// Otherwise the photo is decoded for the full side: a small subject is
    /// located again there on a crop around it, and only when the coarse
    /// pass finds no face, or the crop loses it, is the photo searched at the
    /// full side. Returns the decode the subject was found in.
    fn find_subject_coarse_first(
        &mut self,
        bytes: &[u8],
        decoded: Decoded,
        timings: &mut StageTimings,
    ) -> Result<(Decoded, Subject), VisionError> {
        let side = self.detector.options().coarse_side;
        let scale = input_scale(decoded.image.width(), decoded.image.height(), side);
        let coarse = match self.detect_subject(&decoded.image, side, SubjectSearch::Coarse, timings)? {
            Some(subject) if subject.found[subject.index].interocular() * scale >= MIN_COARSE_INTEROCULAR => {
                return Ok((decoded, subject));
            }
            small_or_none => small_or_none,
        };
        let coarse_factor = decoded.factor;
        let detailed = self.decoded_for_full_side(bytes, decoded, timings)?;
        if let Some(mut subject) = coarse {
            let ratio = coarse_factor as f32 / detailed.factor as f32;
            for found in &mut subject.found {
                *found = found.scaled(ratio);
            }
            let coarse = &subject.found[subject.index];
            let refined = timed(&mut timings.detect, || self.detector.refine(&detailed.image, coarse))?;
            if let Some(face) = refined {
                subject.found[subject.index] = face;
                subject.search = SubjectSearch::CoarseRefined;
                return Ok((detailed, subject));
            }
        }
        let subject = self.find_subject(&detailed.image, timings)?;
        Ok((detailed, subject))
    }

    /// `decoded`, or when it is too coarse for the detector's full side, the
    /// photo decoded again at the scale that side needs.
    fn decoded_for_full_side(
        &self,
        bytes: &[u8],
        decoded: Decoded,
        timings: &mut StageTimings,
    ) -> Result<Decoded, VisionError> {
        let side = self.detector.options().max_side;
        if decoded.factor == 1 || decoded.image.width().max(decoded.image.height()) >= side {
            return Ok(decoded);
        }
        let detailed = timed(&mut timings.decode, || {
            decode_reduced(bytes, &self.limits, side, decoded.factor / 2)
        })?;
        Ok(detailed)
    }

    fn finish_one(&mut self, prepared: Prepared) -> Result<Analysis, VisionError> {
        self.finish_batch(vec![prepared])?.pop().ok_or_else(missing_embedding)
    }

    /// One embedding per face; with flip fusion, the mean of each face's and
    /// its mirror image's, all in the same SFace call.
    fn embed_subjects(&mut self, faces: &[AlignedFace]) -> Result<Vec<Embedding>, VisionError> {
        if !self.flip_fusion {
            return self.embedder.embed(faces);
        }
        let mirrored = faces
            .iter()
            .map(|f| AlignedFace(image::imageops::flip_horizontal(&f.0)));
        let both: Vec<AlignedFace> = faces.iter().cloned().chain(mirrored).collect();
        let embeddings = self.embedder.embed(&both)?;
        let (plain, flipped) = embeddings.split_at(faces.len());
        plain
            .iter()
            .zip(flipped)
            .map(|(a, b)| {
                let sum: Vec<f32> = a.0.iter().zip(&b.0).map(|(x, y)| x + y).collect();
                Embedding::from_raw(&sum).ok_or_else(missing_embedding)
            })
            .collect()
    }
}

fn missing_embedding() -> VisionError {
    VisionError::Model(ModelError::Ort("SFace returned no embedding".into()))
}

impl Serialize for StageTimings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut s = serializer.serialize_struct("StageTimings", 5)?;
        s.serialize_field("decodeMs", &ms(self.decode))?;
        s.serialize_field("detectMs", &ms(self.detect))?;
        s.serialize_field("alignMs", &ms(self.align))?;
        s.serialize_field("embedMs", &ms(self.embed))?;
        s.serialize_field("totalMs", &ms(self.total()))?;
        s.end()
    }
}
