//! Drawing helpers over krilla: the embedded fonts with their advance widths, text that wraps
//! and shrinks to its box, rectangles, QR codes and Data Matrix symbols as vector modules.

use std::sync::LazyLock;

use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

use crate::DocumentError;

/// A4 portrait, in points.
pub(crate) const PAGE_W: f32 = 595.28;
pub(crate) const PAGE_H: f32 = 841.89;
pub(crate) const MARGIN: f32 = 36.0;

/// One embedded typeface: the krilla font and its advance widths.
pub(crate) struct Face {
    pub font: Font,
    parsed: ttf_parser::Face<'static>,
    per_em: f32,
    /// Advance of each char below U+0100 in em units (0 = not in the font).
    latin1: Vec<f32>,
}

impl Face {
    fn load(data: &'static [u8]) -> Result<Self, DocumentError> {
        let font = Font::new(data.into(), 0)
            .ok_or_else(|| DocumentError::Layout("embedded font unreadable".into()))?;
        let parsed = ttf_parser::Face::parse(data, 0)
            .map_err(|e| DocumentError::Layout(format!("embedded font: {e}")))?;
        let per_em = f32::from(parsed.units_per_em().max(1));
        let latin1 = (0u32..256)
            .map(|c| char::from_u32(c).map_or(0.0, |c| raw_advance(&parsed, c) / per_em))
            .collect();
        Ok(Face {
            font,
            parsed,
            per_em,
            latin1,
        })
    }

    /// Width of `text` at `size` points (advances, no kerning: a safe upper bound for wrapping).
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let em: f32 = text
            .chars()
            .map(|c| {
                let i = c as usize;
                match self.latin1.get(i) {
                    Some(w) if *w > 0.0 => *w,
                    _ => raw_advance(&self.parsed, c) / self.per_em,
                }
            })
            .sum();
        em * size
    }
}

fn raw_advance(face: &ttf_parser::Face<'_>, c: char) -> f32 {
    let gid = face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
    f32::from(face.glyph_hor_advance(gid).unwrap_or(0))
}

/// The typefaces of every document: DejaVu Sans regular and bold, DejaVu Sans Mono.
pub(crate) struct Fonts {
    pub regular: Face,
    pub bold: Face,
    pub mono: Face,
}

static FONTS: LazyLock<Result<Fonts, DocumentError>> = LazyLock::new(|| {
    Ok(Fonts {
        regular: Face::load(dejavu::sans::regular())?,
        bold: Face::load(dejavu::sans::bold())?,
        mono: Face::load(dejavu::sans_mono::regular())?,
    })
});

pub(crate) fn fonts() -> Result<&'static Fonts, DocumentError> {
    FONTS.as_ref().map_err(Clone::clone)
}

/// Colours of the documents.
pub(crate) const BLUE: (u8, u8, u8) = (0, 102, 204);
pub(crate) const GREY: (u8, u8, u8) = (92, 111, 130);
pub(crate) const LIGHT: (u8, u8, u8) = (230, 236, 242);
pub(crate) const BLACK: (u8, u8, u8) = (23, 50, 77);

fn fill(c: (u8, u8, u8)) -> Fill {
    Fill {
        paint: rgb::Color::new(c.0, c.1, c.2).into(),
        ..Default::default()
    }
}

/// Text to draw: face, size, colour.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    pub face: &'static Face,
    pub size: f32,
    pub color: (u8, u8, u8),
}

impl Style {
    pub fn new(face: &'static Face, size: f32) -> Self {
        Style {
            face,
            size,
            color: BLACK,
        }
    }
    pub fn color(mut self, color: (u8, u8, u8)) -> Self {
        self.color = color;
        self
    }
    pub fn leading(&self) -> f32 {
        self.size * 1.22
    }
}

