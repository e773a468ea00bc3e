//! Lag charts as SVG drawn on the server (no chart library, no script): one line per series
//! over the chosen range, newest at the right, with the largest value of each bucket.

use maud::{Markup, html};

use super::layout;
use crate::api::lag::store::ChartPoint;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 24.0;

/// The ranges a chart can show: name, seconds.
pub const RANGES: [(&str, f64); 2] = [("hour", 3600.0), ("day", 86400.0)];

/// Points a chart draws at most (the samples are bucketed to this many).
pub const POINTS: f64 = 240.0;

/// The range called `name` (default: the last hour).
pub fn range(name: Option<&str>) -> (&'static str, f64) {
    RANGES
        .iter()
        .copied()
        .find(|(n, _)| Some(*n) == name)
        .unwrap_or(RANGES[0])
}

/// Shortest time axis: a minute.
pub const MIN_SPAN: f64 = 60.0;

/// One chart of `values` (seconds ago, value) over `range_seconds`, or over the time the
/// samples cover when that is shorter (at least a minute; the axis says which); `format`
/// labels the values.
pub fn chart(
    title: &str,
    class: &str,
    range_seconds: f64,
    values: &[(f64, f64)],
    format: impl Fn(f64) -> String,
) -> Markup {
    let oldest = values.iter().map(|(ago, _)| *ago).fold(0.0_f64, f64::max);
    let range_seconds = range_seconds.min(oldest.max(MIN_SPAN));
    let max = values.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |ago: f64| LEFT + plot_w * (1.0 - (ago / range_seconds).clamp(0.0, 1.0));
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut sorted: Vec<_> = values.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let line: Vec<String> = sorted
        .iter()
        .map(|(ago, v)| format!("{:.1},{:.1}", x(*ago), y(*v)))
        .collect();
    let area = match (sorted.first(), sorted.last()) {
        (Some(first), Some(last)) => format!(
            "{:.1},{:.1} {} {:.1},{:.1}",
            x(first.0),
            y(0.0),
            line.join(" "),
            x(last.0),
            y(0.0)
        ),
        _ => String::new(),
    };
    let view_box = format!("0 0 {WIDTH} {HEIGHT}");
    let ticks = [0.0, 0.5, 1.0];
    html! {
        svg class={ "lag-chart " (class) } viewBox=(view_box) role="img" aria-label=(title)
            xmlns="http://www.w3.org/2000/svg" {
            text.title x=(LEFT) y="15" { (title) }
            @for t in ticks {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(top * t)) y2=(y(top * t)) {}
                text.axis x=(LEFT - 6.0) y=(y(top * t) + 3.0) text-anchor="end" { (format(top * t)) }
            }
            text.axis x=(LEFT) y=(HEIGHT - 6.0) { "-" (layout::seconds(range_seconds)) }
            text.axis x=(WIDTH - RIGHT) y=(HEIGHT - 6.0) text-anchor="end" { "now" }
            @if values.is_empty() {
                text.axis x=(LEFT + plot_w / 2.0) y=(TOP + plot_h / 2.0) text-anchor="middle" {
                    "no samples in this range yet"
                }
            } @else {
                polygon.area points=(area) {}
                polyline.line points=(line.join(" ")) {}
                @for (ago, v) in &sorted {
                    circle.dot cx=(format!("{:.1}", x(*ago))) cy=(format!("{:.1}", y(*v))) r="1.5" {}
                }
            }
        }
    }
}

/// The two lag charts (bytes and seconds) of a pipeline.
pub fn lag_charts(points: &[ChartPoint], range_seconds: f64) -> Markup {
    let bytes: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.lag_bytes.map(|b| (p.ago, b as f64)))
        .collect();
    let seconds: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.lag_seconds.map(|s| (p.ago, s)))
        .collect();
    html! {
        div.charts {
            (chart("Lag (bytes of WAL)", "bytes", range_seconds, &bytes, |v| layout::bytes(v as i64)))
            (chart("Lag (seconds)", "seconds", range_seconds, &seconds, layout::seconds))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_one_point_per_value_and_says_when_it_has_none() {
        let svg = chart("t", "c", 3600.0, &[(0.0, 10.0), (1800.0, 5.0)], |v| {
            format!("{v}")
        })
        .into_string();
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        let empty = chart("t", "c", 3600.0, &[], |v| format!("{v}")).into_string();
        assert!(empty.contains("no samples in this range yet"), "{empty}");
        // Two minutes of samples in the hour's chart: the axis spans the two minutes.
        let short = chart("t", "c", 3600.0, &[(0.0, 1.0), (120.0, 2.0)], |v| {
            format!("{v}")
        })
        .into_string();
        assert!(short.contains(">-2 min<"), "{short}");
        assert!(!empty.contains("<polyline"), "{empty}");
    }

    #[test]
    fn unknown_ranges_fall_back_to_the_last_hour() {
        assert_eq!(range(Some("day")).0, "day");
        assert_eq!(range(Some("<script>")).0, "hour");
        assert_eq!(range(None).1, 3600.0);
    }
}
