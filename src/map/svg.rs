//! Draws a [`MapDocument`] as one self-contained SVG (no fonts, images or scripts to fetch), and
//! as one HTML page holding that SVG plus a check that measures, in the browser, that no text
//! leaves its box.
//!
//! Layout is computed here, not by the browser: text is set in a monospace font whose advance is
//! 0.6 em in every common face (DejaVu Sans Mono, Liberation Mono, Menlo), so widths are known
//! and long names wrap instead of overflowing. Meaning never rests on colour alone: gaps are
//! hatched and carry a shape and a word; states are shapes (filled, half, cross, hollow) plus
//! their name.

use std::fmt::Write;

use crate::api::{KpiState, Severity};

use super::model::{JourneyMap, KpiMark, MapDocument, Problem, ThemeMark, TouchpointMark, number};

/// Font size of body text, px.
const FONT: f64 = 12.0;
/// Font size of titles, px.
const TITLE_FONT: f64 = 15.0;
/// Advance of one monospace character per px of font size, rounded up (0.602 in DejaVu Sans Mono).
const ADVANCE: f64 = 0.61;
/// Cell padding, px.
const PAD: f64 = 6.0;
/// Padding inside a touchpoint or KPI frame, px.
const FRAME_PAD: f64 = 3.0;
/// Space between frames in a cell, px.
const FRAME_GAP: f64 = 4.0;
/// Outer margin, px.
const MARGIN: f64 = 12.0;
/// Characters a marker takes at the start of a line.
const MARKER_CHARS: usize = 2;

const FONT_FAMILY: &str = "DejaVu Sans Mono, Liberation Mono, Menlo, Consolas, monospace";

/// A shape at the start of a line: what it means is also written after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    /// Filled triangle: a gap or an error.
    Gap,
    /// Hollow triangle: a warning.
    Warning,
    /// Filled circle: good (KPI met, collector ready).
    Good,
    /// Half-filled circle: at risk.
    AtRisk,
    /// Cross: bad (KPI breached, collector not ready).
    Bad,
    /// Hollow circle: not known (not evaluated, too few samples).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Body,
    Title,
}

impl Size {
    fn font(self) -> f64 {
        match self {
            Size::Body => FONT,
            Size::Title => TITLE_FONT,
        }
    }
    fn advance(self) -> f64 {
        self.font() * ADVANCE
    }
    fn line_height(self) -> f64 {
        (self.font() * 1.25).round()
    }
}

/// One logical line of text; it wraps to as many visual lines as its box needs.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    bold: bool,
    muted: bool,
    size: Size,
    marker: Option<Marker>,
    /// A score bar drawn before the text: the filled fraction.
    bar: Option<f64>,
}

impl Line {
    fn new(text: impl Into<String>) -> Self {
        Line {
            text: text.into(),
            bold: false,
            muted: false,
            size: Size::Body,
            marker: None,
            bar: None,
        }
    }
    fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    fn muted(mut self) -> Self {
        self.muted = true;
        self
    }
    fn title(mut self) -> Self {
        self.size = Size::Title;
        self.bold = true;
        self
    }
    fn marker(mut self, marker: Marker) -> Self {
        self.marker = Some(marker);
        self
    }
    fn bar(mut self, fraction: f64) -> Self {
        self.bar = Some(fraction.clamp(0.0, 1.0));
        self
    }

    /// Characters of indent before the text: a marker's, or a bar's.
    fn indent_chars(&self) -> usize {
        if self.bar.is_some() {
            BAR_CHARS + 1
        } else if self.marker.is_some() {
            MARKER_CHARS
        } else {
            0
        }
    }

    /// The visual lines in a box `width` px wide.
    fn wrap(&self, width: f64) -> Vec<String> {
        let columns = ((width / self.size.advance()).floor() as usize)
            .saturating_sub(self.indent_chars())
            .max(4);
        wrap(&self.text, columns)
    }
}

/// Characters a score bar takes.
const BAR_CHARS: usize = 10;

/// How a group of lines is framed in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    None,
    Solid,
    /// A touchpoint that asks no survey: listened to only by counting.
    Dashed,
}

#[derive(Debug, Clone)]
struct Block {
    lines: Vec<Line>,
    frame: Frame,
}

impl Block {
    fn plain(lines: Vec<Line>) -> Self {
        Block {
            lines,
            frame: Frame::None,
        }
    }
    fn inset(&self) -> f64 {
        if self.frame == Frame::None {
            0.0
        } else {
            FRAME_PAD
        }
    }
    fn height(&self, width: f64) -> f64 {
        let text_width = width - 2.0 * self.inset();
        let lines: f64 = self
            .lines
            .iter()
            .map(|l| l.wrap(text_width).len() as f64 * l.size.line_height())
            .sum();
        lines + 2.0 * self.inset()
    }
}