/// One line at a baseline.
pub(crate) fn text(surface: &mut Surface<'_>, x: f32, baseline: f32, style: Style, s: &str) {
    if s.is_empty() {
        return;
    }
    surface.set_stroke(None);
    surface.set_fill(Some(fill(style.color)));
    surface.draw_text(
        Point::from_xy(x, baseline),
        style.face.font.clone(),
        style.size,
        s,
        false,
        TextDirection::Auto,
    );
}

/// Text right-aligned at `right`.
pub(crate) fn text_right(
    surface: &mut Surface<'_>,
    right: f32,
    baseline: f32,
    style: Style,
    s: &str,
) {
    let w = style.face.width(s, style.size);
    text(surface, right - w, baseline, style, s);
}

/// Breaks `s` into lines no wider than `max_w` (at words; a word wider than the line is cut
/// between characters). Explicit newlines are kept.
pub(crate) fn wrap(face: &Face, size: f32, s: &str, max_w: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if face.width(&candidate, size) <= max_w {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if face.width(word, size) <= max_w {
                line = word.to_owned();
            } else {
                // a word longer than the line: cut it
                for c in word.chars() {
                    let mut next = line.clone();
                    next.push(c);
                    if face.width(&next, size) > max_w && !line.is_empty() {
                        lines.push(std::mem::replace(&mut line, c.to_string()));
                    } else {
                        line = next;
                    }
                }
            }
        }
        lines.push(line);
    }
    if lines.len() > 1 {
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
    }
    lines
}

/// A wrapped block of text, measured before it is drawn.
pub(crate) struct Block {
    pub style: Style,
    pub lines: Vec<String>,
}

impl Block {
    /// Wraps `s` to `max_w`; when that needs more than `max_lines` lines the size shrinks (down to
    /// `min_size`) and, at the smallest size, the block simply takes more lines: text is never
    /// cut.
    pub fn fit(style: Style, s: &str, max_w: f32, max_lines: usize, min_size: f32) -> Block {
        let mut st = style;
        loop {
            let lines = wrap(st.face, st.size, s, max_w);
            if lines.len() <= max_lines || st.size <= min_size {
                return Block { style: st, lines };
            }
            st.size = (st.size - 0.5).max(min_size);
        }
    }

    pub fn height(&self) -> f32 {
        self.lines.len() as f32 * self.style.leading()
    }

    /// Draws with the first line's top at `top`; returns the bottom.
    pub fn draw(&self, surface: &mut Surface<'_>, x: f32, top: f32) -> f32 {
        let mut y = top;
        for line in &self.lines {
            y += self.style.leading();
            text(
                surface,
                x,
                y - self.style.leading() * 0.25,
                self.style,
                line,
            );
        }
        y
    }
}

pub(crate) fn rect_fill(
    surface: &mut Surface<'_>,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    color: (u8, u8, u8),
) {
    let Some(r) = Rect::from_xywh(x, y, w, h) else {
        return;
    };
    let mut pb = PathBuilder::new();
    pb.push_rect(r);
    if let Some(path) = pb.finish() {
        surface.set_stroke(None);
        surface.set_fill(Some(fill(color)));
        surface.draw_path(&path);
    }
}

pub(crate) fn rect_stroke(
    surface: &mut Surface<'_>,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    color: (u8, u8, u8),
    width: f32,
) {
    let Some(r) = Rect::from_xywh(x, y, w, h) else {
        return;
    };
    let mut pb = PathBuilder::new();
    pb.push_rect(r);
    if let Some(path) = pb.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            paint: rgb::Color::new(color.0, color.1, color.2).into(),
            width,
            ..Default::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
    }
}

pub(crate) fn hline(surface: &mut Surface<'_>, x: f32, y: f32, w: f32, color: (u8, u8, u8)) {
    rect_fill(surface, x, y, w, 0.6, color);
}

