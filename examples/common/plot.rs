//! Small, dependency-light PNG plots for the examples: scatter plots with axes, ticks, a
//! title, axis labels and a legend, and labelled heatmaps (e.g. attention weights). Drawn on
//! an RGB [`Canvas`] with the 8x8 bitmap font of `font8x8` (ASCII; other characters show as
//! `?`) and written with `png`.
//!
//! Include it from an example with `#[path = "common/plot.rs"] mod plot;`.

// Each example uses only part of this module.
#![allow(dead_code)]

use std::io::BufWriter;
use std::path::Path;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// White, the background.
pub const WHITE: Rgb = [255, 255, 255];
/// Black, for text and axes.
pub const BLACK: Rgb = [0, 0, 0];
/// Light grey, for grid lines.
pub const LIGHT_GREY: Rgb = [225, 225, 225];
/// A palette of distinguishable series colours (Tableau 10's first entries).
pub const PALETTE: [Rgb; 6] =
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// The glyph size of the bitmap font, in pixels, at scale 1.
pub const GLYPH: usize = 8;

/// An RGB image in memory, origin at the top left, `x` to the right and `y` down. Every
/// drawing call clips to the canvas, so callers may draw partly outside it.
#[derive(Clone, Debug)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width` x `height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas { width, height, pixels: background.repeat(width * height) }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        let i = self.index(x, y)?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside = (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y);
        inside.then(|| 3 * (y as usize * self.width + x as usize))
    }

    /// Sets the pixel at `(x, y)` (nothing outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        self.blend(x, y, color, 1.0);
    }

    /// Mixes `color` into the pixel at `(x, y)` with opacity `alpha` in `[0, 1]`.
    pub fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        let Some(i) = self.index(x, y) else { return };
        let alpha = alpha.clamp(0.0, 1.0);
        for (p, c) in self.pixels[i..i + 3].iter_mut().zip(color) {
            *p = (*p as f32 * (1.0 - alpha) + c as f32 * alpha).round() as u8;
        }
    }

    /// Fills the rectangle with top-left corner `(x, y)` and size `w` x `h`.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, color);
            }
        }
    }

    /// Draws the outline of the rectangle with top-left corner `(x, y)` and size `w` x `h`.
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        self.line(x, y, x + w - 1, y, color);
        self.line(x, y + h - 1, x + w - 1, y + h - 1, color);
        self.line(x, y, x, y + h - 1, color);
        self.line(x + w - 1, y, x + w - 1, y + h - 1, color);
    }

    /// Draws a one-pixel line from `(x0, y0)` to `(x1, y1)`, both ends included (Bresenham).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            if x == x1 && y == y1 {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws a filled disc of radius `radius` centred on `(cx, cy)` with opacity `alpha`.
    pub fn dot(&mut self, cx: i64, cy: i64, radius: i64, color: Rgb, alpha: f32) {
        for y in -radius..=radius {
            for x in -radius..=radius {
                if x * x + y * y <= radius * radius + radius {
                    self.blend(cx + x, cy + y, color, alpha);
                }
            }
        }
    }

    /// Writes `text` left to right with its top-left corner at `(x, y)`, each glyph
    /// `8 * scale` pixels square.
    pub fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb, scale: usize) {
        self.glyphs(x, y, text, color, scale, false);
    }

    /// Writes `text` bottom to top (rotated a quarter turn anticlockwise) with the bottom-left
    /// corner of its first glyph at `(x, y)`: for vertical axis labels.
    pub fn text_up(&mut self, x: i64, y: i64, text: &str, color: Rgb, scale: usize) {
        self.glyphs(x, y, text, color, scale, true);
    }

    fn glyphs(&mut self, x: i64, y: i64, text: &str, color: Rgb, scale: usize, up: bool) {
        let s = scale.max(1) as i64;
        let step = GLYPH as i64 * s;
        for (k, c) in text.chars().enumerate() {
            let glyph = glyph(c);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH {
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    let (gx, gy) = (col as i64 * s, row as i64 * s);
                    // Rotated: the glyph's columns run up, its rows run right.
                    let (px, py) = if up {
                        (x + gy, y - k as i64 * step - gx - s + 1)
                    } else {
                        (x + k as i64 * step + gx, y + gy)
                    };
                    self.fill_rect(px, py, s, s, color);
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG at `path`, creating its folder if needed.
    ///
    /// # Errors
    /// Any I/O or encoding error.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&self.pixels).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}

/// The 8x8 bitmap of an ASCII character (rows top to bottom, bit `i` is column `i` from the
/// left); `?` for anything else.
fn glyph(c: char) -> [u8; 8] {
    let code = if c.is_ascii() { c as usize } else { '?' as usize };
    font8x8::legacy::BASIC_LEGACY[code]
}

/// The width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * GLYPH * scale.max(1)
}

/// Round tick positions covering `[lo, hi]`: about `target` multiples of 1, 2 or 5 times a
/// power of ten.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Formats a tick value compactly: `-4`, `0.5`, `1e-3`.
pub fn tick_label(v: f64) -> String {
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    if v == v.round() && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() >= 1e-2 && v.abs() < 1e6 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// One set of points in a [`scatter`] plot.
#[derive(Clone, Debug)]
pub struct Series<'a> {
    /// The legend entry.
    pub label: &'a str,
    /// The points `[x, y]` in data coordinates.
    pub points: &'a [[f32; 2]],
    /// The points' colour.
    pub color: Rgb,
}

/// The frame of a [`scatter`] plot.
#[derive(Clone, Debug)]
pub struct ScatterOptions<'a> {
    /// The title, above the plot.
    pub title: &'a str,
    /// The horizontal axis label.
    pub x_label: &'a str,
    /// The vertical axis label.
    pub y_label: &'a str,
    /// The data range shown horizontally, `(min, max)`.
    pub x_range: (f64, f64),
    /// The data range shown vertically, `(min, max)`.
    pub y_range: (f64, f64),
    /// The side of the square plotting area in pixels. Default 480.
    pub size: usize,
    /// The points' radius in pixels. Default 1.
    pub radius: i64,
    /// The points' opacity in `[0, 1]`. Default 0.5.
    pub alpha: f32,
}

impl<'a> ScatterOptions<'a> {
    /// Options with the given title and ranges, axis labels `x` and `y`, and the defaults.
    pub fn new(title: &'a str, x_range: (f64, f64), y_range: (f64, f64)) -> Self {
        ScatterOptions {
            title,
            x_label: "x",
            y_label: "y",
            x_range,
            y_range,
            size: 480,
            radius: 1,
            alpha: 0.5,
        }
    }
}

const MARGIN_LEFT: usize = 56;
const MARGIN_RIGHT: usize = 24;
const MARGIN_TOP: usize = 40;
const MARGIN_BOTTOM: usize = 64;

/// Draws `series` (in order, so later series lie on top) as a scatter plot with a grid, axes,
/// numbered ticks, axis labels, the title and a legend below the axes, and returns the canvas.
/// Points outside the ranges are not drawn.
pub fn scatter_canvas(series: &[Series], options: &ScatterOptions) -> Canvas {
    let size = options.size.max(64);
    let (w, h) = (MARGIN_LEFT + size + MARGIN_RIGHT, MARGIN_TOP + size + MARGIN_BOTTOM);
    let mut canvas = Canvas::new(w, h, WHITE);
    let (x0, y0, side) = (MARGIN_LEFT as i64, MARGIN_TOP as i64, size as i64);
    let (xr, yr) = (options.x_range, options.y_range);
    let to_px = |x: f64| x0 + ((x - xr.0) / (xr.1 - xr.0) * (side - 1) as f64).round() as i64;
    let to_py = |y: f64| y0 + side - 1 - ((y - yr.0) / (yr.1 - yr.0) * (side - 1) as f64).round() as i64;

    // Grid and ticks.
    for t in ticks(xr.0, xr.1, 8) {
        let px = to_px(t);
        canvas.line(px, y0, px, y0 + side - 1, LIGHT_GREY);
        canvas.line(px, y0 + side, px, y0 + side + 3, BLACK);
        let label = tick_label(t);
        canvas.text(px - text_width(&label, 1) as i64 / 2, y0 + side + 6, &label, BLACK, 1);
    }
    for t in ticks(yr.0, yr.1, 8) {
        let py = to_py(t);
        canvas.line(x0, py, x0 + side - 1, py, LIGHT_GREY);
        canvas.line(x0 - 4, py, x0 - 1, py, BLACK);
        let label = tick_label(t);
        canvas.text(x0 - 7 - text_width(&label, 1) as i64, py - 3, &label, BLACK, 1);
    }

    // Points, clipped to the plotting area.
    for s in series {
        for &[x, y] in s.points {
            let (x, y) = (x as f64, y as f64);
            if x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1 {
                canvas.dot(to_px(x), to_py(y), options.radius, s.color, options.alpha);
            }
        }
    }
    canvas.stroke_rect(x0 - 1, y0 - 1, side + 2, side + 2, BLACK);

    // Title (twice the size when it fits), axis labels and legend.
    let scale = if text_width(options.title, 2) <= w { 2 } else { 1 };
    let tw = text_width(options.title, scale) as i64;
    canvas.text(
        (w as i64 - tw).max(0) / 2,
        (MARGIN_TOP as i64 - 8 * scale as i64) / 2,
        options.title,
        BLACK,
        scale,
    );
    let xw = text_width(options.x_label, 1) as i64;
    canvas.text(x0 + (side - xw) / 2, y0 + side + 20, options.x_label, BLACK, 1);
    let yw = text_width(options.y_label, 1) as i64;
    canvas.text_up(6, y0 + (side + yw) / 2, options.y_label, BLACK, 1);
    let mut lx = x0;
    let ly = (h - 16) as i64;
    for s in series {
        canvas.dot(lx + 4, ly + 3, 4, s.color, 1.0);
        canvas.text(lx + 12, ly, s.label, BLACK, 1);
        lx += 12 + text_width(s.label, 1) as i64 + 24;
    }
    canvas
}

/// Draws a scatter plot (see [`scatter_canvas`]) and writes it as a PNG at `path`.
///
/// # Errors
/// Any I/O or encoding error.
pub fn scatter(series: &[Series], options: &ScatterOptions, path: impl AsRef<Path>) -> std::io::Result<()> {
    scatter_canvas(series, options).save(path)
}

/// The heatmap colour of `t` in `[0, 1]`: white through light blue to dark blue.
pub fn heat_color(t: f32) -> Rgb {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let stops: [(f32, Rgb); 3] = [(0.0, [255, 255, 255]), (0.5, [107, 174, 214]), (1.0, [8, 48, 107])];
    let (lo, hi) = if t <= 0.5 { (stops[0], stops[1]) } else { (stops[1], stops[2]) };
    let u = (t - lo.0) / (hi.0 - lo.0);
    let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * u).round() as u8;
    [mix(lo.1[0], hi.1[0]), mix(lo.1[1], hi.1[1]), mix(lo.1[2], hi.1[2])]
}