/// How a cell's background reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    White,
    Header,
    /// Light diagonal hatching: nothing here.
    Empty,
    /// Dense cross-hatching: a gap the journey should close.
    Gap,
}

impl Fill {
    fn paint(self) -> &'static str {
        match self {
            Fill::White => "#ffffff",
            Fill::Header => "#e6e6e6",
            Fill::Empty => "url(#cx-empty)",
            Fill::Gap => "url(#cx-gap)",
        }
    }
}

fn cell_height(blocks: &[Block], width: f64) -> f64 {
    let inner = width - 2.0 * PAD;
    let content: f64 = blocks.iter().map(|b| b.height(inner)).sum::<f64>()
        + FRAME_GAP * blocks.len().saturating_sub(1) as f64;
    content + 2.0 * PAD
}

/// Splits `text` into lines of at most `columns` characters: at spaces when it can (the space
/// stays at the end of its line, so the lines joined are the text), else after a `-`, `.` or `,`,
/// else anywhere.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let columns = columns.max(2);
    let words: Vec<&str> = text.split(' ').collect();
    let mut lines: Vec<String> = Vec::new();
    let mut current: Vec<char> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let mut token: Vec<char> = word.chars().collect();
        if i + 1 < words.len() {
            token.push(' ');
        }
        if current.len() + token.len() <= columns {
            current.extend(token);
            continue;
        }
        if !current.is_empty() {
            lines.push(current.drain(..).collect());
        }
        while token.len() > columns {
            let cut = token[..columns]
                .iter()
                .rposition(|c| matches!(c, '-' | '.' | ',' | ' '))
                .map_or(columns, |i| i + 1);
            let cut = if cut < columns / 2 { columns } else { cut };
            lines.push(token.drain(..cut).collect());
        }
        current = token;
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current.into_iter().collect());
    }
    lines
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Column widths of one journey's grid, in characters and px.
struct Grid {
    label_width: f64,
    stage_width: f64,
}

impl Grid {
    fn for_journey(map: &JourneyMap) -> Self {
        let longest = |names: &mut dyn Iterator<Item = usize>| names.max().unwrap_or(0);
        let label_chars = longest(
            &mut map
                .channels
                .iter()
                .map(|c| c.name.chars().count())
                .chain(std::iter::once(12)),
        )
        .clamp(16, 26);
        let stage_chars = longest(
            &mut map
                .cells
                .iter()
                .flatten()
                .flatten()
                .map(|t| t.name.chars().count())
                .chain(map.kpis.iter().flatten().map(|k| k.name.chars().count()))
                .chain(map.stages.iter().map(|s| s.stage.as_str().len() + 2)),
        )
        .clamp(18, 24);
        let px = |chars: usize| (chars + 1) as f64 * Size::Body.advance() + 2.0 * PAD;
        Grid {
            label_width: px(label_chars),
            stage_width: px(stage_chars),
        }
    }
    fn width(&self, stages: usize) -> f64 {
        self.label_width + self.stage_width * stages as f64
    }
}

/// SVG output being built: elements in order, then wrapped in the `<svg>` root once the height is known.
struct Canvas {
    out: String,
}

impl Canvas {
    /// A box whose texts must stay inside it (the browser check reads `data-box`).
    fn cell(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        fill: Fill,
        role: &str,
        blocks: &[Block],
    ) {
        let _ = write!(
            self.out,
            r##"<g class="{role}" data-box="{} {} {} {}"><rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#8c8c8c" stroke-width="1"/>"##,
            px(x),
            px(y),
            px(w),
            px(h),
            px(x),
            px(y),
            px(w),
            px(h),
            fill.paint()
        );
        let inner = w - 2.0 * PAD;
        let mut top = y + PAD;
        for block in blocks {
            let height = block.height(inner);
            match block.frame {
                Frame::None => {}
                Frame::Solid | Frame::Dashed => {
                    let dash = if block.frame == Frame::Dashed {
                        r#" stroke-dasharray="4 3""#
                    } else {
                        ""
                    };
                    let _ = write!(
                        self.out,
                        r##"<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="#ffffff" stroke="#333333" stroke-width="1"{dash}/>"##,
                        px(x + PAD),
                        px(top),
                        px(inner),
                        px(height)
                    );
                }
            }
            let inset = block.inset();
            let mut line_top = top + inset;
            for line in &block.lines {
                line_top = self.line(x + PAD + inset, line_top, inner - 2.0 * inset, line);
            }
            top += height + FRAME_GAP;
        }
        self.out.push_str("</g>");
    }

