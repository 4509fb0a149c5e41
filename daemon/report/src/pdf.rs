//! The PDF renderer: the same layout as the HTML ([`crate::render::layout`]), drawn on A4
//! pages by `printpdf` with the bundled DejaVu Sans font embedded (no system fonts, no
//! network, no browser).

use printpdf::{Color, IndirectFontRef, Line, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference, Point, Rgb};

use crate::Report;
use crate::render::{Block, layout};

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 15.0;
const BODY: f32 = 8.5;
const PT_MM: f32 = 0.3528;
/// Width of the widest glyph used for wrapping estimates (in em).
const CHAR_EM: f32 = 0.62;

fn text_mm(chars: usize, size: f32) -> f32 {
    chars as f32 * size * CHAR_EM * PT_MM
}

/// Exact width of `s` in millimetres at `size` points, from the font's advances.
fn measure(face: &ttf_parser::Face<'_>, s: &str, size: f32) -> f32 {
    let upem = f32::from(face.units_per_em().max(1));
    let units: f32 =
        s.chars().map(|c| face.glyph_index(c).and_then(|g| face.glyph_hor_advance(g)).map(f32::from).unwrap_or(upem * 0.6)).sum();
    units / upem * size * PT_MM
}

struct Writer {
    doc: PdfDocumentReference,
    font: IndirectFontRef,
    layer: PdfLayerReference,
    y: f32,
    pages: usize,
}

impl Writer {
    fn new_page(&mut self) {
        let (page, layer) = self.doc.add_page(Mm(PAGE_W), Mm(PAGE_H), "content");
        self.layer = self.doc.get_page(page).get_layer(layer);
        self.y = PAGE_H - MARGIN;
        self.pages += 1;
    }

    /// Make room for `h` millimetres, starting a new page when needed.
    fn need(&mut self, h: f32) {
        if self.y - h < MARGIN {
            self.new_page();
        }
    }

    fn text(&self, s: &str, size: f32, x: f32) {
        self.layer.use_text(s, size, Mm(x), Mm(self.y), &self.font);
    }

    fn line_height(size: f32) -> f32 {
        size * PT_MM * 1.45
    }

    fn para(&mut self, s: &str, size: f32) {
        let width = PAGE_W - 2.0 * MARGIN;
        let per_line = ((width / text_mm(1, size)) as usize).max(10);
        for line in wrap(s, per_line) {
            self.need(Self::line_height(size));
            self.y -= Self::line_height(size);
            self.text(&line, size, MARGIN);
        }
    }

    fn rule(&self, y: f32) {
        let line = Line {
            points: vec![(Point::new(Mm(MARGIN), Mm(y)), false), (Point::new(Mm(PAGE_W - MARGIN), Mm(y)), false)],
            is_closed: false,
        };
        self.layer.set_outline_color(Color::Rgb(Rgb::new(0.75, 0.75, 0.75, None)));
        self.layer.set_outline_thickness(0.5);
        self.layer.add_line(line);
    }
}