/// Dark modules of a matrix code as filled squares (one rectangle per horizontal run), with the
/// symbol scaled to `size` points square at (`x`, `y`) — the quiet zone is the caller's margin.
fn modules(
    surface: &mut Surface<'_>,
    x: f32,
    y: f32,
    size: f32,
    cols: usize,
    rows: usize,
    dark: &dyn Fn(usize, usize) -> bool,
) {
    let cell = size / cols.max(rows).max(1) as f32;
    let mut pb = PathBuilder::new();
    for row in 0..rows {
        let mut col = 0;
        while col < cols {
            if dark(col, row) {
                let start = col;
                while col < cols && dark(col, row) {
                    col += 1;
                }
                if let Some(r) = Rect::from_xywh(
                    x + start as f32 * cell,
                    y + row as f32 * cell,
                    (col - start) as f32 * cell,
                    cell,
                ) {
                    pb.push_rect(r);
                }
            } else {
                col += 1;
            }
        }
    }
    if let Some(path) = pb.finish() {
        surface.set_stroke(None);
        surface.set_fill(Some(fill((0, 0, 0))));
        surface.draw_path(&path);
    }
}

/// A QR code (error correction M) of `payload`, `size` points square.
pub(crate) fn qr(
    surface: &mut Surface<'_>,
    x: f32,
    y: f32,
    size: f32,
    payload: &str,
) -> Result<(), DocumentError> {
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| DocumentError::Layout(format!("QR code: {e}")))?;
    let w = code.width();
    let colors = code.to_colors();
    modules(surface, x, y, size, w, w, &|c, r| {
        colors
            .get(r * w + c)
            .is_some_and(|m| *m == qrcode::Color::Dark)
    });
    Ok(())
}

/// A square ECC 200 Data Matrix of `payload` (ASCII), `size` points square.
pub(crate) fn datamatrix(
    surface: &mut Surface<'_>,
    x: f32,
    y: f32,
    size: f32,
    payload: &str,
) -> Result<(), DocumentError> {
    let code = datamatrix::DataMatrix::encode(
        payload.as_bytes(),
        datamatrix::SymbolList::default().enforce_square(),
    )
    .map_err(|e| DocumentError::Layout(format!("Data Matrix: {e:?}")))?;
    let bitmap = code.bitmap();
    let (w, h) = (bitmap.width(), bitmap.height());
    let mut dark = vec![false; w * h];
    for (c, r) in bitmap.pixels() {
        if let Some(cell) = dark.get_mut(r * w + c) {
            *cell = true;
        }
    }
    modules(surface, x, y, size, w, h, &|c, r| {
        dark.get(r * w + c).copied().unwrap_or(false)
    });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_lines_never_exceed_the_box_and_keep_every_word() {
        let f = fonts().unwrap();
        let text =
            "Versamento dell’imposta comunale 2026 — Anna D’Esempio, quota fissa e variabile, \
                    codice 0123456789012345678901234567890123456789 per l’immobile in via Roma";
        for width in [40.0_f32, 90.0, 200.0, 500.0] {
            let lines = wrap(&f.regular, 9.0, text, width);
            for line in &lines {
                assert!(
                    f.regular.width(line, 9.0) <= width + 0.01,
                    "{line:?} wider than {width}"
                );
            }
            let joined: String = lines.concat().split_whitespace().collect();
            let original: String = text.split_whitespace().collect();
            assert_eq!(joined, original, "at {width} pt");
        }
    }

    #[test]
    fn blocks_shrink_before_they_grow() {
        let f = fonts().unwrap();
        let text = "Comune di Città d’Esempio — Servizio Tributi";
        let one_line = Block::fit(
            Style::new(&f.bold, 11.0),
            text,
            f.bold.width(text, 9.0) + 1.0,
            1,
            8.0,
        );
        assert_eq!(one_line.lines.len(), 1);
        assert!(one_line.style.size < 11.0 && one_line.style.size >= 8.0);
        let grown = Block::fit(Style::new(&f.bold, 11.0), text, 60.0, 1, 8.0);
        assert_eq!(grown.style.size, 8.0);
        assert!(
            grown.lines.len() > 1,
            "at the smallest size the text takes more lines"
        );
    }
}
