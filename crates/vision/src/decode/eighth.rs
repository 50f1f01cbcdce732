//! JPEG decoding at 1/8 scale with an entropy decoder that steps over the
//! AC coefficients it does not need several at a time.
//!
//! Why hand-written: at 1/8 libjpeg-turbo turns each luma block into one
//! pixel, its DC coefficient, and only steps over the AC coefficients; but it
//! steps one Huffman symbol at a time, and on a grainy 12 MP photo that is
//! nearly all of its 24 ms. Here a table indexed by the next 14 bits of the
//! stream gives the bits and coefficient positions of all the whole symbols
//! (code and magnitude bits) in them, so one lookup steps over two or three.
//! No decoder crate skips coefficients at all.
//!
//! Every component is one sample per block, its DC, so every component's AC
//! coefficients are stepped over. The luma is libjpeg-turbo's at 1/8 bit
//! for bit (the same 1x1 inverse DCT, clamping and fixed-point YCbCr
//! conversion), and so is the whole picture for 4:4:4, 4:2:2, 4:4:0 and
//! grey, whose chroma libjpeg also replicates. For 4:2:0 libjpeg decodes
//! each chroma block with a 2x2 inverse DCT instead; here its DC is
//! repeated over those 2x2 pixels. Decoding those chroma coefficients one
//! by one took 2 ms of a grainy 12 MP photo's 13.7, and the detector and
//! SFace do not tell the difference (see the README's fifth step). Tests
//! hold the decoder to libjpeg's pixels, 4:2:0 on pictures whose chroma
//! blocks carry no AC coefficients.
//!
//! Only the common case is taken: a baseline Huffman JPEG (SOF0 or SOF1,
//! 8-bit) whose one scan holds every component, YCbCr or grey, with each
//! component's sampling factors dividing the largest. Anything else,
//! and any data that does not add up, is declined; the caller then decodes
//! the file with libjpeg as before, and libjpeg's verdict stands.

use std::sync::{Arc, Mutex, PoisonError};

use image::RgbImage;
use thiserror::Error;

use super::libjpeg::{Header, Scaled};

/// Why a file is left to libjpeg.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declined {
    #[error("not a kind of JPEG decoded here: {0}")]
    Unsupported(&'static str),
    #[error("the JPEG data does not add up: {0}")]
    Corrupt(&'static str),
}

use Declined::{Corrupt, Unsupported};

/// Bits of lookahead in an AC table's skip entries.
const SKIP_BITS: u32 = 14;
/// Bits of lookahead in a table's one-symbol entries.
const FAST_BITS: u32 = 9;
/// Zero bytes after the scan data, so that a refill can always read 8.
const PAD: usize = 8;

/// A file's tables and frame, read from its markers up to its scan.
pub(super) struct Scan<'a> {
    header: Header,
    components: Vec<Component>,
    /// The Huffman tables as defined: they are built only in [`Scan::decode`],
    /// and only those the scan uses, since a file decoded at another scale
    /// goes to libjpeg and would not use them.
    dc: [Option<HuffmanCode>; 4],
    ac: [Option<HuffmanCode>; 4],
    /// Each quantisation table's DC quantiser: the one value a 1x1 inverse
    /// DCT reads.
    quant: [Option<i32>; 4],
    restart_interval: usize,
    exif: Option<&'a [u8]>,
    /// The entropy-coded data and what follows it.
    data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    dc: usize,
    ac: usize,
}

