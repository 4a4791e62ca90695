//! Small inline SVG charts, drawn on the server (console pages and the daily report email). The markup is built here from numbers and labels
//! medic formats itself (hours, dates), never from stored or client text, so the page can include it
//! unescaped.

use std::fmt::Write;

const W: f64 = 520.0;
const H: f64 = 140.0;
const LEFT: f64 = 34.0;
const BOTTOM: f64 = 18.0;

fn frame(title: &str, max: f64, unit: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" style="width: 100%; height: auto; max-width: {W}px" role="img" aria-label="{title}">"##
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="4" x2="{LEFT}" y2="{y}" stroke="#9ca3af"/><line x1="{LEFT}" y1="{y}" x2="{W}" y2="{y}" stroke="#9ca3af"/>"##,
        y = H - BOTTOM
    );
    let _ = write!(svg, r##"<text x="2" y="12">{}</text><text x="2" y="{}">0</text>"##, label(max, unit), H - BOTTOM);
    svg
}

fn label(v: f64, unit: &str) -> String {
    match unit {
        "s" if v >= 3600.0 => format!("{:.1}h", v / 3600.0),
        "s" if v >= 60.0 => format!("{:.0}m", v / 60.0),
        "s" => format!("{v:.0}s"),
        _ => format!("{v:.0}"),
    }
}

/// A bar per value; `labels` every few bars under the axis.
pub fn bars(title: &str, values: &[u64], labels: &[String]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = frame(title, max, "");
    let n = values.len().max(1) as f64;
    let step = (W - LEFT - 4.0) / n;
    for (i, v) in values.iter().enumerate() {
        let h = (*v as f64 / max) * (H - BOTTOM - 8.0);
        let x = LEFT + 2.0 + i as f64 * step;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#10b981"><title>{}: {v}</title></rect>"##,
            H - BOTTOM - h,
            (step - 2.0).max(1.0),
            labels.get(i).map(String::as_str).unwrap_or("")
        );
        if i % 4 == 0
            && let Some(l) = labels.get(i)
        {
            let _ = write!(svg, r##"<text x="{x:.1}" y="{:.1}">{l}</text>"##, H - 4.0);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A line through the values that exist (gaps where a day had none), in seconds.
pub fn line(title: &str, values: &[(String, Option<f64>)]) -> String {
    let max = values.iter().filter_map(|(_, v)| *v).fold(0.0f64, f64::max).max(1.0);
    let mut svg = frame(title, max, "s");
    let n = values.len().max(2) as f64;
    let step = (W - LEFT - 10.0) / (n - 1.0);
    let mut points = Vec::new();
    for (i, (day, v)) in values.iter().enumerate() {
        let x = LEFT + 4.0 + i as f64 * step;
        if let Some(v) = v {
            let y = H - BOTTOM - (v / max) * (H - BOTTOM - 8.0);
            points.push(format!("{x:.1},{y:.1}"));
            let _ = write!(
                svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#1d4ed8"><title>{day}: {}</title></circle>"##,
                label(*v, "s")
            );
        }
        if i % 3 == 0 {
            let _ =
                write!(svg, r##"<text x="{:.1}" y="{:.1}">{}</text>"##, x - 10.0, H - 4.0, day.get(5..).unwrap_or(day));
        }
    }
    if points.len() > 1 {
        let _ =
            write!(svg, r##"<polyline points="{}" fill="none" stroke="#1d4ed8" stroke-width="2"/>"##, points.join(" "));
    }
    svg.push_str("</svg>");
    svg
}

/// 24 hourly cells: green (all checks passed), amber (some failed), red (under 90 %), grey (no checks).
pub fn uptime_bars(values: &[Option<f64>]) -> String {
    let (w, h, cell) = (240.0, 18.0, 10.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="uptime per hour, last 24 hours">"##
    );
    for (i, v) in values.iter().enumerate() {
        let colour = match v {
            None => "#d1d5db",
            Some(p) if *p >= 100.0 => "#10b981",
            Some(p) if *p >= 90.0 => "#f59e0b",
            Some(_) => "#dc2626",
        };
        let label = v.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "no checks".into());
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{h}" fill="{colour}"><title>{} h ago: {label}</title></rect>"##,
            i as f64 * cell,
            cell - 2.0,
            values.len() - 1 - i
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal gauge for a percentage: green, amber from `warning`, red from `critical`.
pub fn gauge(percent: Option<f64>, warning: f64, critical: f64) -> String {
    let (w, h) = (160.0, 12.0);
    let Some(p) = percent else {
        return format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><rect width="{w}" height="{h}" fill="#e5e7eb"/></svg>"##
        );
    };
    let p = p.clamp(0.0, 100.0);
    let colour = if p >= critical {
        "#dc2626"
    } else if p >= warning {
        "#f59e0b"
    } else {
        "#10b981"
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{p:.1} %"><rect width="{w}" height="{h}" fill="#e5e7eb"/><rect width="{:.1}" height="{h}" fill="{colour}"/></svg>"##,
        w * p / 100.0
    )
}

/// A small line of percentages (gaps skipped), 0–100 on the vertical axis.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let (w, h) = (160.0, 28.0);
    let n = values.len().max(2) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.map(|v| format!("{:.1},{:.1}", i as f64 * w / (n - 1.0), h - v.clamp(0.0, 100.0) / 100.0 * h))
        })
        .collect();
    // The newest point is marked, so a single reading still shows.
    let last = points
        .last()
        .and_then(|p| p.split_once(','))
        .map(|(x, y)| format!(r##"<circle cx="{x}" cy="{y}" r="2.5" fill="#1d4ed8"/>"##))
        .unwrap_or_default();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img"><rect width="{w}" height="{h}" fill="#f9fafb"/><polyline points="{}" fill="none" stroke="#1d4ed8" stroke-width="1.5"/>{last}</svg>"##,
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_lines_skip_gaps() {
        let svg = bars("t", &[0, 5, 10], &["a".into(), "b".into(), "c".into()]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"height="114.0""#), "the largest bar is full height: {svg}");
        assert!(svg.contains(r#"height="0.0""#));
        let svg = line(
            "t",
            &[("2026-11-01".into(), Some(60.0)), ("2026-11-02".into(), None), ("2026-11-03".into(), Some(120.0))],
        );
        assert_eq!(svg.matches("<circle").count(), 2, "no point for a day without recoveries");
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("2m"), "the axis says minutes: {svg}");
    }
}
