//! PNG plots for the examples, drawn with `plotters` (bitmap backend): scatter plots with a
//! grid, numbered axes, axis labels, a title and a legend, and labelled heatmaps (e.g.
//! attention weights) with a colour bar. Each plot comes as a file ([`scatter`],
//! [`heatmap`]) or as PNG bytes ([`scatter_png`], [`heatmap_png`]) for TensorBoard's image
//! dashboard (`SummaryWriter::add_image`).
//!
//! Text is drawn with `plotters`' `ab_glyph` backend from a 10 KB subset of DejaVu Sans
//! compiled in (`common/fonts`), so no system font is needed. The font covers printable
//! ASCII and `° µ × – −`; other characters are left out of the picture.
//!
//! Include it from an example with `#[path = "common/plot.rs"] mod plot;`.

// Each example uses only part of this module.
#![allow(dead_code)]

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::io;
use std::path::Path;
use std::sync::OnceLock;

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

/// The family name the compiled-in font is registered under.
const FONT: &str = "sans-serif";

/// Registers the compiled-in font with `plotters` (once per process).
fn font() -> io::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes: &'static [u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");
            register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| "the compiled-in font is invalid".to_string())
        })
        .clone()
        .map_err(io::Error::other)
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A `plotters` error as an I/O error (drawing into memory fails only on bad layouts).
fn drawing<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("plot: {e}"))
}

/// An RGB image in memory, origin at the top left, `x` to the right and `y` down.
#[derive(Clone, Debug)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width` x `height` canvas drawn by `draw` on a white `plotters` drawing area.
    fn draw(
        width: usize,
        height: usize,
        draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> io::Result<()>,
    ) -> io::Result<Self> {
        font()?;
        let size = width.checked_mul(height).and_then(|n| n.checked_mul(3));
        let size =
            size.ok_or_else(|| io::Error::other(format!("plot: {width} x {height} pixels overflow")))?;
        let (w, h) = (u32::try_from(width).map_err(drawing)?, u32::try_from(height).map_err(drawing)?);
        let mut pixels = vec![255u8; size];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
            draw(&root)?;
            root.present().map_err(drawing)?;
        }
        Ok(Canvas { width, height, pixels })
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
        let inside = (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y);
        let i = inside.then(|| 3 * (y as usize * self.width + x as usize))?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// The canvas as the bytes of an 8-bit RGB PNG file.
    ///
    /// # Errors
    /// Any encoding error.
    pub fn png(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer.write_image_data(&self.pixels).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        Ok(out)
    }

    /// Writes the canvas as a PNG file at `path`, creating its folder if needed.
    ///
    /// # Errors
    /// Any I/O or encoding error.
    pub fn save(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.png()?)
    }
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

/// Space around a scatter plot's square plotting area: left (tick labels and the vertical
/// axis label), right, top (title) and bottom (tick labels, axis label).
const MARGIN_LEFT: usize = 64;
const MARGIN_RIGHT: usize = 16;
const MARGIN_TOP: usize = 40;
const MARGIN_BOTTOM: usize = 56;

