//! `--plot FILE.svg` of `dare bench s3`: requests per second (left) and overhead against the
//! plaintext bucket (right) against object size, on log x axes, with the same target band
//! and ECS reference line as `dare bench overhead` (drawn by its plotting code).

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{Op, Report, Series, SeriesStats};
use crate::bench_overhead::human_size;
use crate::bench_overhead::plot::{draw_line, draw_target_and_ecs, err};

/// A series to draw: request type, series, (size, value) points.
type Line = (Op, Series, Vec<(f64, f64)>);

fn color(op: Op, s: Series) -> RGBColor {
    match (op, s) {
        (Op::Put, Series::Plain) => RGBColor(0x1f, 0x4e, 0x99),
        (Op::Put, Series::SseS3) => RGBColor(0x6f, 0xa8, 0xf0),
        (Op::Put, Series::SseC) => RGBColor(0x2e, 0x8b, 0x57),
        (Op::Put, Series::SseKms) => RGBColor(0x80, 0x40, 0xa0),
        (Op::Get, Series::Plain) => RGBColor(0xb0, 0x2a, 0x1a),
        (Op::Get, Series::SseS3) => RGBColor(0xf0, 0x8a, 0x5a),
        (Op::Get, Series::SseC) => RGBColor(0x9a, 0xcd, 0x32),
        (Op::Get, Series::SseKms) => RGBColor(0xc0, 0x80, 0xd0),
    }
}

fn name(op: Op, s: Series) -> &'static str {
    match (op, s) {
        (Op::Put, Series::Plain) => "PUT plaintext",
        (Op::Put, Series::SseS3) => "PUT SSE-S3",
        (Op::Put, Series::SseC) => "PUT SSE-C",
        (Op::Put, Series::SseKms) => "PUT SSE-KMS",
        (Op::Get, Series::Plain) => "GET plaintext",
        (Op::Get, Series::SseS3) => "GET SSE-S3",
        (Op::Get, Series::SseC) => "GET SSE-C",
        (Op::Get, Series::SseKms) => "GET SSE-KMS",
    }
}

fn points(
    r: &Report,
    op: Op,
    s: Series,
    f: impl Fn(&SeriesStats) -> Option<f64>,
) -> Vec<(f64, f64)> {
    r.sizes
        .iter()
        .filter_map(|sz| {
            let v = f(sz.get(op, s)?)?;
            v.is_finite().then_some((sz.size as f64, v))
        })
        .collect()
}

/// Draws the report to `path` (SVG).
pub fn draw(r: &Report, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!("dare bench s3 — {} — {} connections", r.cpu, r.concurrency);
    let root = root.titled(&title, ("sans-serif", 18)).map_err(err)?;
    let (left, right) = root.split_horizontally(640);
    let xs: Vec<f64> = r.sizes.iter().map(|s| s.size as f64).collect();
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min) / 1.5;
    let xmax = xs.iter().copied().fold(0.0, f64::max) * 1.5;
    let xfmt = |x: &f64| human_size(x.round() as u64);

    let lines: Vec<Line> = [Op::Put, Op::Get]
        .into_iter()
        .flat_map(|op| r.series.iter().map(move |&s| (op, s)))
        .map(|(op, s)| (op, s, points(r, op, s, |st| Some(st.tps.median))))
        .collect();
    let (ylo, yhi) = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y))
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    let (ylo, yhi) = if ylo.is_finite() && yhi > 0.0 {
        ((ylo / 2.0).max(1e-3), yhi * 2.0)
    } else {
        (0.1, 10.0)
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("requests/s (median of reps)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (xmin..xmax).log_scale().with_key_points(xs.clone()),
            (ylo..yhi).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("object size")
        .y_desc("requests/s")
        .x_label_formatter(&xfmt)
        .draw()
        .map_err(err)?;
    for (op, s, pts) in lines {
        draw_line(&mut chart, name(op, s), color(op, s), pts)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let over: Vec<Line> = [Op::Put, Op::Get]
        .into_iter()
        .flat_map(|op| {
            r.series
                .iter()
                .filter(|&&s| s != Series::Plain)
                .map(move |&s| (op, s))
        })
        .map(|(op, s)| {
            (
                op,
                s,
                points(r, op, s, |st| st.overhead_pct.map(|o| o.median)),
            )
        })
        .filter(|(_, _, p)| !p.is_empty())
        .collect();
    let (olo, ohi) = over
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y))
        .fold((-5.0f64, 10.0f64), |(lo, hi), y| {
            (lo.min(y - 1.0), hi.max(y + 1.0))
        });
    let ohi = ohi + (ohi - olo) * 0.5;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "overhead % = (1 − series/plaintext) × 100 on requests/s",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((xmin..xmax).log_scale().with_key_points(xs), olo..ohi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("object size")
        .y_desc("overhead %")
        .x_label_formatter(&xfmt)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            vec![(xmin, 0.0), (xmax, 0.0)],
            BLACK.mix(0.5),
        ))
        .map_err(err)?;
    draw_target_and_ecs(&mut chart, xmin, xmax)?;
    for (op, s, pts) in over {
        draw_line(&mut chart, name(op, s), color(op, s), pts)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