impl<'a> Scan<'a> {
    /// Reads every marker segment up to the first scan.
    pub fn read(bytes: &'a [u8]) -> Result<Self, Declined> {
        let mut scan = Self {
            header: Header { width: 0, height: 0 },
            components: Vec::new(),
            dc: Default::default(),
            ac: Default::default(),
            quant: [None; 4],
            restart_interval: 0,
            exif: None,
            data: &[],
        };
        let mut adobe_rgb = false;
        let mut i = 2; // after SOI
        loop {
            let (marker, body, end) = segment(bytes, i)?;
            match marker {
                0xC0 | 0xC1 => scan.read_frame(body)?,
                0xC4 => scan.read_huffman(body)?,
                0xDB => scan.read_quant(body)?,
                0xDD => scan.restart_interval = usize::from(be16(body, 0)?),
                0xE1 if scan.exif.is_none() => scan.exif = body.strip_prefix(b"Exif\0\0"),
                // Adobe's transform flag 0: the three components are RGB.
                0xEE => adobe_rgb |= body.starts_with(b"Adobe") && body.get(11) == Some(&0),
                0xDA => {
                    scan.read_scan_header(body)?;
                    scan.data = &bytes[end..];
                    break;
                }
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    return Err(Unsupported("not baseline Huffman"));
                }
                _ => {}
            }
            i = end;
        }
        let ids: Vec<u8> = scan.components.iter().map(|c| c.id).collect();
        if scan.components.len() == 3 && (adobe_rgb || ids == b"RGB") {
            return Err(Unsupported("RGB components"));
        }
        Ok(scan)
    }

    /// The stored size at full resolution.
    pub fn header(&self) -> Header {
        self.header
    }

    fn read_frame(&mut self, body: &[u8]) -> Result<(), Declined> {
        if body.first() != Some(&8) {
            return Err(Unsupported("not 8-bit"));
        }
        self.header = Header {
            height: u32::from(be16(body, 1)?),
            width: u32::from(be16(body, 3)?),
        };
        let count = usize::from(*body.get(5).ok_or(Corrupt("short frame header"))?);
        if !matches!(count, 1 | 3) {
            return Err(Unsupported("neither grey nor three components"));
        }
        for c in 0..count {
            let at = 6 + 3 * c;
            let [id, sampling, quant] = *body
                .get(at..at + 3)
                .and_then(|s| s.first_chunk::<3>())
                .ok_or(Corrupt("short frame header"))?;
            let (h, v) = (usize::from(sampling >> 4), usize::from(sampling & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || quant > 3 {
                return Err(Corrupt("bad component in the frame header"));
            }
            let quant = usize::from(quant);
            self.components.push(Component {
                id,
                h,
                v,
                quant,
                dc: 0,
                ac: 0,
            });
        }
        if self.header.width == 0 || self.header.height == 0 {
            return Err(Unsupported("the height is given after the scan"));
        }
        Ok(())
    }

    fn read_huffman(&mut self, mut body: &[u8]) -> Result<(), Declined> {
        while let Some((&class_id, rest)) = body.split_first() {
            let counts = rest.first_chunk::<16>().ok_or(Corrupt("short Huffman table"))?;
            let total: usize = counts.iter().map(|&n| usize::from(n)).sum();
            let symbols = rest.get(16..16 + total).ok_or(Corrupt("short Huffman table"))?;
            let id = usize::from(class_id & 15);
            let table = match class_id >> 4 {
                0 if id < 4 => &mut self.dc[id],
                1 if id < 4 => &mut self.ac[id],
                _ => return Err(Corrupt("bad Huffman table class or id")),
            };
            *table = Some(HuffmanCode {
                counts: *counts,
                symbols: symbols.to_vec(),
            });
            body = &rest[16 + total..];
        }
        Ok(())
    }

    fn read_quant(&mut self, mut body: &[u8]) -> Result<(), Declined> {
        while let Some((&precision_id, rest)) = body.split_first() {
            let (id, wide) = (usize::from(precision_id & 15), precision_id >> 4 == 1);
            if precision_id >> 4 > 1 {
                return Err(Corrupt("a quantisation table of neither 8 nor 16 bits"));
            }
            let size = if wide { 128 } else { 64 };
            let values = rest.get(..size).ok_or(Corrupt("short quantisation table"))?;
            let table = self.quant.get_mut(id).ok_or(Corrupt("bad quantisation table id"))?;
            // The DC comes first in zigzag order too.
            *table = Some(if wide {
                i32::from(u16::from_be_bytes([values[0], values[1]]))
            } else {
                i32::from(values[0])
            });
            body = &rest[size..];
        }
        Ok(())
    }

    fn read_scan_header(&mut self, body: &[u8]) -> Result<(), Declined> {
        if self.components.is_empty() {
            return Err(Corrupt("a scan before the frame header"));
        }
        let count = usize::from(*body.first().ok_or(Corrupt("short scan header"))?);
        if count != self.components.len() {
            return Err(Unsupported("a scan without every component"));
        }
        let mut ordered = Vec::with_capacity(count);
        for s in 0..count {
            let [id, tables] = *body
                .get(1 + 2 * s..3 + 2 * s)
                .and_then(|s| s.first_chunk::<2>())
                .ok_or(Corrupt("short scan header"))?;
            let mut component = *self
                .components
                .iter()
                .find(|c| c.id == id)
                .ok_or(Corrupt("a scan component not in the frame"))?;
            component.dc = usize::from(tables >> 4);
            component.ac = usize::from(tables & 15);
            ordered.push(component);
        }
        if body.get(1 + 2 * count..4 + 2 * count) != Some(&[0, 63, 0]) {
            return Err(Unsupported("not a sequential scan"));
        }
        self.components = ordered;
        Ok(())
    }

    /// Decodes the scan at 1/8 scale.
    pub fn decode(&self) -> Result<Scaled, Declined> {
        let layout = Layout::of(self)?;
        let unstuffed = unstuff(self.data)?;
        let planes = self.decode_planes(&layout, &unstuffed)?;
        let image = to_rgb(&layout, &planes)?;
        Ok(Scaled {
            full: self.header,
            image,
            factor: 8,
            exif: self.exif.map(<[u8]>::to_vec),
        })
    }

    /// Every component's samples at its scale (see [`Layout`]).
    fn decode_planes(&self, layout: &Layout, unstuffed: &Unstuffed) -> Result<Vec<Plane>, Declined> {
        let dc = self.used_tables(&self.dc, |c| c.dc, true)?;
        let ac = self.used_tables(&self.ac, |c| c.ac, false)?;
        let skips = ac.each_ref().map(|table| table.as_ref().map(SkipTable::recent_or_new));
        let codings = (self.components.iter())
            .map(|c| self.coding(c, [&dc, &ac], &skips))
            .collect::<Result<Vec<_>, _>>()?;
        let mut planes: Vec<Plane> = layout.components.iter().map(Plane::new).collect();
        let mut bits = Bits::new(&unstuffed.data);
        let mut predictions = vec![0i32; self.components.len()];
        for mcu in 0..layout.mcus_x * layout.mcus_y {
            if self.restart_interval > 0 && mcu > 0 && mcu % self.restart_interval == 0 {
                bits.restart(&unstuffed.restarts, mcu / self.restart_interval - 1)?;
                predictions.fill(0);
            }
            let (mx, my) = (mcu % layout.mcus_x, mcu / layout.mcus_x);
            for (c, scaled) in layout.components.iter().enumerate() {
                for by in 0..scaled.blocks_v {
                    for bx in 0..scaled.blocks_h {
                        let at = (mx * scaled.blocks_h + bx, my * scaled.blocks_v + by);
                        bits.block(&codings[c], &mut predictions[c], &mut planes[c], at)?;
                    }
                }
            }
        }
        if bits.position() > 8 * (unstuffed.data.len() - PAD) {
            return Err(Corrupt("the scan ends early"));
        }
        Ok(planes)
    }

    /// The tables of one class that the scan's components use, built; as in
    /// libjpeg, a table defined but not used is never checked.
    fn used_tables<'s>(
        &self,
        codes: &'s [Option<HuffmanCode>; 4],
        id_of: impl Fn(&Component) -> usize,
        dc: bool,
    ) -> Result<[Option<Huffman<'s>>; 4], Declined> {
        let mut tables: [Option<Huffman<'s>>; 4] = Default::default();
        for (id, code) in codes.iter().enumerate() {
            if let Some(code) = code.as_ref().filter(|_| self.components.iter().any(|c| id_of(c) == id)) {
                tables[id] = Some(Huffman::new(code, dc)?);
            }
        }
        Ok(tables)
    }

    /// The tables a component's blocks are decoded with.
    fn coding<'t>(
        &self,
        component: &Component,
        [dc, ac]: [&'t [Option<Huffman<'t>>; 4]; 2],
        skips: &'t [Option<Arc<SkipTable>>; 4],
    ) -> Result<Coding<'t>, Declined> {
        let skip = skips
            .get(component.ac)
            .and_then(Option::as_deref)
            .ok_or(Corrupt("a missing Huffman table"))?;
        Ok(Coding {
            dc: table(dc, component.dc)?,
            ac: table(ac, component.ac)?,
            skip,
            quant: self.quant[component.quant].ok_or(Corrupt("a missing quantisation table"))?,
        })
    }
}

