//! Server-rendered SVG charts: no script, no inline style (colours come from classes in the
//! console's stylesheet, so the strict CSP holds).

use std::fmt::Write;

pub struct Series {
    pub label: String,
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
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0f64, f64::max);
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
    if series.is_empty() {
        let _ = write!(
            o,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no traffic in this period</text>"#,
            L + plot_w / 2.0,
            T + plot_h / 2.0
        );
    }
    for (si, s) in series.iter().enumerate() {
        let pts: Vec<String> = s.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(o, r#"<polyline class="line s{}" points="{}"><title>{}</title></polyline>"#, si % 8, pts.join(" "), esc(&s.label));
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
}