    /// Draws one logical line (wrapped) with its marker or bar; returns the next line's top.
    fn line(&mut self, x: f64, top: f64, width: f64, line: &Line) -> f64 {
        let size = line.size;
        let height = size.line_height();
        let advance = size.advance();
        let middle = top + height / 2.0;
        if let Some(marker) = line.marker {
            self.marker(x + advance * 0.8, middle, marker);
        }
        if let Some(fraction) = line.bar {
            let bar_width = BAR_CHARS as f64 * advance;
            let _ = write!(
                self.out,
                r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#ffffff" stroke="#333333"/><rect x="{}" y="{}" width="{}" height="{}" fill="#4d4d4d"/>"##,
                px(x),
                px(top + 3.0),
                px(bar_width),
                px(height - 6.0),
                px(x),
                px(top + 3.0),
                px(bar_width * fraction),
                px(height - 6.0)
            );
        }
        let text_x = x + line.indent_chars() as f64 * advance;
        let pieces = line.wrap(width);
        let baseline = top + (height + size.font() * 0.7) / 2.0;
        let weight = if line.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let fill = if line.muted { "#555555" } else { "#111111" };
        let size_attr = if size == Size::Title {
            format!(r#" font-size="{}""#, px(size.font()))
        } else {
            String::new()
        };
        let _ = write!(
            self.out,
            r#"<text x="{}" y="{}" fill="{fill}"{weight}{size_attr} xml:space="preserve">"#,
            px(text_x),
            px(baseline)
        );
        for (i, piece) in pieces.iter().enumerate() {
            if i == 0 {
                self.out.push_str(&escape(piece));
            } else {
                let _ = write!(
                    self.out,
                    r#"<tspan x="{}" dy="{}">{}</tspan>"#,
                    px(text_x),
                    px(height),
                    escape(piece)
                );
            }
        }
        self.out.push_str("</text>");
        top + height * pieces.len() as f64
    }

    fn marker(&mut self, cx: f64, cy: f64, marker: Marker) {
        let r = 4.5;
        let (x, y) = (px(cx), px(cy));
        let shape = match marker {
            Marker::Gap | Marker::Warning => {
                let fill = if marker == Marker::Gap {
                    "#111111"
                } else {
                    "#ffffff"
                };
                format!(
                    r##"<path d="M{} {} L{} {} L{} {} Z" fill="{fill}" stroke="#111111" stroke-width="1.2"/>"##,
                    px(cx),
                    px(cy - r - 0.5),
                    px(cx + r + 0.5),
                    px(cy + r - 0.5),
                    px(cx - r - 0.5),
                    px(cy + r - 0.5)
                )
            }
            Marker::Good => {
                format!(r##"<circle cx="{x}" cy="{y}" r="{r}" fill="#111111"/>"##)
            }
            Marker::AtRisk => format!(
                r##"<circle cx="{x}" cy="{y}" r="{r}" fill="#ffffff" stroke="#111111" stroke-width="1.2"/><path d="M{x} {} A{r} {r} 0 0 1 {x} {} Z" fill="#111111"/>"##,
                px(cy - r),
                px(cy + r)
            ),
            Marker::Bad => format!(
                r##"<path d="M{} {} L{} {} M{} {} L{} {}" stroke="#111111" stroke-width="2.4"/>"##,
                px(cx - r),
                px(cy - r),
                px(cx + r),
                px(cy + r),
                px(cx + r),
                px(cy - r),
                px(cx - r),
                px(cy + r)
            ),
            Marker::Unknown => format!(
                r##"<circle cx="{x}" cy="{y}" r="{r}" fill="#ffffff" stroke="#111111" stroke-width="1.2"/>"##
            ),
        };
        self.out.push_str(&shape);
    }
}

/// A coordinate with at most one decimal, for short stable output.
fn px(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

fn kpi_state_marker(state: KpiState) -> Marker {
    match state {
        KpiState::Met => Marker::Good,
        KpiState::AtRisk => Marker::AtRisk,
        KpiState::Breached => Marker::Bad,
        KpiState::InsufficientData | KpiState::Unknown => Marker::Unknown,
    }
}

fn touchpoint_block(tp: &TouchpointMark) -> Block {
    let mut lines = vec![Line::new(tp.name.clone()).bold()];
    if tp.surveys.is_empty() {
        lines.push(Line::new("asks: no survey").marker(Marker::Gap));
    } else {
        lines.push(Line::new(format!("asks: {}", tp.surveys.join(", "))));
    }
    if !tp.outcomes.is_empty() {
        lines.push(Line::new(format!("counts: {}", tp.outcomes.join(", "))));
    }
    if !tp.timings.is_empty() {
        lines.push(Line::new(format!("times: {}", tp.timings.join(", "))));
    }
    if tp.paused {
        lines.push(Line::new("collector paused").marker(Marker::Unknown));
    }
    if let Some(collector) = &tp.collector {
        let counts = format!("{}/{}", collector.ready_replicas, collector.replicas);
        lines.push(if collector.ready {
            Line::new(format!("collector ready {counts}")).marker(Marker::Good)
        } else {
            Line::new(format!("collector NOT ready {counts}")).marker(Marker::Bad)
        });
    }
    Block {
        lines,
        frame: if tp.surveys.is_empty() {
            Frame::Dashed
        } else {
            Frame::Solid
        },
    }
}

/// What a stage lacks: a gap (marked) when the journey requires it, a plain fact when it does
/// not (e.g. `coverage.kpiPerStage: false`), so that only requirements draw the eye.
fn absence(what: &str, required: bool) -> Line {
    if required {
        Line::new(what).marker(Marker::Gap)
    } else {
        Line::new(format!("{what} (not required)")).muted()
    }
}

fn kpi_block(kpi: &KpiMark) -> Block {
    let mut lines = vec![
        Line::new(kpi.name.clone()).bold(),
        Line::new(format!("{} {}", kpi.indicator, kpi.target)),
    ];
    match &kpi.live {
        None => lines.push(Line::new("not evaluated offline").muted()),
        Some(live) => {
            let mut text = live.state.as_str().to_string();
            if let Some(value) = live.value {
                text.push_str(&format!(" {}", number(value)));
            }
            if let Some(gap) = live.gap {
                text.push_str(&format!(
                    " gap {}{}",
                    if gap > 0.0 { "+" } else { "" },
                    number(gap)
                ));
            }
            if let Some(samples) = live.samples {
                text.push_str(&format!(" n={samples}"));
            }
            lines.push(Line::new(text).marker(kpi_state_marker(live.state)));
        }
    }
    Block {
        lines,
        frame: Frame::Solid,
    }
}

/// A stage's top themes, each with its share of the stage's comments as a bar and a percentage.
fn theme_lines(marks: &[ThemeMark], comments: f64) -> Vec<Line> {
    if marks.is_empty() {
        let why = if comments > 0.0 {
            "no declared theme mentioned"
        } else {
            "no comment"
        };
        return vec![Line::new(why).muted()];
    }
    let mut lines: Vec<Line> = marks
        .iter()
        .map(|m| Line::new(format!("{} {}%", m.name, number(m.share()))).bar(m.share() / 100.0))
        .collect();
    lines.push(Line::new(format!("of {} comments", number(comments))).muted());
    lines
}

fn problem_line(problem: &Problem) -> Line {
    let place = problem
        .place
        .as_ref()
        .map(|p| format!("{p}: "))
        .unwrap_or_default();
    let (word, marker) = match problem.severity {
        Severity::Error => ("error", Marker::Gap),
        Severity::Warning => ("warning", Marker::Warning),
    };
    Line::new(format!(
        "{word}[{}]: {place}{}",
        problem.code, problem.message
    ))
    .marker(marker)
}

/// The legend: every shape, fill and frame with what it means.
fn legend(width: f64) -> (Vec<Block>, f64) {
    let blocks = vec![Block::plain(vec![
        Line::new("Legend").bold(),
        Line::new("columns are the journey's stages in order, rows its channels; a hatched cell has no touchpoint; a cross-hatched header or KPI cell is a stage gap").muted(),
        Line::new("gap or error: no touchpoint, no survey, no KPI, a broken rule (each written out)").marker(Marker::Gap),
        Line::new("warning: a rule declared with severity warning, a contradicted self-assessment answer...").marker(Marker::Warning),
        Line::new("framed box: a touchpoint (asks: survey metrics, /7 = 7-point scale; counts: interaction outcomes; times: timings); dashed frame: it asks no survey"),
        Line::new("KPI met, collector ready").marker(Marker::Good),
        Line::new("KPI at risk (between target and warning)").marker(Marker::AtRisk),
        Line::new("KPI breached, collector not ready").marker(Marker::Bad),
        Line::new("not evaluated, or too few samples").marker(Marker::Unknown),
    ])];
    let height = cell_height(&blocks, width);
    (blocks, height)
}

/// Renders the document as one SVG.
pub fn render_svg(document: &MapDocument) -> String {
    let grids: Vec<Grid> = document.journeys.iter().map(Grid::for_journey).collect();
    let width = document
        .journeys
        .iter()
        .zip(&grids)
        .map(|(j, g)| g.width(j.stages.len()))
        .fold(960.0_f64, f64::max);
    let mut canvas = Canvas { out: String::new() };
    let mut y = MARGIN;
    let x = MARGIN;

    // The document's header: where the objects come from and what is wrong outside journeys.
    let mut header = vec![
        Line::new("Experience map").title(),
        Line::new(format!("source: {}", document.source)).muted(),
    ];
    let errors = document.count(Severity::Error);
    let warnings = document.count(Severity::Warning);
    let counts = format!(
        "{}, {}",
        crate::core::analysis::count(errors, "error", "errors"),
        crate::core::analysis::count(warnings, "warning", "warnings")
    );
    header.push(if errors + warnings == 0 {
        Line::new(counts)
    } else {
        Line::new(format!("{counts}, listed on the map")).marker(if errors > 0 {
            Marker::Gap
        } else {
            Marker::Warning
        })
    });
    if document.journeys.is_empty() {
        header.push(
            Line::new("no journey to draw: no accepted CustomerJourney among the objects read")
                .marker(Marker::Gap),
        );
    }
    let blocks = vec![Block::plain(header)];
    let h = cell_height(&blocks, width);
    canvas.cell((x, y, width, h), Fill::White, "document", &blocks);
    y += h;
    if !document.problems.is_empty() {
        let mut lines = vec![Line::new("Problems outside journeys").bold()];
        lines.extend(document.problems.iter().map(problem_line));
        let blocks = vec![Block::plain(lines)];
        let h = cell_height(&blocks, width);
        canvas.cell((x, y, width, h), Fill::White, "problems", &blocks);
        y += h;
    }

    for (map, grid) in document.journeys.iter().zip(&grids) {
        y += MARGIN;
        y = journey(&mut canvas, map, grid, x, y, width);
    }

    y += MARGIN;
    let (blocks, h) = legend(width);
    canvas.cell((x, y, width, h), Fill::White, "legend", &blocks);
    y += h + MARGIN;

    let total_width = width + 2.0 * MARGIN;
    let mut svg = String::with_capacity(canvas.out.len() + 1024);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="cx-map" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}" font-size="{font}" role="img" aria-label="Experience map">"##,
        w = px(total_width),
        h = px(y),
        font = px(FONT)
    );
    svg.push_str(r##"<defs><pattern id="cx-empty" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="8" stroke="#c8c8c8" stroke-width="2"/></pattern><pattern id="cx-gap" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#ffffff"/><path d="M0 0 L6 6 M6 0 L0 6" stroke="#9a9a9a" stroke-width="1"/></pattern></defs>"##);
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        px(total_width),
        px(y)
    );
    svg.push_str(&canvas.out);
    svg.push_str("</svg>\n");
    svg
}

/// Draws one journey from `y`; returns the y below it.
fn journey(canvas: &mut Canvas, map: &JourneyMap, grid: &Grid, x: f64, y: f64, width: f64) -> f64 {
    let mut y = y;
    // Header: the journey, its scores, and whether statuses are known.
    let (readiness, readiness_band) = map.readiness;
    let (answers, answers_band) = map.self_assessment;
    let mut lines = vec![
        Line::new(format!("Journey {}/{}", map.namespace, map.name)).title(),
        Line::new(format!(
            "owner: {} · {} · {} · {}",
            map.owner.as_deref().unwrap_or("none"),
            crate::core::analysis::count(map.stages.len(), "stage", "stages"),
            crate::core::analysis::count(map.channels.len(), "channel", "channels"),
            crate::core::analysis::count(
                map.cells.iter().flatten().map(Vec::len).sum(),
                "touchpoint",
                "touchpoints"
            ),
        )),
        Line::new(format!(
            "readiness {readiness}/100 ({})",
            readiness_band.as_str()
        ))
        .bar(f64::from(readiness) / 100.0),
        Line::new(format!(
            "self-assessment {answers}/25 yes ({})",
            answers_band.as_str()
        ))
        .bar(f64::from(answers) / 25.0),
    ];
    if map.statuses_known {
        let k = &map.kpi_counts;
        let collectors: Vec<_> = map
            .cells
            .iter()
            .flatten()
            .flatten()
            .filter_map(|t| t.collector.as_ref())
            .collect();
        lines.push(Line::new(format!(
            "KPIs: {} Met, {} AtRisk, {} Breached, {} InsufficientData, {} Unknown · collectors ready: {} of {}",
            k.met,
            k.at_risk,
            k.breached,
            k.insufficient_data,
            k.unknown,
            collectors.iter().filter(|c| c.ready).count(),
            collectors.len()
        )));
    } else {
        lines.push(
            Line::new("KPI states and collector readiness: not evaluated offline (map a cluster to see them)")
                .muted(),
        );
    }
    let blocks = vec![Block::plain(lines)];
    let h = cell_height(&blocks, width);
    canvas.cell((x, y, width, h), Fill::White, "journey-header", &blocks);
    y += h;

    // Stage headers.
    let stage_blocks: Vec<Vec<Block>> = map
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut lines = vec![Line::new(format!("{} {}", i + 1, s.stage.as_str())).bold()];
            if s.no_touchpoint {
                lines.push(Line::new("no touchpoint").marker(Marker::Gap));
            } else if s.no_listening {
                lines.push(absence("no survey", s.listening_required));
            }
            if s.no_kpi {
                lines.push(absence("no KPI", s.kpi_required));
            }
            vec![Block::plain(lines)]
        })
        .collect();
    let corner = vec![Block::plain(vec![Line::new("channel \\ stage").bold()])];
    let h = stage_blocks
        .iter()
        .map(|b| cell_height(b, grid.stage_width))
        .fold(cell_height(&corner, grid.label_width), f64::max);
    canvas.cell((x, y, grid.label_width, h), Fill::Header, "corner", &corner);
    for (i, (blocks, stage)) in stage_blocks.iter().zip(&map.stages).enumerate() {
        let fill = if stage.is_gap() {
            Fill::Gap
        } else {
            Fill::Header
        };
        canvas.cell(
            (
                x + grid.label_width + grid.stage_width * i as f64,
                y,
                grid.stage_width,
                h,
            ),
            fill,
            "stage",
            blocks,
        );
    }
    y += h;

    // One row per channel.
    for (row, channel) in map.channels.iter().enumerate() {
        let mut lines = vec![Line::new(channel.name.clone()).bold()];
        lines.push(
            Line::new(match &channel.display_name {
                Some(display) => format!("{} · {display}", channel.channel_type),
                None => channel.channel_type.clone(),
            })
            .muted(),
        );
        if channel.no_touchpoint {
            lines.push(Line::new("no touchpoint on this channel").marker(Marker::Gap));
        }
        for v in &channel.violations {
            let marker = if v.severity == Severity::Error {
                Marker::Gap
            } else {
                Marker::Warning
            };
            lines.push(Line::new(format!("{}: {}", v.rule, v.value)).marker(marker));
        }
        let label = vec![Block::plain(lines)];
        let cells: Vec<Vec<Block>> = map.cells[row]
            .iter()
            .map(|touchpoints| {
                if touchpoints.is_empty() {
                    vec![Block::plain(vec![Line::new("none").muted()])]
                } else {
                    touchpoints.iter().map(touchpoint_block).collect()
                }
            })
            .collect();
        let h = cells
            .iter()
            .map(|b| cell_height(b, grid.stage_width))
            .fold(cell_height(&label, grid.label_width), f64::max);
        canvas.cell((x, y, grid.label_width, h), Fill::Header, "channel", &label);
        for (i, (blocks, touchpoints)) in cells.iter().zip(&map.cells[row]).enumerate() {
            let fill = if touchpoints.is_empty() {
                Fill::Empty
            } else {
                Fill::White
            };
            let role = if touchpoints.is_empty() {
                "cell empty"
            } else {
                "cell"
            };
            canvas.cell(
                (
                    x + grid.label_width + grid.stage_width * i as f64,
                    y,
                    grid.stage_width,
                    h,
                ),
                fill,
                role,
                blocks,
            );
        }
        y += h;
    }

    // KPIs under their stages.
    let label = vec![Block::plain(vec![
        Line::new("KPIs").bold(),
        Line::new("indicator and target").muted(),
    ])];
    let cells: Vec<Vec<Block>> = map
        .kpis
        .iter()
        .zip(&map.stages)
        .map(|(kpis, stage)| {
            if kpis.is_empty() {
                vec![Block::plain(vec![absence("no KPI", stage.kpi_required)])]
            } else {
                kpis.iter().map(kpi_block).collect()
            }
        })
        .collect();
    let h = cells
        .iter()
        .map(|b| cell_height(b, grid.stage_width))
        .fold(cell_height(&label, grid.label_width), f64::max);
    canvas.cell(
        (x, y, grid.label_width, h),
        Fill::Header,
        "kpi-label",
        &label,
    );
    for (i, ((blocks, kpis), stage)) in cells.iter().zip(&map.kpis).zip(&map.stages).enumerate() {
        let fill = if kpis.is_empty() && stage.kpi_required {
            Fill::Gap
        } else {
            Fill::White
        };
        canvas.cell(
            (
                x + grid.label_width + grid.stage_width * i as f64,
                y,
                grid.stage_width,
                h,
            ),
            fill,
            "kpis",
            blocks,
        );
    }
    y += h;

    // What customers write about at each stage, when known.
    if let Some(themes) = &map.themes {
        let label = vec![Block::plain(vec![
            Line::new("Themes").bold(),
            Line::new(format!(
                "top themes, share of comments, last {}",
                themes.window
            ))
            .muted(),
        ])];
        let cells: Vec<Vec<Block>> = themes
            .stages
            .iter()
            .zip(&themes.comments)
            .map(|(marks, comments)| vec![Block::plain(theme_lines(marks, *comments))])
            .collect();
        let h = cells
            .iter()
            .map(|b| cell_height(b, grid.stage_width))
            .fold(cell_height(&label, grid.label_width), f64::max);
        canvas.cell(
            (x, y, grid.label_width, h),
            Fill::Header,
            "theme-label",
            &label,
        );
        for (i, blocks) in cells.iter().enumerate() {
            canvas.cell(
                (
                    x + grid.label_width + grid.stage_width * i as f64,
                    y,
                    grid.stage_width,
                    h,
                ),
                Fill::White,
                "themes",
                blocks,
            );
        }
        y += h;
    }

    // What the grid cannot place, and the journey's errors.
    let mut lines = Vec::new();
    if !map.unplaced_kpis.is_empty() {
        let names: Vec<String> = map.unplaced_kpis.iter().map(|k| k.name.clone()).collect();
        lines.push(
            Line::new(format!(
                "KPIs reporting to this journey that measure none of its stages: {}",
                names.join(", ")
            ))
            .marker(Marker::Gap),
        );
    }
    if !map.problems.is_empty() {
        lines.push(Line::new(format!("Problems of journey {}", map.name)).bold());
        lines.extend(map.problems.iter().map(problem_line));
    }
    if !lines.is_empty() {
        let blocks = vec![Block::plain(lines)];
        let h = cell_height(&blocks, width);
        canvas.cell((x, y, width, h), Fill::White, "problems", &blocks);
        y += h;
    }
    y
}