/// One component's tables, with the skip table its AC coefficients are
/// stepped over with.
struct Coding<'t> {
    dc: &'t Huffman<'t>,
    ac: &'t Huffman<'t>,
    skip: &'t SkipTable,
    quant: i32,
}

/// Huffman table `id`, which a scan header may name out of range.
fn table<'t>(tables: &'t [Option<Huffman<'t>>; 4], id: usize) -> Result<&'t Huffman<'t>, Declined> {
    tables
        .get(id)
        .and_then(Option::as_ref)
        .ok_or(Corrupt("a missing Huffman table"))
}

/// A marker segment at `at`: its marker, its body and where the next begins.
fn segment(bytes: &[u8], at: usize) -> Result<(u8, &[u8], usize), Declined> {
    let mut i = at;
    // Any number of fill bytes may precede a marker.
    while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
        i += 1;
    }
    if bytes.get(i) != Some(&0xFF) {
        return Err(Corrupt("no marker where one belongs"));
    }
    let marker = *bytes.get(i + 1).ok_or(Corrupt("cut short"))?;
    if matches!(marker, 0x01 | 0xD0..=0xD8) {
        return Ok((marker, &[], i + 2));
    }
    if marker == 0xD9 {
        return Err(Corrupt("no scan"));
    }
    let length = usize::from(be16(bytes, i + 2)?);
    let body = bytes.get(i + 4..i + 2 + length).ok_or(Corrupt("a segment cut short"))?;
    if length < 2 {
        return Err(Corrupt("a segment shorter than its length field"));
    }
    Ok((marker, body, i + 2 + length))
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, Declined> {
    let pair = bytes
        .get(at..at + 2)
        .and_then(|s| s.first_chunk::<2>())
        .ok_or(Corrupt("cut short"))?;
    Ok(u16::from_be_bytes(*pair))
}

/// The entropy-coded data without its stuffed zero bytes, followed by
/// [`PAD`] zero bytes, and where each restart marker was.
struct Unstuffed {
    data: Vec<u8>,
    restarts: Vec<Restart>,
}

/// A restart marker: the offset in the unstuffed data it stood at, and its
/// number (0 to 7).
#[derive(Debug, Clone, Copy)]
struct Restart {
    at: usize,
    number: u8,
}

/// Only an EOI may end the data: another scan or a DNL is declined.
fn unstuff(data: &[u8]) -> Result<Unstuffed, Declined> {
    let mut out = Vec::with_capacity(data.len() + PAD);
    let mut restarts = Vec::new();
    let mut i = 0;
    loop {
        let offset = memchr::memchr(0xFF, &data[i..]).ok_or(Corrupt("no end-of-image marker"))?;
        out.extend_from_slice(&data[i..i + offset]);
        i += offset;
        match data.get(i + 1) {
            Some(0x00) => out.push(0xFF),
            Some(&n @ 0xD0..=0xD7) => restarts.push(Restart {
                at: out.len(),
                number: n - 0xD0,
            }),
            Some(0xFF) => {
                i += 1; // a fill byte
                continue;
            }
            Some(0xD9) => break,
            _ => return Err(Unsupported("a marker other than EOI after the scan")),
        }
        i += 2;
    }
    out.resize(out.len() + PAD, 0);
    Ok(Unstuffed { data: out, restarts })
}

/// How the file's components map onto the 1/8-scale output.
struct Layout {
    mcus_x: usize,
    mcus_y: usize,
    width: usize,
    height: usize,
    components: Vec<Scaled8>,
}

