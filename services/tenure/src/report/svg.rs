//! Small inline-SVG charts: bars, stacked bars, lines and points on a
//! plot area with axes. No script and no network at view time.

use std::fmt::Write as _;

pub(super) const WIDTH: f64 = 640.0;
pub(super) const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

pub(super) const RED: &str = "#d64545";
pub(super) const YELLOW: &str = "#e8b43a";
pub(super) const GREEN: &str = "#3f9c5a";
pub(super) const BLUE: &str = "#3b6fb6";
pub(super) const GREY: &str = "#8a8f98";
pub(super) const PALETTE: [&str; 6] = [BLUE, "#c0622f", "#7a54a8", GREEN, "#2a9d9a", GREY];

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plot area mapping data to pixels.
pub(super) struct Plot {
    x: (f64, f64),
    y: (f64, f64),
    body: String,
}

impl Plot {
    pub(super) fn new(x: (f64, f64), y: (f64, f64)) -> Self {
        let widen = |(lo, hi): (f64, f64)| if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
        Self {
            x: widen(x),
            y: widen(y),
            body: String::new(),
        }
    }

    pub(super) fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - LEFT - RIGHT)
    }

    pub(super) fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - TOP - BOTTOM)
    }

    /// A rectangle from (x0, y0) to (x1, y1) in data units.
    pub(super) fn rect(&mut self, x0: f64, x1: f64, y0: f64, y1: f64, fill: &str, title: &str) {
        let (left, right) = (self.px(x0.min(x1)), self.px(x0.max(x1)));
        let (top, bottom) = (self.py(y0.max(y1)), self.py(y0.min(y1)));
        let _ = write!(
            self.body,
            r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            (right - left).max(0.5),
            (bottom - top).max(0.5),
            escape(title)
        );
    }

    pub(super) fn line(&mut self, points: &[(f64, f64)], stroke: &str, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
    }

    pub(super) fn dot(&mut self, x: f64, y: f64, fill: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}"><title>{}</title></circle>"#,
            self.px(x),
            self.py(y),
            escape(title)
        );
    }

    pub(super) fn text(&mut self, x: f64, y: f64, text: &str, anchor: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="{anchor}">{}</text>"#,
            self.px(x),
            self.py(y),
            escape(text)
        );
    }

    /// The finished chart with axes; `x_ticks`/`y_ticks` are (value, label).
    pub(super) fn finish(
        self,
        name: &str,
        x_ticks: &[(f64, String)],
        y_ticks: &[(f64, String)],
    ) -> String {
        let mut axes = String::new();
        let (x0, x1, y0) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM);
        let _ = write!(
            axes,
            r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/><line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}" stroke="#444"/>"##
        );
        for (value, label) in x_ticks {
            let _ = write!(
                axes,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                self.px(*value),
                y0 + 14.0,
                escape(label)
            );
        }
        for (value, label) in y_ticks {
            let y = self.py(*value);
            let _ = write!(
                axes,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e6ea"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                y + 3.0,
                escape(label)
            );
        }
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">{axes}<g class="marks">{}</g></svg>"#,
            escape(name),
            self.body
        )
    }
}

/// Ticks at `count` even steps over `[low, high]`.
pub(super) fn ticks(
    low: f64,
    high: f64,
    count: usize,
    label: impl Fn(f64) -> String,
) -> Vec<(f64, String)> {
    (0..=count)
        .map(|i| {
            let value = low + (high - low) * i as f64 / count as f64;
            (value, label(value))
        })
        .collect()
}

/// `1234567` → `1.2M`.
pub(super) fn short(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// A legend as an HTML list of keys, one colour to each name.
pub(super) fn legend<S: AsRef<str>>(names: &[S], colors: &[&str]) -> String {
    let keys: Vec<String> = names
        .iter()
        .zip(colors)
        .map(|(name, color)| {
            format!(
                r#"<span class="key"><i style="background:{color}"></i>{}</span>"#,
                escape(name.as_ref())
            )
        })
        .collect();
    format!(r#"<div class="legend">{}</div>"#, keys.join(""))
}
