//! `--plot FILE.svg`: throughput (left) and overhead (right) against object size, both on a
//! log x axis, for PUT and GET, plaintext and encrypted. The overhead panel marks the 2%
//! target as a shaded band and ECS's reported ~10% as a dashed line; its y range always
//! takes in both.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::human_size;
use super::report::{Report, SeriesStats};
use super::workload::{Op, Series};

/// A series to draw: legend name, colour, (size, value) points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

const PUT_PLAIN: RGBColor = RGBColor(0x1f, 0x4e, 0x99);
const PUT_ENC: RGBColor = RGBColor(0x6f, 0xa8, 0xf0);
const GET_PLAIN: RGBColor = RGBColor(0xb0, 0x2a, 0x1a);
const GET_ENC: RGBColor = RGBColor(0xf0, 0x8a, 0x5a);
const RANGE_ENC: RGBColor = RGBColor(0x2e, 0x8b, 0x57);
const NOCACHE_PUT: RGBColor = RGBColor(0x80, 0x40, 0xa0);
const NOCACHE_GET: RGBColor = RGBColor(0xc0, 0x80, 0xd0);
const TARGET_BAND: RGBColor = RGBColor(0x2e, 0xa0, 0x43);
const ECS_LINE: RGBColor = RGBColor(0xd0, 0x5a, 0x00);

/// dare's target: encrypted within 2% of plaintext.
const TARGET_PCT: f64 = 2.0;
/// The throughput cost ECS reports with D@RE on (white paper §3, "Performance").
const ECS_PCT: f64 = 10.0;

/// (size, value) points of one series for one request type.
fn points(
    r: &Report,
    op: Op,
    s: Series,
    f: impl Fn(&SeriesStats) -> Option<f64>,
) -> Vec<(f64, f64)> {
    r.sizes
        .iter()
        .filter_map(|sz| {
            let v = f(sz.op(op)?.get(s)?)?;
            v.is_finite().then_some((sz.size as f64, v))
        })
        .collect()
}

pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Draws the report to `path` (SVG).
pub fn draw(r: &Report, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "dare encryption overhead — {} — {}, {}",
        r.cpu,
        r.fs_type,
        if r.sync {
            "PUT synced, cold GET"
        } else {
            "--no-sync, warm GET"
        }
    );
    let root = root.titled(&title, ("sans-serif", 18)).map_err(err)?;
    let (left, right) = root.split_horizontally(640);

    let xs: Vec<f64> = r.sizes.iter().map(|s| s.size as f64).collect();
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min) / 1.5;
    let xmax = xs.iter().copied().fold(0.0, f64::max) * 1.5;
    let xfmt = |x: &f64| human_size(x.round() as u64);

    // Throughput.
    let tput: Vec<Line> = vec![
        (
            "PUT plaintext",
            PUT_PLAIN,
            points(r, Op::Put, Series::Plain, |s| Some(s.mb_per_sec.median)),
        ),
        (
            "PUT encrypted",
            PUT_ENC,
            points(r, Op::Put, Series::Enc, |s| Some(s.mb_per_sec.median)),
        ),
        (
            "GET plaintext",
            GET_PLAIN,
            points(r, Op::Get, Series::Plain, |s| Some(s.mb_per_sec.median)),
        ),
        (
            "GET encrypted",
            GET_ENC,
            points(r, Op::Get, Series::Enc, |s| Some(s.mb_per_sec.median)),
        ),
    ];
    let ys = tput.iter().flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y));
    let (ylo, yhi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (ylo, yhi) = if ylo.is_finite() && yhi > 0.0 {
        ((ylo / 2.0).max(1e-3), yhi * 2.0)
    } else {
        (0.1, 10.0)
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("throughput (median of reps)", ("sans-serif", 16))
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
        .y_desc("MB/s (10^6 bytes/s)")
        .x_label_formatter(&xfmt)
        .draw()
        .map_err(err)?;
    for (name, color, pts) in tput {
        draw_line(&mut chart, name, color, pts)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    // Overhead.
    let ovh = |op, s| {
        points(r, op, s, |st: &SeriesStats| {
            st.overhead_pct.map(|o| o.median)
        })
    };
    let mut over: Vec<Line> = vec![
        (
            "PUT encrypted vs plaintext",
            PUT_ENC,
            ovh(Op::Put, Series::Enc),
        ),
        (
            "GET encrypted vs plaintext",
            GET_ENC,
            ovh(Op::Get, Series::Enc),
        ),
        (
            "range GET encrypted vs plaintext",
            RANGE_ENC,
            ovh(Op::Range, Series::Enc),
        ),
        (
            "PUT encrypted, key cache off",
            NOCACHE_PUT,
            ovh(Op::Put, Series::EncCacheOff),
        ),
        (
            "GET encrypted, key cache off",
            NOCACHE_GET,
            ovh(Op::Get, Series::EncCacheOff),
        ),
    ];
    over.retain(|(_, _, p)| !p.is_empty());
    let (olo, ohi) = over
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y))
        .fold((-5.0f64, 10.0f64), |(lo, hi), y| {
            (lo.min(y - 1.0), hi.max(y + 1.0))
        });
    // Headroom above the data for the legend.
    let ohi = ohi + (ohi - olo) * 0.5;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "overhead % = (1 − encrypted/plaintext) × 100",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (xmin..xmax).log_scale().with_key_points(xs.clone()),
            olo..ohi,
        )
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
    for (name, color, pts) in over {
        draw_line(&mut chart, name, color, pts)?;
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

/// The overhead panel's references: dare's target (overhead 0–2%, a shaded band) and what ECS
/// reports for the same job with D@RE on (about 10% lower throughput, white paper §3).
pub(crate) fn draw_target_and_ecs<
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
>(
    chart: &mut ChartContext<'_, DB, CT>,
    xmin: f64,
    xmax: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let band = TARGET_BAND.mix(0.18).filled();
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(xmin, 0.0), (xmax, TARGET_PCT)],
            band,
        )))
        .map_err(err)?
        .label("target band: overhead 0–2%")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], band));
    let ecs = ECS_LINE.stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(xmin, ECS_PCT), (xmax, ECS_PCT)],
            8,
            5,
            ecs,
        ))
        .map_err(err)?
        .label("ECS with D@RE: ≈10% (white paper)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ecs));
    Ok(())
}

pub(crate) fn draw_line<
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
>(
    chart: &mut ChartContext<'_, DB, CT>,
    name: &str,
    color: RGBColor,
    pts: Vec<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
        .map_err(err)?;
    Ok(())
}