/// One component at 1/8: one sample per block, repeated `repeat_h` x
/// `repeat_v` times in the output.
struct Scaled8 {
    blocks_h: usize,
    blocks_v: usize,
    repeat_h: usize,
    repeat_v: usize,
    plane_width: usize,
    plane_height: usize,
}

impl Layout {
    fn of(scan: &Scan) -> Result<Self, Declined> {
        let (width, height) = (scan.header.width as usize, scan.header.height as usize);
        let h_max = scan.components.iter().map(|c| c.h).max().unwrap_or(1);
        let v_max = scan.components.iter().map(|c| c.v).max().unwrap_or(1);
        let single = scan.components.len() == 1;
        // A one-component scan's unit is one block, whatever its factors say.
        let (unit_w, unit_h) = if single { (8, 8) } else { (8 * h_max, 8 * v_max) };
        let (mcus_x, mcus_y) = (width.div_ceil(unit_w), height.div_ceil(unit_h));
        if scan.components.iter().map(|c| c.h * c.v).sum::<usize>() > 10 {
            return Err(Corrupt("more than 10 blocks in an MCU"));
        }
        let components = scan
            .components
            .iter()
            .map(|c| {
                let (h, v, h_max, v_max) = if single { (1, 1, 1, 1) } else { (c.h, c.v, h_max, v_max) };
                if h_max % h != 0 || v_max % v != 0 {
                    return Err(Unsupported("sampling factors"));
                }
                Ok(Scaled8 {
                    blocks_h: h,
                    blocks_v: v,
                    repeat_h: h_max / h,
                    repeat_v: v_max / v,
                    plane_width: mcus_x * h,
                    plane_height: mcus_y * v,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mcus_x,
            mcus_y,
            width: width.div_ceil(8),
            height: height.div_ceil(8),
            components,
        })
    }
}

/// One component's samples.
struct Plane {
    width: usize,
    samples: Vec<u8>,
}

impl Plane {
    fn new(scaled: &Scaled8) -> Self {
        Self {
            width: scaled.plane_width,
            samples: vec![0; scaled.plane_width * scaled.plane_height],
        }
    }

    /// Sets the sample at block (`x`, `y`) of a one-sample-per-block plane.
    fn put(&mut self, x: usize, y: usize, value: u8) {
        if let Some(sample) = self.samples.get_mut(y * self.width + x) {
            *sample = value;
        }
    }
}

/// libjpeg's post-IDCT range limit: the 10 low bits as a signed value,
/// shifted by 128 and clamped (jdmaster.c, `prepare_range_limit_table`).
fn idct_limit(x: i64) -> u8 {
    let wrapped = ((x + 512) & 1023) - 512;
    (wrapped + 128).clamp(0, 255) as u8
}

/// `DESCALE`: a rounding arithmetic right shift.
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// jidctred.c's `jpeg_idct_1x1`: the block's mean, an eighth of its DC.
fn idct_1x1(dc: i16, quant: i32) -> u8 {
    idct_limit(descale(i64::from(dc) * i64::from(quant), 3))
}

/// The output pixels: grey repeated, or YCbCr converted as libjpeg does
/// (jdcolor.c, 16-bit fixed point, each chroma sample repeated as its
/// component's layout says).
fn to_rgb(layout: &Layout, planes: &[Plane]) -> Result<RgbImage, Declined> {
    let (width, height) = (layout.width, layout.height);
    let mut image = RgbImage::new(width as u32, height as u32);
    let colour = YccTables::new();
    let mut repeated: Vec<Vec<u8>> = vec![Vec::with_capacity(width); planes.len()];
    for (y, out) in image.chunks_exact_mut(3 * width).enumerate() {
        let mut rows = [&[][..]; 3];
        for (((row, plane), scaled), buffer) in rows.iter_mut().zip(planes).zip(&layout.components).zip(&mut repeated) {
            let start = (y / scaled.repeat_v) * plane.width;
            let samples = plane
                .samples
                .get(start..start + plane.width)
                .ok_or(Corrupt("image size"))?;
            *row = repeat_across(samples, scaled.repeat_h, width, buffer).ok_or(Corrupt("image size"))?;
        }
        match (planes.len(), rows) {
            (1, [grey, ..]) => {
                for (pixel, &g) in out.chunks_exact_mut(3).zip(grey) {
                    pixel.copy_from_slice(&[g, g, g]);
                }
            }
            (3, [luma, cb, cr]) => {
                // Each row is `width` long (`repeat_across`).
                for (x, pixel) in out.chunks_exact_mut(3).enumerate() {
                    pixel.copy_from_slice(&colour.rgb(luma[x], cb[x], cr[x]));
                }
            }
            _ => return Err(Unsupported("neither grey nor three components")),
        }
    }
    Ok(image)
}

/// A row of `width` samples: `samples` itself when each stands for one
/// pixel (4:2:0 and 4:4:4 at 1/8), else each repeated `repeat` times into
/// `buffer`. `None` when the samples do not reach `width`.
fn repeat_across<'r>(samples: &'r [u8], repeat: usize, width: usize, buffer: &'r mut Vec<u8>) -> Option<&'r [u8]> {
    if repeat == 1 {
        return samples.get(..width);
    }
    buffer.clear();
    buffer.extend(samples.iter().flat_map(|&v| std::iter::repeat_n(v, repeat)).take(width));
    buffer.get(..width)
}

/// jdcolor.c's YCbCr → RGB tables.
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> Self {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
        let mut tables = Self {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256 {
            let x = i as i64 - 128;
            tables.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            tables.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            tables.cr_g[i] = -fix(0.71414) * x;
            tables.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        tables
    }

    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        let green = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [clamp(y + self.cr_r[cr]), clamp(y + green), clamp(y + self.cb_b[cb])]
    }
}

/// A canonical Huffman table (ITU T.81, annex C), built from its
/// definition in the [`Scan`].
struct Huffman<'c> {
    /// For the codes of at most [`FAST_BITS`] bits, indexed by the next
    /// `FAST_BITS` bits: the code's length << 8 | its symbol; 0 otherwise.
    fast: Vec<u16>,
    /// The largest code of each length (-1 for none), and what turns a code
    /// of that length into its symbol's index.
    max_code: [i32; 17],
    offset: [i32; 17],
    /// The table as the file defines it.
    code: &'c HuffmanCode,
}

/// A Huffman table's definition: how many codes of each length, and their
/// symbols.
#[derive(Clone, PartialEq, Eq)]
struct HuffmanCode {
    counts: [u8; 16],
    symbols: Vec<u8>,
}

/// For an AC table, indexed by the next [`SKIP_BITS`] bits: the whole
/// symbols in them up to an end of block, as [`Skip`] entries. Built for
/// each AC table the scan uses, since every component's AC coefficients are
/// stepped over.
struct SkipTable(Vec<u16>);

impl SkipTable {
    fn new(table: &Huffman) -> Self {
        Self((0..1u64 << SKIP_BITS).map(|bits| table.skip_entry(bits)).collect())
    }