/// Draws `series` (in order, so later series lie on top) as a scatter plot with a grid, axes,
/// numbered ticks, axis labels, the title and a legend in the upper right corner, and returns
/// the canvas. Points outside the ranges are not drawn.
///
/// # Errors
/// An empty or non-finite range, or a drawing error.
pub fn scatter_canvas(series: &[Series], options: &ScatterOptions) -> io::Result<Canvas> {
    let (xr, yr) = (options.x_range, options.y_range);
    for (name, (lo, hi)) in [("x_range", xr), ("y_range", yr)] {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(io::Error::other(format!(
                "plot: {name} must be finite with min < max, got ({lo}, {hi})"
            )));
        }
    }
    let side = options.size.max(64);
    let (w, h) = (MARGIN_LEFT + side + MARGIN_RIGHT, MARGIN_TOP + side + MARGIN_BOTTOM);
    Canvas::draw(w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(options.title, (FONT, 20).into_font().color(&rgb(BLACK)))
            .margin_right(MARGIN_RIGHT as u32)
            .x_label_area_size(MARGIN_BOTTOM as u32)
            .y_label_area_size(MARGIN_LEFT as u32)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(9)
            .y_labels(9)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .x_desc(options.x_label)
            .y_desc(options.y_label)
            .label_style((FONT, 12).into_font().color(&rgb(BLACK)))
            .axis_desc_style((FONT, 14).into_font().color(&rgb(BLACK)))
            .bold_line_style(rgb(LIGHT_GREY))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(drawing)?;
        let alpha = f64::from(options.alpha.clamp(0.0, 1.0));
        let radius = options.radius.clamp(0, 64) as i32;
        for s in series {
            let color = rgb(s.color);
            let inside = s
                .points
                .iter()
                .map(|&[x, y]| (f64::from(x), f64::from(y)))
                .filter(|&(x, y)| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1);
            chart
                .draw_series(inside.map(|p| Circle::new(p, radius, color.mix(alpha).filled())))
                .map_err(drawing)?
                .label(s.label)
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12).into_font().color(&rgb(BLACK)))
            .background_style(rgb(WHITE).mix(0.85))
            .border_style(rgb(BLACK))
            .draw()
            .map_err(drawing)
    })
}

/// Draws a scatter plot (see [`scatter_canvas`]) and returns it as PNG bytes.
///
/// # Errors
/// As [`scatter_canvas`], or an encoding error.
pub fn scatter_png(series: &[Series], options: &ScatterOptions) -> io::Result<Vec<u8>> {
    scatter_canvas(series, options)?.png()
}

/// Draws a scatter plot (see [`scatter_canvas`]) and writes it as a PNG at `path`.
///
/// # Errors
/// As [`scatter_canvas`], or any I/O or encoding error.
pub fn scatter(series: &[Series], options: &ScatterOptions, path: impl AsRef<Path>) -> io::Result<()> {
    scatter_canvas(series, options)?.save(path)
}

/// The heatmap colour of `t` in `[0, 1]`: white through light blue to dark blue
/// (non-finite values are white).
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

/// Width of a heatmap's colour-bar column: a gap, the 14-pixel bar and its value labels.
const BAR: usize = 12 + 14 + 48;