/// Greedy word wrap at `width` characters (long words are cut).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(head);
        }
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Render the report as a PDF document.
pub fn render_pdf(r: &Report) -> Result<Vec<u8>, String> {
    let title = format!("{} availability report {}", r.title, r.period.label);
    let (doc, page, layer) = PdfDocument::new(&title, Mm(PAGE_W), Mm(PAGE_H), "content");
    let font = doc.add_external_font(FONT).map_err(|e| format!("embedding the font: {e}"))?;
    let layer = doc.get_page(page).get_layer(layer);
    let face = ttf_parser::Face::parse(FONT, 0).map_err(|e| format!("reading the bundled font: {e}"))?;
    let mut w = Writer { doc, font, layer, y: PAGE_H - MARGIN, pages: 1 };
    let mut first = true;
    let width = PAGE_W - 2.0 * MARGIN;
    for b in layout(r) {
        match b {
            Block::Heading(t) => {
                let size = if first { 15.0 } else { 12.0 };
                first = false;
                w.need(Writer::line_height(size) * 2.0 + 8.0);
                w.y -= Writer::line_height(size) + 2.0;
                w.text(&t, size, MARGIN);
                w.y -= 1.5;
                w.rule(w.y);
            }
            Block::Para(t) => w.para(&t, BODY),
            Block::KeyValues(kvs) => {
                let key_mm = kvs.iter().map(|(k, _)| measure(&face, k, BODY)).fold(0f32, f32::max) + 4.0;
                let per_line = (((width - key_mm) / text_mm(1, BODY)) as usize).max(10);
                w.y -= 1.0;
                for (k, v) in kvs {
                    let lines = wrap(&v, per_line);
                    w.need(Writer::line_height(BODY) * lines.len() as f32);
                    w.y -= Writer::line_height(BODY);
                    w.text(&k, BODY, MARGIN);
                    for (i, l) in lines.iter().enumerate() {
                        if i > 0 {
                            w.y -= Writer::line_height(BODY);
                        }
                        w.text(l, BODY, MARGIN + key_mm);
                    }
                }
                w.y -= 1.0;
            }
            Block::Table { headers, rows } => {
                let n = headers.len().max(1);
                let gap = 3.0;
                // Columns sized to their widest cell; smaller type until the table fits, then
                // the widest columns give way (their cells are cut with an ellipsis).
                let natural = |size: f32| -> Vec<f32> {
                    let mut cols = vec![0f32; n];
                    for row in std::iter::once(&headers).chain(rows.iter()) {
                        for (i, c) in row.iter().enumerate().take(n) {
                            cols[i] = cols[i].max(measure(&face, c, size));
                        }
                    }
                    cols
                };
                let total = |cols: &[f32]| cols.iter().sum::<f32>() + gap * (n as f32 - 1.0);
                let mut size = BODY;
                let mut col_mm = natural(size);
                while total(&col_mm) > width && size > 6.0 {
                    size -= 0.5;
                    col_mm = natural(size);
                }
                while total(&col_mm) > width + 0.01 {
                    let excess = total(&col_mm) - width;
                    let (imax, wmax) = col_mm.iter().copied().enumerate().fold((0, 0f32), |a, (i, w)| if w > a.1 { (i, w) } else { a });
                    col_mm[imax] = (wmax - excess).max(wmax * 0.6).max(8.0);
                    if (col_mm[imax] - wmax).abs() < 0.01 {
                        break;
                    }
                }
                let max_mm = col_mm.clone();
                let fit = |c: &str, i: usize| -> String {
                    if measure(&face, c, size) <= max_mm[i] + 0.01 {
                        return c.to_string();
                    }
                    let mut t: String = c.to_string();
                    while !t.is_empty() && measure(&face, &format!("{t}…"), size) > max_mm[i] {
                        t.pop();
                    }
                    format!("{t}…")
                };
                let lh = Writer::line_height(size);
                let draw = |w: &mut Writer, cells: &[String]| {
                    let mut x = MARGIN;
                    for (i, c) in cells.iter().enumerate().take(n) {
                        w.text(&fit(c, i), size, x);
                        x += col_mm[i] + gap;
                    }
                };
                w.need(lh * 3.0);
                w.y -= lh + 1.0;
                draw(&mut w, &headers);
                w.y -= 1.2;
                w.rule(w.y);
                for row in &rows {
                    if w.y - lh < MARGIN {
                        w.new_page();
                        w.y -= lh;
                        draw(&mut w, &headers);
                        w.y -= 1.2;
                        w.rule(w.y);
                    }
                    w.y -= lh;
                    draw(&mut w, row);
                }
                w.y -= 2.0;
            }
            Block::PageBreak => w.new_page(),
        }
    }
    let _ = w.pages;
    w.doc.save_to_bytes().map_err(|e| format!("writing the PDF: {e}"))
}

#[cfg(any(test, feature = "pdf-text"))]
/// The PDF's text, one line per text-showing operator, decoded through the embedded font:
/// glyph ids (2 bytes each, Identity-H) mapped back to characters with the bundled font's own
/// cmap. (printpdf's ToUnicode CMap covers characters outside the BMP with a syntax lopdf
/// cannot parse; the font's cmap is the ground truth anyway.)
pub fn pdf_text(pdf: &[u8]) -> Result<String, String> {
    let face = ttf_parser::Face::parse(FONT, 0).map_err(|e| e.to_string())?;
    let mut by_gid = std::collections::HashMap::new();
    for c in (0x20u32..0x2700).filter_map(char::from_u32) {
        if let Some(g) = face.glyph_index(c) {
            by_gid.entry(g.0).or_insert(c);
        }
    }
    let doc = lopdf::Document::load_mem(pdf).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (_, page) in doc.get_pages() {
        let content =
            lopdf::content::Content::decode(&doc.get_page_content(page).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        for op in content.operations {
            let strings: Vec<&lopdf::Object> = match op.operator.as_str() {
                "Tj" => op.operands.iter().collect(),
                "TJ" => op.operands.iter().filter_map(|o| o.as_array().ok()).flatten().collect(),
                _ => continue,
            };
            for s in strings {
                if let lopdf::Object::String(bytes, _) = s {
                    for pair in bytes.chunks(2) {
                        let gid = u16::from_be_bytes([pair.first().copied().unwrap_or(0), pair.get(1).copied().unwrap_or(0)]);
                        out.push(by_gid.get(&gid).copied().unwrap_or('\u{fffd}'));
                    }
                }
            }
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wraps() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 3), vec![""]);
    }
}