    /// The table for `table`, built again only when it is not one of the
    /// last few seen: building takes about 0.2 ms, over 1% of a 12 MP
    /// photo's decode, and cameras write the same few tables (most of them
    /// the example tables of T.81's annex K).
    fn recent_or_new(table: &Huffman) -> Arc<Self> {
        const KEPT: usize = 8;
        static RECENT: Mutex<Vec<(HuffmanCode, Arc<SkipTable>)>> = Mutex::new(Vec::new());
        // A panic elsewhere cannot leave the list half-changed: use it as is.
        let recent = || RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = |recent: &[(HuffmanCode, Arc<SkipTable>)]| {
            let found = recent.iter().find(|(code, _)| code == table.code);
            found.map(|(_, skip)| Arc::clone(skip))
        };
        if let Some(skip) = kept(&recent()) {
            return skip;
        }
        // Built outside the lock, so the other worker is not held up by it.
        let built = Arc::new(Self::new(table));
        let mut recent = recent();
        // That worker may have built the same table meanwhile: keep one.
        if let Some(skip) = kept(&recent) {
            return skip;
        }
        if recent.len() == KEPT {
            recent.remove(0);
        }
        recent.push((table.code.clone(), Arc::clone(&built)));
        built
    }
}

/// A skip entry: bits taken (0: no whole symbol fits, decode one by one),
/// coefficient positions advanced, and whether the last symbol ends the block.
struct Skip;

impl Skip {
    fn pack(bits: u32, advance: u32, end_of_block: bool) -> u16 {
        (bits | advance << 4 | u32::from(end_of_block) << 11) as u16
    }

    fn bits(entry: u16) -> u32 {
        u32::from(entry) & 15
    }

    fn advance(entry: u16) -> usize {
        usize::from(entry >> 4) & 127
    }

