//! Small, dependency-free SVG charts for the results: grouped bars and lines on a linear or
//! log-10 axis. Pure functions from numbers to an SVG document.

use std::fmt::Write;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

fn header(title: &str, y_label: &str) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>
"#,
        WIDTH / 2.0,
        escape(title),
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        escape(y_label)
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#333"/>"##,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
    svg
}

fn legend(svg: &mut String, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            WIDTH - RIGHT + 15.0,
            y - 10.0,
            COLOURS[i % COLOURS.len()],
            WIDTH - RIGHT + 32.0,
            y,
            escape(name)
        );
    }
}

/// Grouped bars: one group per `(label, [(series, value)])`, series coloured alike across
/// groups, values printed above the bars. Linear axis from zero.
pub fn bars(title: &str, y_label: &str, groups: &[(String, Vec<(String, f64)>)]) -> String {
    let mut svg = header(title, y_label);
    let max = groups
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(_, v)| *v))
        .fold(0.0, f64::max);
    let top = nice_max(max);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    for i in 0..=5 {
        let v = top * i as f64 / 5.0;
        let y = HEIGHT - BOTTOM - plot_h * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            format_value(v)
        );
    }
    let group_w = plot_w / groups.len().max(1) as f64;
    let mut series: Vec<String> = Vec::new();
    for (g, (label, values)) in groups.iter().enumerate() {
        let bar_w = group_w * 0.7 / values.len().max(1) as f64;
        let x0 = LEFT + group_w * g as f64 + group_w * 0.15;
        for (s, (name, value)) in values.iter().enumerate() {
            if !series.contains(name) {
                series.push(name.clone());
            }
            let colour = series.iter().position(|n| n == name).unwrap_or(0);
            let h = plot_h * value / top;
            let x = x0 + bar_w * s as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                HEIGHT - BOTTOM - h,
                bar_w * 0.9,
                COLOURS[colour % COLOURS.len()],
                x + bar_w * 0.45,
                HEIGHT - BOTTOM - h - 3.0,
                format_value(*value)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + group_w * (g as f64 + 0.5),
            HEIGHT - BOTTOM + 18.0,
            escape(label)
        );
    }
    legend(&mut svg, &series);
    svg.push_str("</svg>\n");
    svg
}

fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Lines on log-10 axes (both), one per `(series, [(x, y)])`, with points marked; for costs
/// that span orders of magnitude (mart time against history size).
pub fn log_lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let mut svg = header(title, y_label);
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        x_min = x_min.min(*x);
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    let (lx0, lx1) = (
        x_min.log10().floor(),
        x_max.log10().ceil().max(x_min.log10().floor() + 1.0),
    );
    let (ly0, ly1) = (
        y_min.log10().floor(),
        y_max.log10().ceil().max(y_min.log10().floor() + 1.0),
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let px = |x: f64| LEFT + plot_w * (x.log10() - lx0) / (lx1 - lx0);
    let py = |y: f64| HEIGHT - BOTTOM - plot_h * (y.log10() - ly0) / (ly1 - ly0);
    for e in ly0 as i32..=ly1 as i32 {
        let v = 10f64.powi(e);
        let y = py(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            format_value(v)
        );
    }
    for e in lx0 as i32..=lx1 as i32 {
        let v = 10f64.powi(e);
        let x = px(v);
        let label = if v >= 1e6 {
            format!("{}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{}K", v / 1e3)
        } else {
            format!("{v}")
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(x_label)
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                px(*x),
                py(*y),
                px(*x) + 6.0,
                py(*y) - 6.0,
                format_value(*y)
            );
        }
    }
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    legend(&mut svg, &names);
    svg.push_str("</svg>\n");
    svg
}

/// The mart-cost chart from `marts.json`: seconds against history size for the incremental
/// run, the full recompute and the first run.
pub fn marts_chart(results: &serde_json::Value) -> anyhow::Result<String> {
    use anyhow::Context;
    let rows = results["rows"]
        .as_array()
        .context("no rows in marts.json")?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("incremental run (10 K new)".into(), vec![]),
        ("full recompute + publish".into(), vec![]),
        ("first run / rebuild".into(), vec![]),
    ];
    for row in rows {
        let subject = row["subject"].as_str().unwrap_or_default();
        let seconds = row["seconds"].as_f64().unwrap_or_default();
        let number = |after: &str| -> Option<f64> {
            subject
                .split(after)
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let (index, history) = if subject.starts_with("incremental") {
            (0, number(" on "))
        } else if subject.starts_with("full recompute") {
            // Recomputes history + new events; the history is the total less the new ones.
            (1, number(" of ").map(|total| total - 10_000.0))
        } else if subject.starts_with("first run") {
            (2, number(" over "))
        } else {
            continue;
        };
        if let Some(history) = history {
            series[index].1.push((history, seconds));
        }
    }
    for (_, points) in series.iter_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series.retain(|(_, p)| !p.is_empty());
    anyhow::ensure!(!series.is_empty(), "no marts rows to plot");
    Ok(log_lines(
        "Mart cost against history size",
        "events of history",
        "seconds",
        &series,
    ))
}

/// The freshness chart from `cdc.json`: p50, p95, p99 per target rate.
pub fn cdc_chart(results: &serde_json::Value) -> anyhow::Result<String> {
    use anyhow::Context;
    let rows = results["rows"].as_array().context("no rows in cdc.json")?;
    let groups: Vec<(String, Vec<(String, f64)>)> = rows
        .iter()
        .map(|row| {
            let rate = row["target_rate"].as_f64().unwrap_or_default();
            let values = ["p50", "p95", "p99"]
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        p.to_string(),
                        row["freshness_s"][i].as_f64().unwrap_or_default(),
                    )
                })
                .collect();
            (format!("{rate:.0} changes/s"), values)
        })
        .collect();
    Ok(bars(
        "Freshness: Postgres commit → visible in the API",
        "seconds",
        &groups,
    ))
}

/// `tributary-bench plot`: redraws the charts of the results in `dir`.
pub fn main(dir: &std::path::Path) -> anyhow::Result<()> {
    let marts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("marts.json"))?)?;
    std::fs::write(dir.join("marts.svg"), marts_chart(&marts)?)?;
    eprintln!("wrote {}", dir.join("marts.svg").display());
    if let Ok(text) = std::fs::read_to_string(dir.join("cdc.json")) {
        let cdc: serde_json::Value = serde_json::from_str(&text)?;
        std::fs::write(dir.join("cdc-freshness.svg"), cdc_chart(&cdc)?)?;
        eprintln!("wrote {}", dir.join("cdc-freshness.svg").display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_bounds() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(12.0), 20.0);
        assert_eq!(nice_max(100.0), 100.0);
    }

    #[test]
    fn charts_are_svg_with_every_value() {
        let svg = bars(
            "t <x>",
            "s",
            &[(
                "1000".into(),
                vec![("p50".into(), 1.5), ("p99".into(), 3.25)],
            )],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;x&gt;") && svg.contains(">1.50<") && svg.contains(">3.25<"));
        let svg = log_lines(
            "m",
            "history",
            "s",
            &[("a".into(), vec![(1e5, 0.9), (1e7, 53.4)])],
        );
        assert!(svg.contains("<polyline") && svg.contains(">53.4<") && svg.contains(">10M<"));
    }
}
