//! The examples' plotting module (`examples/common/plot.rs`, drawn with `plotters`): PNG files
//! and bytes of the right size, points and cells in their colours where the data puts them,
//! text drawn from the compiled-in font, and bad inputs refused.

#[path = "../examples/common/plot.rs"]
mod plot;

use std::path::PathBuf;

/// The width and height in a PNG file's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[1..4], b"PNG");
    let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}

fn count(canvas: &plot::Canvas, pred: impl Fn(plot::Rgb) -> bool) -> usize {
    (0..canvas.height() as i64)
        .flat_map(|y| (0..canvas.width() as i64).map(move |x| (x, y)))
        .filter(|&(x, y)| canvas.get(x, y).is_some_and(&pred))
        .count()
}

/// The red pixels of `canvas` in the columns `x0..x1`.
fn red_at_b(canvas: &plot::Canvas, x0: i64, x1: i64) -> usize {
    let h = canvas.height() as i64;
    (x0..x1)
        .flat_map(|x| (0..h).map(move |y| (x, y)))
        .filter(|&(x, y)| canvas.get(x, y) == Some([255, 0, 0]))
        .count()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("couplet-plot-{name}-{}", std::process::id()))
}

#[test]
fn scatter_draws_points_inside_the_ranges_only() {
    let red = [255, 0, 0];
    let mut options = plot::ScatterOptions::new("title", (-1.0, 1.0), (-1.0, 1.0));
    options.alpha = 1.0;
    options.radius = 3;
    options.size = 200;
    let inside = [[-0.5f32, 0.5], [0.5, -0.5]];
    let outside = [[2.0f32, 0.0], [0.0, -3.0]];
    let with = |points: &[[f32; 2]]| {
        let series = [plot::Series { label: "p", points, color: red }];
        plot::scatter_canvas(&series, &options).unwrap()
    };
    let (a, b) = (with(&inside), with(&outside));
    // The same frame: the legend's marker is red in both; the points add red discs.
    let (red_a, red_b) = (count(&a, |c| c == red), count(&b, |c| c == red));
    assert!(red_b > 0, "the legend marker");
    // Two discs of radius 3: at least 2 * 21 pixels each (a filled radius-3 disc).
    assert!(red_a >= red_b + 2 * 21, "{red_a} vs {red_b}");
    // The plotting area spans pixels 64..264 horizontally: (-0.5, 0.5) is drawn left of its
    // middle, (0.5, -0.5) right of it (where the legend is too).
    let (w, h) = (a.width() as i64, a.height() as i64);
    let middle = 64 + 100;
    let red_at = |x0: i64, x1: i64| {
        (x0..x1).flat_map(|x| (0..h).map(move |y| (x, y))).filter(|&(x, y)| a.get(x, y) == Some(red)).count()
    };
    assert!(red_at(0, middle) >= 21 && red_at(middle, w) >= 21);
    assert_eq!(count(&b, |c| c == red), red_at_b(&b, middle, w));
    // Text (title, ticks, axis labels) is drawn: dark pixels in the top band.
    let dark = |c: plot::Rgb| c.iter().all(|&v| v < 100);
    let title_band =
        (0..30).flat_map(|y| (0..w).map(move |x| (x, y))).filter(|&(x, y)| a.get(x, y).is_some_and(dark));
    assert!(title_band.count() > 20);
    let e = plot::scatter_canvas(&[], &plot::ScatterOptions::new("t", (1.0, 1.0), (0.0, 1.0))).unwrap_err();
    assert!(e.to_string().contains("x_range"), "{e}");
}

#[test]
fn scatter_png_bytes_and_files_agree() {
    let points = [[0.0f32, 0.0]];
    let series = [plot::Series { label: "p", points: &points, color: plot::PALETTE[0] }];
    let options = plot::ScatterOptions::new("t", (-1.0, 1.0), (-1.0, 1.0));
    let bytes = plot::scatter_png(&series, &options).unwrap();
    let canvas = plot::scatter_canvas(&series, &options).unwrap();
    assert_eq!(png_size(&bytes), (canvas.width() as u32, canvas.height() as u32));
    // 480-pixel plotting area plus the margins.
    assert_eq!(png_size(&bytes), (64 + 480 + 16, 40 + 480 + 56));
    let path = temp("scatter").join("sub/s.png");
    plot::scatter(&series, &options, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_dir_all(temp("scatter")).unwrap();
}

#[test]
fn heatmap_colours_cells_by_value() {
    let matrix = vec![vec![0.0, 1.0, 0.5], vec![1.0, 0.0, f32::NAN]];
    let canvas = plot::heatmap_canvas(&matrix, &["a", "bb"], &["x", "y", "zzz"], "attention").unwrap();
    let dark = plot::heat_color(1.0);
    let mid = plot::heat_color(0.5);
    assert_eq!(dark, [8, 48, 107]);
    assert_eq!(mid, [107, 174, 214]);
    assert_eq!(plot::heat_color(f32::NAN), plot::WHITE);
    // Two cells of the largest value and one of the middle, each at least CELL x CELL (the
    // colour bar adds a sliver of each colour at most).
    let cell = (plot::CELL * plot::CELL) as f64;
    let dark_px = count(&canvas, |c| c == dark) as f64;
    let mid_px = count(&canvas, |c| c == mid) as f64;
    assert!(mid_px >= cell, "{mid_px}");
    assert!(dark_px > 1.8 * mid_px && dark_px < 2.3 * mid_px, "{dark_px} vs {mid_px}");
    // Row 0 is on top: its first cell (value 0) is white, so the first dark pixel in reading
    // order is cell (0, 1)'s corner, right of the row labels ("bb": 26 pixels) and one cell,
    // below the title. (Were the rows flipped, it would be cell (1, 0), at the labels' edge.)
    let first_dark = (0..canvas.height() as i64)
        .flat_map(|y| (0..canvas.width() as i64).map(move |x| (x, y)))
        .find(|&(x, y)| canvas.get(x, y) == Some(dark))
        .unwrap();
    assert!(first_dark.0 >= 26 + plot::CELL as i64 - 2 && first_dark.1 >= 20, "{first_dark:?}");
    let bytes = plot::heatmap_png(&matrix, &["a", "bb"], &["x", "y", "zzz"], "attention").unwrap();
    assert_eq!(png_size(&bytes), (canvas.width() as u32, canvas.height() as u32));
    let path = temp("heatmap").join("h.png");
    plot::heatmap(&matrix, &["a", "bb"], &["x", "y", "zzz"], "attention", &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_dir_all(temp("heatmap")).unwrap();
    // Characters outside the compiled-in font are left out, not an error.
    assert!(plot::heatmap_png(&matrix, &["ü", "→"], &["é"], "Fußball → ∑").is_ok());
    let empty: Vec<Vec<f32>> = Vec::new();
    assert!(plot::heatmap_canvas(&empty, &[""; 0], &[""; 0], "t").is_err());
}

#[test]
fn tick_labels_are_compact() {
    let labels: Vec<String> = [-4.0, 0.5, 0.125, 1e-3, 0.0].iter().map(|&v| plot::tick_label(v)).collect();
    assert_eq!(labels, ["-4", "0.5", "0.125", "1e-3", "0"]);
}