    fn end_of_block(entry: u16) -> usize {
        usize::from(entry >> 11)
    }
}

impl<'c> Huffman<'c> {
    fn new(defined: &'c HuffmanCode, dc: bool) -> Result<Self, Declined> {
        let mut table = Self {
            fast: vec![0; 1 << FAST_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            code: defined,
        };
        let (counts, symbols) = (&defined.counts, &defined.symbols);
        let (mut code, mut index) = (0u32, 0usize);
        for length in 1..=16u32 {
            let count = usize::from(counts[length as usize - 1]);
            table.offset[length as usize] = index as i32 - code as i32;
            for &symbol in &symbols[index..index + count] {
                if code >= 1 << length {
                    return Err(Corrupt("an overfull Huffman table"));
                }
                if length <= FAST_BITS {
                    let first = (code << (FAST_BITS - length)) as usize;
                    let entry = (length << 8) as u16 | u16::from(symbol);
                    table.fast[first..first + (1 << (FAST_BITS - length))].fill(entry);
                }
                code += 1;
            }
            index += count;
            if count > 0 {
                table.max_code[length as usize] = code as i32 - 1;
            }
            // As libjpeg (jdhuff.c): no code may be all ones.
            if code >= 1 << length {
                return Err(Corrupt("an overfull Huffman table"));
            }
            code <<= 1;
        }
        if dc && symbols.iter().any(|&s| s > 15) {
            return Err(Corrupt("a DC symbol over 15"));
        }
        Ok(table)
    }

    /// The symbol whose code starts `bits` (left-aligned) and the code's
    /// length, when a whole code lies in the first `available` bits.
    fn peek(&self, bits: u64, available: u32) -> Option<(u32, u8)> {
        (1..=available.min(16)).find_map(|length| {
            let code = (bits >> (64 - length)) as i32;
            (code <= self.max_code[length as usize])
                .then(|| self.code.symbols.get((self.offset[length as usize] + code) as usize))
                .flatten()
                .map(|&symbol| (length, symbol))
        })
    }

    /// The skip entry for the next [`SKIP_BITS`] bits `window`.
    fn skip_entry(&self, window: u64) -> u16 {
        let (mut taken, mut advance) = (0u32, 0u32);
        let mut bits = window << (64 - SKIP_BITS);
        while advance < 64 {
            let Some((length, symbol)) = self.peek(bits, SKIP_BITS - taken) else {
                break;
            };
            let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
            if taken + length + size > SKIP_BITS {
                break;
            }
            taken += length + size;
            bits <<= length + size;
            match (run, size) {
                (15, 0) => advance += 16,
                (_, 0) => return Skip::pack(taken, advance, true),
                _ => advance += run + 1,
            }
        }
        Skip::pack(taken, advance, false)
    }
}

/// A big-endian bit reader over unstuffed scan data.
///
/// The buffer's `count` high bits are the next ones in the stream; the bits
/// below them are zero or the stream's bits after those, so a refill can OR
/// 8 bytes in unaligned (Giesen's "variant 4").
struct Bits<'a> {
    data: &'a [u8],
    next: usize,
    buffer: u64,
    count: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next: 0,
            buffer: 0,
            count: 0,
        }
    }

    /// At least 32 bits buffered afterwards: a longest code and its
    /// magnitude bits (16 + 15).
    #[inline(always)]
    fn refill(&mut self) {
        if self.count < 32 {
            self.top_up();
        }
    }

    /// At least 56 bits buffered afterwards, with no branch but the
    /// predictable one for the end of the data: in the skip loop a refill
    /// comes every two or three lookups, too irregularly to predict.
    #[inline(always)]
    fn top_up(&mut self) {
        match self.data.get(self.next..).and_then(|rest| rest.first_chunk::<8>()) {
            Some(word) => {
                self.buffer |= u64::from_be_bytes(*word) >> self.count;
                self.next += ((63 - self.count) >> 3) as usize;
                self.count |= 56;
            }
            None => {
                while self.count <= 56 {
                    let byte = self.data.get(self.next).copied().unwrap_or(0);
                    self.buffer |= u64::from(byte) << (56 - self.count);
                    self.next += 1;
                    self.count += 8;
                }
            }
        }
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> usize {
        (self.buffer >> (64 - n)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    /// The bits read so far.
    fn position(&self) -> usize {
        8 * self.next - self.count as usize
    }

    /// Continues at byte `at`, dropping what is buffered.
    fn seek(&mut self, at: usize) {
        (self.next, self.buffer, self.count) = (at, 0, 0);
    }

    /// Continues after restart marker `index`, which must come next.
    fn restart(&mut self, restarts: &[Restart], index: usize) -> Result<(), Declined> {
        let restart = restarts.get(index).ok_or(Corrupt("a missing restart marker"))?;
        if usize::from(restart.number) != index % 8 || self.position() > 8 * restart.at {
            return Err(Corrupt("a restart interval out of step"));
        }
        self.seek(restart.at);
        Ok(())
    }

    /// Decodes one block into `plane` at block position `at`.
    fn block(
        &mut self,
        coding: &Coding,
        prediction: &mut i32,
        plane: &mut Plane,
        (x, y): (usize, usize),
    ) -> Result<(), Declined> {
        self.refill();
        *prediction = prediction.wrapping_add(self.dc_difference(coding.dc)?);
        // libjpeg keeps coefficients as 16-bit, wrapping
        let dc = *prediction as i16;
        self.skip_ac(coding.ac, coding.skip)?;
        plane.put(x, y, idct_1x1(dc, coding.quant));
        Ok(())
    }

    /// One symbol; at least 16 bits must be buffered.
    #[inline(always)]
    fn symbol(&mut self, table: &Huffman) -> Result<u8, Declined> {
        let entry = table.fast[self.peek(FAST_BITS)];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        let (length, symbol) = table.peek(self.buffer, 16).ok_or(Corrupt("an invalid Huffman code"))?;
        self.consume(length);
        Ok(symbol)
    }

    /// `size` magnitude bits as a signed value (T.81, F.2.2.1's EXTEND).
    #[inline(always)]
    fn magnitude(&mut self, size: u32) -> i32 {
        if size == 0 {
            return 0;
        }
        let raw = self.peek(size) as i32;
        self.consume(size);
        if raw < 1 << (size - 1) {
            raw - (1 << size) + 1
        } else {
            raw
        }
    }

    /// A block's DC difference; the buffer must have been refilled.
    fn dc_difference(&mut self, table: &Huffman) -> Result<i32, Declined> {
        let size = self.symbol(table)?;
        Ok(self.magnitude(u32::from(size)))
    }

    /// Steps over a block's AC coefficients, several symbols per lookup
    /// where a skip entry holds them and they stay inside the block.
    ///
    /// One top-up leaves at least 56 bits, enough for four lookups of at
    /// most [`SKIP_BITS`] each, so the refill's load sits on the chain of
    /// dependent lookups once in four rather than every time.
    fn skip_ac(&mut self, table: &Huffman, skip: &SkipTable) -> Result<(), Declined> {
        const LOOKUPS_PER_TOP_UP: usize = (56 / SKIP_BITS) as usize;
        let mut k = 1;
        loop {
            self.top_up();
            let mut one_by_one = false;
            for _ in 0..LOOKUPS_PER_TOP_UP {
                let entry = skip.0[self.peek(SKIP_BITS)];
                let advance = Skip::advance(entry);
                if Skip::bits(entry) == 0 || k + advance + Skip::end_of_block(entry) > 64 {
                    one_by_one = true;
                    break;
                }
                self.consume(Skip::bits(entry));
                k += advance;
                if Skip::end_of_block(entry) != 0 || k == 64 {
                    return Ok(());
                }
            }
            if one_by_one && self.skip_one(table, &mut k)? {
                return Ok(());
            }
        }
    }

    /// Steps over one AC symbol, decoded alone: its code or its magnitude
    /// bits run past a skip entry, or the entry's symbols past the block.
    /// Whether the block ended.
    fn skip_one(&mut self, table: &Huffman, k: &mut usize) -> Result<bool, Declined> {
        self.refill();
        let symbol = self.symbol(table)?;
        let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
        match (run, size) {
            (15, 0) => *k += 16,
            (_, 0) => return Ok(true),
            _ => {
                self.consume(size);
                *k += run + 1;
            }
        }
        match *k {
            64 => Ok(true),
            65.. => Err(Corrupt("a coefficient past the block")),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, Rgb};
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    use super::*;

    /// Gradients, hard edges and grain: blocks that end right after their DC
    /// and blocks that carry all 63 AC coefficients.
    fn picture(width: u32, height: u32, grain: u32) -> RgbImage {
        let mut state = 0x2545_f491_u32;
        RgbImage::from_fn(width, height, |x, y| {
            // xorshift32: reproducible grain without a dependency
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % (2 * grain + 1)) as i32 - grain as i32;
            let check = if (x / 37 + y / 23) % 2 == 0 { 40 } else { 210 };
            let base = [(x * 255 / width) as i32, (y * 255 / height) as i32, check];
            Rgb(base.map(|v| (v + noise).clamp(0, 255) as u8))
        })
    }

    /// The same picture's luma, with chroma that is the same over each
    /// 16x16 square, as YCbCr: a 4:2:0 file of it has chroma blocks without
    /// AC coefficients.
    fn flat_chroma(picture: &RgbImage) -> RgbImage {
        let luma = DynamicImage::ImageRgb8(picture.clone()).into_luma8();
        RgbImage::from_fn(picture.width(), picture.height(), |x, y| {
            let (cb, cr) = (60 + x / 16 * 37 % 140, 70 + y / 16 * 53 % 120);
            Rgb([luma.get_pixel(x, y)[0], cb as u8, cr as u8])
        })
    }

    fn jpeg(picture: &RgbImage, quality: u8, sampling: SamplingFactor, restart: u16, grey: bool) -> Vec<u8> {
        if grey {
            let luma = DynamicImage::ImageRgb8(picture.clone()).into_luma8();
            let size = (luma.width(), luma.height());
            return encode(luma.as_raw(), size, ColorType::Luma, quality, sampling, restart);
        }
        let size = (picture.width(), picture.height());
        encode(picture.as_raw(), size, ColorType::Rgb, quality, sampling, restart)
    }

    fn encode(
        pixels: &[u8],
        (width, height): (u32, u32),
        colour: ColorType,
        quality: u8,
        sampling: SamplingFactor,
        restart: u16,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = Encoder::new(&mut out, quality);
        encoder.set_sampling_factor(sampling);
        encoder.set_restart_interval(restart);
        (encoder.encode(pixels, width as u16, height as u16, colour)).expect("encodes");
        out
    }

    fn ours(bytes: &[u8]) -> Result<Scaled, Declined> {
        Scan::read(bytes)?.decode()
    }

    fn libjpegs(bytes: &[u8]) -> Scaled {
        super::super::libjpeg::decode_scaled(bytes, |_| Some(8)).expect("libjpeg decodes it")
    }

    /// libjpeg's pixels at 1/8, for every sampling whose chroma libjpeg
    /// replicates; for 4:2:0, on chroma blocks without AC coefficients,
    /// where its 2x2 inverse DCT gives each block's DC as this decoder does.
    #[test]
    fn its_pixels_are_libjpegs_at_one_eighth() {
        use SamplingFactor::{R_4_2_0, R_4_2_2, R_4_4_0, R_4_4_4};
        // Sizes that are not whole MCUs, grain from none to heavy, and
        // restart intervals from every MCU to none.
        let cases = [
            (803, 611, 24, 100, 0),
            (640, 480, 0, 92, 0),
            (333, 517, 8, 75, 7),
            (250, 250, 40, 95, 1),
        ];
        for (width, height, grain, quality, restart) in cases {
            let picture = picture(width, height, grain);
            let flat = encode(
                flat_chroma(&picture).as_raw(),
                (width, height),
                ColorType::Ycbcr,
                quality,
                R_4_2_0,
                restart,
            );
            let files = [R_4_2_2, R_4_4_4, R_4_4_0]
                .map(|sampling| (sampling, jpeg(&picture, quality, sampling, restart, false)));
            for (sampling, bytes) in [(R_4_2_0, flat)].into_iter().chain(files) {
                let case = format!("{width}x{height} grain {grain} q{quality} {sampling:?} restart {restart}");
                let (ours, theirs) = (ours(&bytes).expect(&case), libjpegs(&bytes));
                assert_eq!(
                    ours.image.dimensions(),
                    (width.div_ceil(8), height.div_ceil(8)),
                    "{case}"
                );
                assert!(ours.image == theirs.image, "{case}: pixels differ from libjpeg's");
                assert_eq!((ours.full, ours.factor), (theirs.full, 8), "{case}");
            }
            let grey = jpeg(&picture, quality, R_4_2_0, restart, true);
            assert!(
                ours(&grey).expect("grey").image == libjpegs(&grey).image,
                "grey {width}x{height}"
            );
        }
    }

    #[test]
    fn what_it_does_not_take_is_declined_for_libjpeg() {
        let picture = picture(120, 90, 8);
        let mut progressive = Vec::new();
        let mut encoder = Encoder::new(&mut progressive, 90);
        encoder.set_progressive(true);
        encoder
            .encode(picture.as_raw(), 120, 90, ColorType::Rgb)
            .expect("encodes");
        assert_eq!(ours(&progressive).err(), Some(Unsupported("not baseline Huffman")));
        let cmyk: Vec<u8> = picture.pixels().flat_map(|p| [p[0], p[1], p[2], 0]).collect();
        let mut four = Vec::new();
        Encoder::new(&mut four, 90)
            .encode(&cmyk, 120, 90, ColorType::Cmyk)
            .expect("encodes");
        assert_eq!(
            ours(&four).err(),
            Some(Unsupported("neither grey nor three components"))
        );
        // jpeg-encoder writes 4:1:1 as one scan per component.
        let separate = jpeg(&picture, 90, SamplingFactor::R_4_1_1, 0, false);
        assert_eq!(
            ours(&separate).err(),
            Some(Unsupported("a scan without every component"))
        );
        let whole = jpeg(&picture, 90, SamplingFactor::R_4_2_0, 0, false);
        let cut = &whole[..whole.len() * 2 / 3];
        assert_eq!(ours(cut).err(), Some(Corrupt("no end-of-image marker")));
        // Without its frame header a scan has no size: libjpeg's verdict.
        let sof = whole
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a SOF0 segment");
        let length = usize::from(u16::from_be_bytes([whole[sof + 2], whole[sof + 3]]));
        let frameless = [&whole[..sof], &whole[sof + 2 + length..]].concat();
        assert_eq!(ours(&frameless).err(), Some(Corrupt("a scan before the frame header")));
        // A quantisation table's precision is 0 (8-bit) or 1 (16-bit) only.
        let dqt = whole.windows(2).position(|w| w == [0xFF, 0xDB]).expect("a DQT segment");
        let mut odd_precision = whole.clone();
        odd_precision[dqt + 4] |= 0x20;
        let verdict = ours(&odd_precision).err();
        assert_eq!(verdict, Some(Corrupt("a quantisation table of neither 8 nor 16 bits")));
    }

    #[test]
    fn an_overfull_huffman_table_is_declined() {
        // Found by `make fuzz`: codes past their length's range used to index
        // past the one-symbol table.
        let picture = picture(64, 48, 8);
        let mut bytes = jpeg(&picture, 90, SamplingFactor::R_4_2_0, 0, false);
        let dht = bytes.windows(2).position(|w| w == [0xFF, 0xC4]).expect("a DHT segment");
        // The first table is the standard luma DC one: no code of one bit,
        // five of three. Counts start 5 bytes into the segment.
        let counts = dht + 5;
        assert_eq!((bytes[counts], bytes[counts + 2]), (0, 5));
        let mut all_ones = bytes.clone();
        // Three codes of one bit, two of three (the same symbols).
        (bytes[counts], bytes[counts + 2]) = (3, 2);
        assert_eq!(ours(&bytes).err(), Some(Corrupt("an overfull Huffman table")));
        // Two codes of one bit, 0 and 1: one of all ones, which libjpeg refuses.
        (all_ones[counts], all_ones[counts + 2]) = (2, 3);
        assert_eq!(ours(&all_ones).err(), Some(Corrupt("an overfull Huffman table")));
    }

    #[test]
    fn a_table_no_component_uses_is_not_checked() {
        // As in libjpeg, which checks a table only when a scan uses it: an
        // overfull AC table 3 that nothing reads does not decline the file.
        let picture = picture(64, 48, 8);
        let whole = jpeg(&picture, 90, SamplingFactor::R_4_2_0, 0, false);
        let mut counts = [0u8; 16];
        (counts[0], counts[2]) = (3, 2);
        let unused = [&[0xFF, 0xC4, 0, 24, 0x13][..], &counts, &[1, 2, 3, 4, 5]].concat();
        let bytes = [&whole[..2], &unused, &whole[2..]].concat();
        let (with, without) = (ours(&bytes).expect("decoded"), ours(&whole).expect("decoded"));
        assert!(with.image == without.image, "the unused table changed the pixels");
    }

    #[test]
    fn damaged_data_is_decoded_or_declined_never_a_panic() {
        let picture = picture(203, 157, 16);
        for restart in [0, 3] {
            let whole = jpeg(&picture, 90, SamplingFactor::R_4_2_0, restart, false);
            let mut state = 0x9e37_79b9_u32;
            for _ in 0..1500 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let mut damaged = whole.clone();
                let at = state as usize % damaged.len();
                damaged[at] ^= (state >> 24) as u8 | 1;
                if let Ok(decoded) = ours(&damaged) {
                    let (w, h) = (decoded.full.width.div_ceil(8), decoded.full.height.div_ceil(8));
                    assert_eq!(decoded.image.dimensions(), (w, h));
                }
            }
        }
    }
}
