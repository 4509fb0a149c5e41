//! Server-rendered SVG charts: no script, no inline style (colours come from classes in the
//! console's stylesheet, so the strict CSP holds).

use std::fmt::Write;

pub struct Series {
    pub label: String,
    /// One value per bucket; `NaN` where there is none (the line has a gap there).
    pub values: Vec<f64>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A line chart of equally spaced buckets; `x_labels`: (bucket index, text) ticks.
pub fn lines(title: &str, series: &[Series], x_labels: &[(usize, String)], unit: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const L: f64 = 48.0;
    const R: f64 = 12.0;
    const T: f64 = 14.0;
    const B: f64 = 28.0;
    let n = series.iter().map(|s| s.values.len()).chain(x_labels.iter().map(|(i, _)| i + 1)).max().unwrap_or(0);
    let max = series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    // Four gridlines at round values.
    let top = nice_ceiling(max / 4.0) * 4.0;
    let legend_h = 18.0 * series.len().div_ceil(4) as f64;
    let total_h = H + legend_h;
    let mut o = String::new();
    let _ =
        write!(o, r#"<svg class="chart" viewBox="0 0 {W} {total_h}" role="img" aria-label="{}"><title>{}</title>"#, esc(title), esc(title));
    let plot_w = W - L - R;
    let plot_h = H - T - B;
    let x = |i: usize| L + if n > 1 { plot_w * i as f64 / (n - 1) as f64 } else { 0.0 };
    let y = |v: f64| T + plot_h - if top > 0.0 { plot_h * v / top } else { 0.0 };
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let yy = y(v);
        let _ = write!(o, r#"<line class="grid" x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/>"#, W - R);
        let _ = write!(o, r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, L - 6.0, yy + 4.0, fmt_num(v));
    }
    for (i, label) in x_labels {
        let anchor = if *i == 0 {
            "start"
        } else if *i + 1 >= n {
            "end"
        } else {
            "middle"
        };
        let _ = write!(o, r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#, x(*i), H - 8.0, esc(label));
    }
    if !unit.is_empty() {
        let _ = write!(o, r#"<text class="axis" x="{L}" y="10">{}</text>"#, esc(unit));
    }
    if series.iter().all(|s| s.values.iter().all(|v| !v.is_finite())) {
        let _ = write!(
            o,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no traffic in this period</text>"#,
            L + plot_w / 2.0,
            T + plot_h / 2.0
        );
    }
    for (si, s) in series.iter().enumerate() {
        // One polyline per run of values; a lone value between gaps is a dot.
        let mut runs: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
        for (i, v) in s.values.iter().enumerate() {
            if v.is_finite() {
                if let Some(r) = runs.last_mut() {
                    r.push((i, *v));
                }
            } else if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            if let [(i, v)] = run.as_slice() {
                let _ = write!(
                    o,
                    r#"<circle class="dot s{}" cx="{:.1}" cy="{:.1}" r="2.5"><title>{}</title></circle>"#,
                    si % 8,
                    x(*i),
                    y(*v),
                    esc(&s.label)
                );
                continue;
            }
            let pts: Vec<String> = run.iter().map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v))).collect();
            let _ =
                write!(o, r#"<polyline class="line s{}" points="{}"><title>{}</title></polyline>"#, si % 8, pts.join(" "), esc(&s.label));
        }
        let lx = 8.0 + (si % 4) as f64 * 178.0;
        let ly = H + 4.0 + (si / 4) as f64 * 18.0;
        let _ = write!(o, r#"<rect class="key s{}" x="{lx:.1}" y="{ly:.1}" width="12" height="12"/>"#, si % 8);
        let _ = write!(o, r#"<text class="legend" x="{:.1}" y="{:.1}">{}</text>"#, lx + 18.0, ly + 10.0, esc(&s.label));
    }
    o.push_str("</svg>");
    o
}

/// A horizontal bar (0..=1), e.g. a share or a capacity in use.
pub fn bar(title: &str, fraction: f64) -> String {
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    format!(
        r#"<svg class="bar" viewBox="0 0 200 14" role="img" aria-label="{t}"><title>{t}</title><rect class="track" x="0" y="0" width="200" height="14"/><rect class="fill" x="0" y="0" width="{:.1}" height="14"/></svg>"#,
        200.0 * f,
        t = esc(title)
    )
}

/// One readiness computation on a trend chart.
pub struct TrendPoint {
    pub ts_ms: i64,
    pub score: f64,
    pub lower: f64,
    pub upper: f64,
    /// ready | marginal | not-ready (the dot's class).
    pub verdict: String,
}

/// Readiness over time: the score as a line, its 95% interval as a band, each computation a
/// dot coloured by its verdict; x is time (`from_ms..to_ms`), y the score 0..1. `points`
/// oldest first.
pub fn trend(title: &str, points: &[TrendPoint], from_ms: i64, to_ms: i64, x_labels: &[(i64, String)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 200.0;
    const L: f64 = 40.0;
    const R: f64 = 12.0;
    const T: f64 = 12.0;
    const B: f64 = 28.0;
    let plot_w = W - L - R;
    let plot_h = H - T - B;
    let span = (to_ms - from_ms).max(1) as f64;
    let x = |ts: i64| L + plot_w * ((ts - from_ms) as f64 / span).clamp(0.0, 1.0);
    let y = |v: f64| T + plot_h * (1.0 - if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 });
    let mut o = String::new();
    let _ = write!(o, r#"<svg class="chart trend" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#, t = esc(title));
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let yy = y(v);
        let _ = write!(o, r#"<line class="grid" x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/>"#, W - R);
        let _ = write!(o, r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"#, L - 6.0, yy + 4.0);
    }
    for (ts, label) in x_labels {
        let xx = x(*ts);
        let anchor = if xx <= L + 1.0 {
            "start"
        } else if xx >= W - R - 1.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(o, r#"<text class="axis" x="{xx:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#, H - 8.0, esc(label));
    }
    if points.is_empty() {
        let _ = write!(
            o,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no readiness computed in this period</text>"#,
            L + plot_w / 2.0,
            T + plot_h / 2.0
        );
    } else {
        let band: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.ts_ms), y(p.upper)))
            .chain(points.iter().rev().map(|p| format!("{:.1},{:.1}", x(p.ts_ms), y(p.lower))))
            .collect();
        let _ = write!(o, r#"<polygon class="band" points="{}"><title>95% interval</title></polygon>"#, band.join(" "));
        let line: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(p.ts_ms), y(p.score))).collect();
        let _ = write!(o, r#"<polyline class="line s0" points="{}"/>"#, line.join(" "));
        for p in points {
            let _ = write!(
                o,
                r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="3"><title>{} {:.3} [{:.3}, {:.3}]</title></circle>"#,
                verdict_class(&p.verdict),
                x(p.ts_ms),
                y(p.score),
                esc(&p.verdict),
                p.score,
                p.lower,
                p.upper
            );
        }
    }
    o.push_str("</svg>");
    o
}

fn verdict_class(v: &str) -> &'static str {
    match v {
        "ready" => "ready",
        "marginal" => "marginal",
        "not-ready" => "not-ready",
        _ => "unknown",
    }
}

/// A small score line (0..1) for a table cell; `scores` oldest first.
pub fn spark(title: &str, scores: &[f64]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let n = scores.len();
    let x = |i: usize| if n > 1 { 2.0 + (W - 4.0) * i as f64 / (n - 1) as f64 } else { W / 2.0 };
    let y = |v: f64| 2.0 + (H - 4.0) * (1.0 - if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 });
    let mut o = String::new();
    let _ = write!(o, r#"<svg class="spark" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#, t = esc(title));
    let _ = write!(o, r#"<line class="grid" x1="0" y1="{:.1}" x2="{W}" y2="{:.1}"/>"#, y(0.5), y(0.5));
    if n > 1 {
        let pts: Vec<String> = scores.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(o, r#"<polyline class="line s0" points="{}"/>"#, pts.join(" "));
    }
    if let Some(last) = scores.last() {
        let _ = write!(o, r#"<circle class="dot s0" cx="{:.1}" cy="{:.1}" r="2"/>"#, x(n - 1), y(*last));
    }
    o.push_str("</svg>");
    o
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_escaped_and_styleless() {
        let s = lines("rpm", &[Series { label: "<b>x</b>".into(), values: vec![1.0, 3.0, 2.0] }], &[(0, "10:00".into())], "req/min");
        assert!(s.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!s.contains("<b>"));
        assert!(!s.contains("style="));
        assert!(s.contains("<polyline class=\"line s0\""));
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert!(bar("x", 2.0).contains("width=\"200.0\""));
    }

    #[test]
    fn gaps_split_the_line() {
        let nan = f64::NAN;
        let s = lines("p95", &[Series { label: "p95".into(), values: vec![1.0, 2.0, nan, nan, 4.0, nan, 5.0, 6.0] }], &[], "ms");
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert_eq!(s.matches("<circle").count(), 1, "the lone value is a dot: {s}");
        assert!(!s.contains("NaN"));
        let empty = lines("p95", &[Series { label: "p95".into(), values: vec![nan; 60] }], &[], "ms");
        assert!(empty.contains("no traffic in this period") && !empty.contains("<polyline"));
    }

    #[test]
    fn trend_band_line_and_dots() {
        let p = |ts: i64, score: f64, verdict: &str| TrendPoint {
            ts_ms: ts,
            score,
            lower: score - 0.1,
            upper: score + 0.1,
            verdict: verdict.into(),
        };
        let s = trend("readiness", &[p(1000, 0.5, "marginal"), p(2000, 0.9, "ready"), p(3000, 0.2, "<x>")], 0, 4000, &[(0, "a".into())]);
        assert_eq!(s.matches("<polygon class=\"band\"").count(), 1);
        assert_eq!(s.matches("<circle class=\"dot ").count(), 3);
        assert!(s.contains("dot ready") && s.contains("dot marginal") && s.contains("dot unknown"));
        assert!(s.contains("&lt;x&gt;") && !s.contains("<x>") && !s.contains("style="));
        // Score 0.9 at x = 40 + 668·0.5, y = 12 + 160·0.1.
        assert!(s.contains(r#"cx="374.0" cy="28.0""#), "{s}");
        assert!(trend("r", &[], 0, 1, &[]).contains("no readiness computed"));
        assert_eq!(spark("s", &[0.1, 0.5, 0.9]).matches("<polyline").count(), 1);
    }
}