/// The measurement run in the browser: every text inside its box and inside the picture. It writes
/// its verdict on `<body>` (`data-overflow`, `data-checked`), which `--dump-dom` shows.
const CHECK_SCRIPT: &str = r#"(function () {
  var bad = [], checked = 0, slack = 0.5;
  document.querySelectorAll('svg.cx-map').forEach(function (svg) {
    var vb = svg.viewBox.baseVal;
    svg.querySelectorAll('[data-box]').forEach(function (box) {
      var b = box.getAttribute('data-box').split(' ').map(Number);
      box.querySelectorAll('text').forEach(function (t) {
        var r = t.getBBox();
        checked++;
        if (r.x < b[0] - slack || r.y < b[1] - slack || r.x + r.width > b[0] + b[2] + slack || r.y + r.height > b[1] + b[3] + slack) {
          bad.push('text "' + t.textContent.slice(0, 60) + '" leaves its box');
        }
      });
    });
    svg.querySelectorAll('*').forEach(function (e) {
      if (!(e instanceof SVGGraphicsElement) || e.closest('defs')) return;
      var r = e.getBBox();
      if (r.x < vb.x - slack || r.y < vb.y - slack || r.x + r.width > vb.x + vb.width + slack || r.y + r.height > vb.y + vb.height + slack) {
        bad.push(e.tagName + ' leaves the picture');
      }
    });
  });
  document.body.setAttribute('data-checked', String(checked));
  document.body.setAttribute('data-overflowing', bad.slice(0, 20).join('; '));
  document.body.setAttribute('data-overflow', String(bad.length));
})();"#;