/// Draws `matrix` (rows of equal length; row `i` is drawn `i`-th from the top) as a grid of
/// `CELL`-pixel cells coloured from white (the smallest value, or 0 when every value is
/// positive) to dark blue (the largest), with `row_labels` left of the rows, `col_labels`
/// under the columns (written upwards), the title on top and a colour bar with the value
/// range on the right, and returns the canvas. Suits attention weights: rows are output
/// steps, columns input tokens. Missing labels are left blank; non-finite values are white.
///
/// # Errors
/// An empty matrix, or a drawing error.
pub fn heatmap_canvas<R: AsRef<str>, C: AsRef<str>>(
    matrix: &[Vec<f32>],
    row_labels: &[R],
    col_labels: &[C],
    title: &str,
) -> io::Result<Canvas> {
    let rows = matrix.len();
    let cols = matrix.iter().map(Vec::len).max().unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Err(io::Error::other("plot: a heatmap needs at least one row and one column"));
    }
    let finite = || matrix.iter().flatten().copied().filter(|v| v.is_finite());
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    let lo = finite().fold(f32::INFINITY, f32::min).min(0.0);
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };

    // Label areas sized for the longest label at 7 pixels a character (12-pixel text).
    let longest = |labels: &mut dyn Iterator<Item = usize>| labels.max().unwrap_or(0) * 7 + 12;
    let row_w = longest(&mut row_labels.iter().map(|l| l.as_ref().chars().count()));
    let col_h = longest(&mut col_labels.iter().map(|l| l.as_ref().chars().count()));
    let top = 40;
    let grid_h = (rows * CELL).max(64);
    let w = (row_w + cols * CELL + 8 + BAR).max(title.chars().count() * 10 + 16);
    let h = top + grid_h + col_h + 8;
    Canvas::draw(w, h, |root| {
        let (grid_area, bar_area) = root.split_horizontally((w - BAR) as u32);
        let mut chart = ChartBuilder::on(&grid_area)
            .caption(title, (FONT, 18).into_font().color(&rgb(BLACK)))
            .margin_right(8)
            .x_label_area_size(col_h as u32)
            .y_label_area_size(row_w as u32)
            .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)
            .map_err(drawing)?;
        chart.configure_mesh().disable_mesh().x_labels(0).y_labels(0).draw().map_err(drawing)?;
        // Labels beside each row's and under each column's centre.
        let style = (FONT, 12).into_font().color(&rgb(BLACK));
        for (i, label) in row_labels.iter().take(rows).enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, (rows - i) as f64 - 0.5));
            let pos = Pos::new(HPos::Right, VPos::Center);
            root.draw(&Text::new(label.as_ref(), (x - 6, y), style.clone().pos(pos))).map_err(drawing)?;
        }
        let upwards =
            style.clone().transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
        for (j, label) in col_labels.iter().take(cols).enumerate() {
            let (x, y) = chart.backend_coord(&(j as f64 + 0.5, 0.0));
            root.draw(&Text::new(label.as_ref(), (x, y + 6), upwards.clone())).map_err(drawing)?;
        }
        let cells = matrix.iter().enumerate().flat_map(|(i, row)| {
            let y = rows - 1 - i;
            row.iter().enumerate().map(move |(j, &v)| {
                let t = if v.is_finite() { (v - lo) / (hi - lo) } else { 0.0 };
                let corners = [(j as f64, (y + 1) as f64), ((j + 1) as f64, y as f64)];
                Rectangle::new(corners, rgb(heat_color(t)).filled())
            })
        });
        chart.draw_series(cells).map_err(drawing)?;

        // The colour bar: the largest value on top.
        let mut bar = ChartBuilder::on(&bar_area)
            .margin_top(top as u32)
            .margin_bottom(col_h as u32)
            .margin_left(12)
            .right_y_label_area_size(48)
            .build_cartesian_2d(0.0..1.0, f64::from(lo)..f64::from(hi))
            .map_err(drawing)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(2)
            .y_label_formatter(&|v| tick_label(*v))
            .label_style((FONT, 12).into_font().color(&rgb(BLACK)))
            .draw()
            .map_err(drawing)?;
        let steps = 64;
        let span = f64::from(hi - lo);
        bar.draw_series((0..steps).map(|k| {
            let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
            let color = rgb(heat_color(((a + b) / 2.0) as f32));
            Rectangle::new([(0.0, f64::from(lo) + a * span), (1.0, f64::from(lo) + b * span)], color.filled())
        }))
        .map_err(drawing)?;
        Ok(())
    })
}

/// Draws a heatmap (see [`heatmap_canvas`]) and returns it as PNG bytes.
///
/// # Errors
/// As [`heatmap_canvas`], or an encoding error.
pub fn heatmap_png<R: AsRef<str>, C: AsRef<str>>(
    matrix: &[Vec<f32>],
    row_labels: &[R],
    col_labels: &[C],
    title: &str,
) -> io::Result<Vec<u8>> {
    heatmap_canvas(matrix, row_labels, col_labels, title)?.png()
}

/// Draws a heatmap (see [`heatmap_canvas`]) and writes it as a PNG at `path`.
///
/// # Errors
/// As [`heatmap_canvas`], or any I/O or encoding error.
pub fn heatmap<R: AsRef<str>, C: AsRef<str>>(
    matrix: &[Vec<f32>],
    row_labels: &[R],
    col_labels: &[C],
    title: &str,
    path: impl AsRef<Path>,
) -> io::Result<()> {
    heatmap_canvas(matrix, row_labels, col_labels, title)?.save(path)
}