/// Side of a heatmap cell in pixels.
pub const CELL: usize = 24;

/// Draws `matrix` (rows of equal length; row `i` is drawn at the `i`-th row from the top) as a
/// grid of cells coloured from white (the smallest value, or 0 when every value is positive)
/// to dark blue (the largest), with `row_labels` left of the rows, `col_labels` written
/// upwards above the columns, the title on top and a colour bar with the value range on the
/// right, and returns the canvas. Suits attention weights: rows are output steps, columns
/// input tokens. Missing labels are left blank; non-finite values are drawn white.
pub fn heatmap_canvas<R: AsRef<str>, C: AsRef<str>>(
    matrix: &[Vec<f32>],
    row_labels: &[R],
    col_labels: &[C],
    title: &str,
) -> Canvas {
    let rows = matrix.len();
    let cols = matrix.iter().map(Vec::len).max().unwrap_or(0);
    let finite = || matrix.iter().flatten().copied().filter(|v| v.is_finite());
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    let lo = finite().fold(f32::INFINITY, f32::min).min(0.0);
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };

    let row_w = row_labels.iter().map(|l| text_width(l.as_ref(), 1)).max().unwrap_or(0);
    let col_h = col_labels.iter().map(|l| text_width(l.as_ref(), 1)).max().unwrap_or(0);
    let left = row_w + 12;
    let top = 36 + col_h + 8;
    let (grid_w, grid_h) = (cols * CELL, rows * CELL);
    let bar_x = left + grid_w + 16;
    let value_w = text_width(&tick_label(lo as f64), 1).max(text_width(&tick_label(hi as f64), 1));
    let w = (bar_x + 12 + 6 + value_w + 8).max(text_width(title, 1) + 16);
    let h = top + grid_h.max(64) + 12;
    let mut canvas = Canvas::new(w, h, WHITE);

    let title_scale = if text_width(title, 2) + 16 <= w { 2 } else { 1 };
    let tw = text_width(title, title_scale) as i64;
    canvas.text((w as i64 - tw) / 2, 10, title, BLACK, title_scale);

    let (left, top) = (left as i64, top as i64);
    let cell = CELL as i64;
    for (i, row) in matrix.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = if v.is_finite() { (v - lo) / (hi - lo) } else { 0.0 };
            canvas.fill_rect(left + j as i64 * cell, top + i as i64 * cell, cell, cell, heat_color(t));
        }
    }
    canvas.stroke_rect(left - 1, top - 1, grid_w as i64 + 2, grid_h as i64 + 2, BLACK);
    for (i, label) in row_labels.iter().take(rows).enumerate() {
        let label = label.as_ref();
        let x = left - 6 - text_width(label, 1) as i64;
        canvas.text(x, top + i as i64 * cell + (cell - 8) / 2, label, BLACK, 1);
    }
    for (j, label) in col_labels.iter().take(cols).enumerate() {
        canvas.text_up(left + j as i64 * cell + (cell - 8) / 2, top - 6, label.as_ref(), BLACK, 1);
    }

    // Colour bar: the largest value on top.
    let bar_h = grid_h.max(64) as i64;
    for y in 0..bar_h {
        let t = 1.0 - y as f32 / (bar_h - 1).max(1) as f32;
        canvas.fill_rect(bar_x as i64, top + y, 12, 1, heat_color(t));
    }
    canvas.stroke_rect(bar_x as i64 - 1, top - 1, 14, bar_h + 2, BLACK);
    canvas.text(bar_x as i64 + 18, top, &tick_label(hi as f64), BLACK, 1);
    canvas.text(bar_x as i64 + 18, top + bar_h - 8, &tick_label(lo as f64), BLACK, 1);
    canvas
}

/// Draws a heatmap (see [`heatmap_canvas`]) and writes it as a PNG at `path`.
///
/// # Errors
/// Any I/O or encoding error.
pub fn heatmap<R: AsRef<str>, C: AsRef<str>>(
    matrix: &[Vec<f32>],
    row_labels: &[R],
    col_labels: &[C],
    title: &str,
    path: impl AsRef<Path>,
) -> std::io::Result<()> {
    heatmap_canvas(matrix, row_labels, col_labels, title).save(path)
}