/// Renders the document as one HTML page: the SVG inline, nothing fetched.
pub fn render_html(document: &MapDocument) -> String {
    let svg = render_svg(document);
    let title = match document.journeys.as_slice() {
        [one] => format!("Experience map: journey {}/{}", one.namespace, one.name),
        _ => "Experience map".to_string(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>body {{ margin: 0; background: #ffffff; }} svg {{ display: block; }}</style>\n</head>\n<body data-overflow=\"unchecked\">\n{svg}<script>\n{CHECK_SCRIPT}\n</script>\n</body>\n</html>\n",
        escape(&title)
    )
}

/// The text a rendered SVG shows, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/support/svg_text.rs"]
mod svg_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_every_character_of_a_long_name_and_respects_the_width() {
        let name = "call-centre-hotline-for-enterprise-customers";
        let lines = wrap(name, 12);
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(lines.concat(), name);
        assert_eq!(lines[0], "call-centre-");
    }

    #[test]
    fn wrap_breaks_sentences_at_spaces() {
        assert_eq!(
            wrap("counts: completed, abandoned, error", 20),
            vec!["counts: completed, ", "abandoned, error"]
        );
        assert_eq!(wrap("", 10), vec![""]);
        for columns in 4..30 {
            let text = "abandonment-rate <= 20 (warn > 25) and a verylongwordthatneverends-here";
            let lines = wrap(text, columns);
            assert_eq!(lines.concat(), text, "{columns}");
            assert!(
                lines.iter().all(|l| l.chars().count() <= columns),
                "{columns}: {lines:?}"
            );
        }
    }

    #[test]
    fn escape_makes_text_safe_for_xml() {
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
    }

    use crate::api::{KpiCounts, ReadinessBand, SelfAssessmentBand, Stage};
    use crate::map::model::{
        ChannelRow, ChannelViolation, CollectorMark, JourneyMap, KpiLive, KpiMark, StageColumn,
        TouchpointMark,
    };

    fn kpi(name: &str, state: KpiState, value: f64, gap: f64) -> KpiMark {
        KpiMark {
            name: name.into(),
            indicator: "csat".into(),
            target: ">= 80 (warn < 70)".into(),
            live: Some(KpiLive {
                state,
                value: Some(value),
                gap: Some(gap),
                samples: Some(120),
            }),
        }
    }

    /// A live journey of two stages and one channel: one touchpoint, one empty cell.
    fn live_document() -> MapDocument {
        let touchpoint = |name: &str, ready: bool| TouchpointMark {
            name: name.into(),
            surveys: vec!["csat/7".into()],
            outcomes: vec!["completed".into()],
            timings: vec![],
            paused: false,
            collector: Some(CollectorMark {
                ready,
                ready_replicas: i32::from(ready),
                replicas: 1,
            }),
        };
        MapDocument {
            source: "cluster context test".into(),
            problems: vec![],
            journeys: vec![JourneyMap {
                name: "j".into(),
                namespace: "n".into(),
                owner: None,
                stages: vec![
                    StageColumn {
                        stage: Stage::Purchase,
                        no_touchpoint: false,
                        no_listening: false,
                        no_kpi: false,
                        listening_required: true,
                        kpi_required: true,
                    },
                    StageColumn {
                        stage: Stage::Support,
                        no_touchpoint: true,
                        no_listening: true,
                        no_kpi: true,
                        listening_required: true,
                        kpi_required: true,
                    },
                ],
                channels: vec![ChannelRow {
                    name: "web".into(),
                    channel_type: "web".into(),
                    display_name: None,
                    no_touchpoint: false,
                    violations: vec![ChannelViolation {
                        rule: "privacy.dataRetentionDays atMost".into(),
                        severity: Severity::Warning,
                        value: "900".into(),
                    }],
                }],
                cells: vec![vec![vec![touchpoint("web-checkout", false)], vec![]]],
                kpis: vec![
                    vec![
                        kpi("a-met", KpiState::Met, 85.0, 5.0),
                        kpi("b-risk", KpiState::AtRisk, 75.25, -4.75),
                        kpi("c-breached", KpiState::Breached, 60.0, -20.0),
                    ],
                    vec![],
                ],
                unplaced_kpis: vec![],
                readiness: (40, ReadinessBand::GapsToClose),
                self_assessment: (8, SelfAssessmentBand::ManyGaps),
                statuses_known: true,
                kpi_counts: KpiCounts {
                    met: 1,
                    at_risk: 1,
                    breached: 1,
                    ..KpiCounts::default()
                },
                problems: vec![],
                themes: None,
            }],
        }
    }

    #[test]
    fn a_live_map_writes_each_state_with_its_shape() {
        let svg = render_svg(&live_document());
        let shown = super::svg_text::texts(&svg);
        for text in [
            "Met 85 gap +5 n=120",
            "AtRisk 75.25 gap -4.75 n=120",
            "Breached 60 gap -20 n=120",
            "collector NOT ready 0/1",
            "no touchpoint",
            "KPIs: 1 Met, 1 AtRisk, 1 Breached, 0 InsufficientData, 0 Unknown · collectors ready: 0 of 1",
            "readiness 40/100 (gaps-to-close)",
            "self-assessment 8/25 yes (many-gaps)",
            "privacy.dataRetentionDays atMost: 900",
            ">= 80 (warn < 70)",
        ] {
            assert!(
                shown.iter().any(|t| t.ends_with(text)),
                "{text} missing: {shown:?}"
            );
        }
        // Shapes, not colours: a filled circle (met), a half-filled one (at risk), crosses
        // (breached, collector not ready), a hollow triangle (the warning on the channel).
        // Each count is the map's plus the legend's one.
        assert_eq!(svg.matches(r##"r="4.5" fill="#111111"/>"##).count(), 1 + 1);
        assert_eq!(svg.matches(" A4.5 4.5 0 0 1 ").count(), 1 + 1);
        assert_eq!(svg.matches(r#"stroke-width="2.4""#).count(), 2 + 1);
        let hollow = r##"fill="#ffffff" stroke="#111111" stroke-width="1.2"/>"##;
        // The warning's triangle; the legend's triangle, circle and at-risk circle's rim; the
        // at-risk KPI's rim.
        assert_eq!(svg.matches(hollow).count(), 1 + 3 + 1);
        assert_eq!(svg.matches(r#"class="cell empty""#).count(), 1);
        assert!(!svg.contains("not evaluated offline"));
    }

    #[test]
    fn the_picture_grows_with_its_content_and_states_its_size() {
        let small = render_svg(&live_document());
        let mut document = live_document();
        let journey = &mut document.journeys[0];
        for i in 0..19 {
            let mut row = journey.channels[0].clone();
            row.name = format!("channel-{i:02}");
            journey.channels.push(row);
            journey.cells.push(journey.cells[0].clone());
        }
        let large = render_svg(&document);
        let height = |svg: &str| -> f64 {
            svg.split(" height=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(
            height(&large) > height(&small) + 19.0 * 60.0,
            "{} vs {}",
            height(&large),
            height(&small)
        );
        assert!(large.contains(r#"viewBox="0 0 "#));
    }

    #[test]
    fn coordinates_are_short() {
        assert_eq!(px(12.0), "12");
        assert_eq!(px(12.04), "12");
        assert_eq!(px(7.25), "7.3");
    }
}
