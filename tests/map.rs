//! `cx-conductor map`: the model it draws (from `examples/retail`, a generated organisation of 20
//! channels × 8 stages, and broken manifests), the SVG/HTML it renders, and that picture as a real
//! headless Chromium lays it out: every name shown, the gaps marked, no text leaving its box.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cx_conductor::api::Stage;
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::map::{self, MapDocument, render_html, render_svg};
use cx_conductor::schema::SchemaValidator;

#[path = "support/svg_text.rs"]
mod svg_text;
use svg_text::texts;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn document_of(paths: &[PathBuf]) -> MapDocument {
    let documents = load_paths(paths).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    map::from_inventory(&inventory, "test".into())
}

fn retail() -> MapDocument {
    document_of(&[repo("examples/retail")])
}

/// A scratch directory per test, removed first so reruns start clean.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cx-map-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const STAGES: [&str; 8] = [
    "awareness",
    "consideration",
    "purchase",
    "delivery",
    "usage",
    "support",
    "loyalty",
    "advocacy",
];

/// A large organisation: 20 channels × 8 stages with long names, and known gaps. No touchpoint at
/// delivery; usage touchpoints count interactions but ask no survey; no KPI at advocacy; channel
/// 20 has no touchpoint; channel 04 speaks in another voice.
fn large_organisation() -> String {
    let mut yaml = String::new();
    for c in 1..=20 {
        let voice = if c == 4 { "formal" } else { "friendly-expert" };
        yaml.push_str(&format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: {{ name: regional-channel-{c:02}, namespace: big, labels: {{ journey: big }} }}\nspec:\n  type: web\n  displayName: Regional storefront number {c} with a long display name\n  owner: team-{c}\n  brand: {{ name: Big Co, voice: {voice} }}\n  privacy: {{ consentPolicyVersion: v1 }}\n---\n"
        ));
        if c == 20 {
            continue;
        }
        for (s, stage) in STAGES.iter().enumerate() {
            if *stage == "delivery" || (c + s) % 3 == 0 {
                continue;
            }
            let surveys = if *stage == "usage" {
                String::new()
            } else if s % 2 == 0 {
                "surveys: [ { metric: csat, scale: 7 }, { metric: nps } ]\n    ".into()
            } else {
                "surveys: [ { metric: ces } ]\n    ".into()
            };
            yaml.push_str(&format!(
                "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: {{ name: regional-channel-{c:02}-{stage}-touchpoint, namespace: big }}\nspec:\n  channel: regional-channel-{c:02}\n  stage: {stage}\n  signals:\n    {surveys}interactions: {{ outcomes: [resolved-first-contact, resolved, unresolved, escalated, abandoned], timings: [wait, handle] }}\n---\n"
            ));
        }
    }
    for stage in STAGES
        .iter()
        .filter(|s| **s != "advocacy" && **s != "delivery")
    {
        let s = STAGES.iter().position(|x| x == stage).unwrap();
        let builtin = match (*stage, s % 2) {
            ("usage", _) => "abandonment-rate",
            (_, 0) => "csat",
            _ => "ces",
        };
        let (target, warning) = if builtin == "ces" { (5, 4) } else { (80, 70) };
        yaml.push_str(&format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: ExperienceKPI\nmetadata: {{ name: {stage}-experience-indicator, namespace: big }}\nspec:\n  indicator: {{ builtin: {builtin} }}\n  scope: {{ stage: {stage} }}\n  objective: {{ target: {target}, direction: atLeast, warning: {warning} }}\n  window: 28d\n  owner: cx\n  journey: big\n---\n"
        ));
    }
    yaml.push_str("apiVersion: cx.conductor.dev/v1alpha1\nkind: CustomerJourney\nmetadata: { name: big, namespace: big }\nspec:\n  owner: cx\n  stages: [awareness, consideration, purchase, delivery, usage, support, loyalty, advocacy]\n  channelSelector: { matchLabels: { journey: big } }\n  consistency:\n    rules:\n      - { field: brand.voice, policy: equal }\n  coverage: { listeningPerStage: true, kpiPerStage: true, touchpointPerChannel: true }\n");
    yaml
}

fn large() -> (MapDocument, PathBuf) {
    let dir = scratch("large");
    let file = dir.join("organisation.yaml");
    std::fs::write(&file, large_organisation()).unwrap();
    (document_of(std::slice::from_ref(&file)), file)
}

#[test]
fn the_retail_map_places_every_touchpoint_and_kpi_in_journey_order() {
    let document = retail();
    assert_eq!(document.journeys.len(), 1);
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    let map = &document.journeys[0];
    assert_eq!(
        (map.namespace.as_str(), map.name.as_str()),
        ("retail", "retail")
    );
    let stages: Vec<Stage> = map.stages.iter().map(|s| s.stage).collect();
    assert_eq!(stages, Stage::ALL.to_vec(), "columns in journey order");
    assert!(
        map.stages
            .iter()
            .all(|s| !s.no_touchpoint && !s.no_listening && !s.no_kpi),
        "retail has no stage gap"
    );
    let channels: Vec<&str> = map.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        channels,
        ["app", "call-centre", "chat", "email", "store", "web"]
    );
    let placed: usize = map.cells.iter().flatten().map(Vec::len).sum();
    assert_eq!(placed, 15, "every touchpoint in a cell");
    let web = channels.iter().position(|c| *c == "web").unwrap();
    let purchase = 2;
    let checkout = &map.cells[web][purchase];
    assert_eq!(checkout.len(), 1);
    assert_eq!(checkout[0].name, "web-checkout");
    assert_eq!(checkout[0].surveys, ["nps", "csat"]);
    assert_eq!(checkout[0].outcomes, ["completed", "abandoned", "error"]);
    assert_eq!(checkout[0].timings, ["wait"]);
    assert_eq!(
        checkout[0].collector, None,
        "offline: collector readiness unknown"
    );
    let app = channels.iter().position(|c| *c == "app").unwrap();
    assert_eq!(
        map.cells[app][1][0].surveys,
        ["csat/7"],
        "7-point scale shown"
    );
    assert!(
        map.cells[web][3].is_empty(),
        "no web touchpoint at delivery"
    );
    let at_purchase: Vec<(&str, &str)> = map.kpis[purchase]
        .iter()
        .map(|k| (k.name.as_str(), k.target.as_str()))
        .collect();
    assert_eq!(
        at_purchase,
        [
            ("checkout-csat", ">= 85 (warn < 80)"),
            ("checkout-delivery-share", "<= 15 (warn > 25)"),
            ("checkout-error-rate", "<= 1 (warn > 2)"),
            ("digital-cart-abandonment", "<= 20 (warn > 25)"),
        ]
    );
    assert!(map.kpis.iter().flatten().all(|k| k.live.is_none()));
    assert_eq!(map.readiness.0, 100);
    assert_eq!(map.self_assessment.0, 17);
    assert!(!map.statuses_known);
}

#[test]
fn the_large_map_marks_its_gaps_where_they_are() {
    let (document, _) = large();
    let map = &document.journeys[0];
    assert_eq!(map.channels.len(), 20);
    assert_eq!(map.stages.len(), 8);
    let gaps: Vec<(&str, bool, bool, bool)> = map
        .stages
        .iter()
        .map(|s| (s.stage.as_str(), s.no_touchpoint, s.no_listening, s.no_kpi))
        .collect();
    assert_eq!(
        gaps,
        [
            ("awareness", false, false, false),
            ("consideration", false, false, false),
            ("purchase", false, false, false),
            ("delivery", true, true, true),
            ("usage", false, true, false),
            ("support", false, false, false),
            ("loyalty", false, false, false),
            ("advocacy", false, false, true),
        ]
    );
    assert!(map.channels[19].no_touchpoint);
    assert!(map.channels[..19].iter().all(|c| !c.no_touchpoint));
    let formal: Vec<String> = map.channels[3]
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.rule, v.value))
        .collect();
    assert_eq!(formal, ["brand.voice equal: formal"]);
    assert!(
        map.channels
            .iter()
            .enumerate()
            .all(|(i, c)| i == 3 || c.violations.is_empty()),
        "the 19 channels of the common voice are the norm, not marked"
    );
    let codes: Vec<&str> = map.problems.iter().map(|p| p.code.as_str()).collect();
    assert!(codes.contains(&"consistency"), "{codes:?}");
    assert!(codes.contains(&"stage-without-listening"), "{codes:?}");
    assert!(codes.contains(&"channel-without-touchpoints"), "{codes:?}");
}

#[test]
fn broken_manifests_still_draw_with_their_errors_listed() {
    let dir = scratch("broken");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: { name: web-kiosk, namespace: retail }\nspec:\n  channel: web\n  stage: browsing\n  signals: { surveys: [ { metric: csat } ] }\n---\napiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: { name: lost-touchpoint, namespace: retail }\nspec:\n  channel: fax\n  stage: support\n  signals: { surveys: [ { metric: csat } ] }\n",
    )
    .unwrap();
    let document = document_of(&[
        repo("examples/retail"),
        repo("examples/broken/inconsistent-brand-voice.yaml"),
        bad.clone(),
    ]);
    let map = &document.journeys[0];
    let marketplace = map
        .channels
        .iter()
        .find(|c| c.name == "marketplace")
        .expect("the new channel is drawn");
    assert!(
        marketplace
            .violations
            .iter()
            .any(|v| v.rule == "brand.voice equal" && v.value == "formal"),
        "{:?}",
        marketplace.violations
    );
    let refused = document
        .problems
        .iter()
        .find(|p| p.code == "schema")
        .expect("the refused touchpoint is listed");
    assert_eq!(
        refused.place.as_deref(),
        Some(format!("{}:6", bad.display()).as_str())
    );
    assert!(
        refused
            .message
            .contains("Touchpoint retail/web-kiosk refused"),
        "{refused:?}"
    );
    let dangling = document
        .problems
        .iter()
        .find(|p| p.code == "dangling-channel")
        .expect("the dangling reference is listed");
    assert!(dangling.message.contains("fax"), "{dangling:?}");
    let shown = texts(&render_svg(&document));
    assert!(
        shown.iter().any(|t| t.starts_with(&format!(
            "error[schema]: {}:6: Touchpoint retail/web-kiosk refused",
            bad.display()
        ))),
        "errors are on the map: {shown:?}"
    );
    assert!(shown.iter().any(|t| t == "brand.voice equal: formal"));
}

#[test]
fn text_from_manifests_is_escaped_for_xml() {
    let dir = scratch("escape");
    let file = dir.join("channel.yaml");
    std::fs::write(
        &file,
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: { name: web, namespace: x, labels: { j: x } }\nspec:\n  type: web\n  displayName: \"<script>alert('&')</script>\"\n---\napiVersion: cx.conductor.dev/v1alpha1\nkind: CustomerJourney\nmetadata: { name: x, namespace: x }\nspec:\n  stages: [purchase]\n  channelSelector: { matchLabels: { j: x } }\n",
    )
    .unwrap();
    let svg = render_svg(&document_of(&[file]));
    assert!(!svg.contains("<script>"), "{svg}");
    assert!(svg.contains("&lt;script&gt;"));
    assert!(
        texts(&svg).contains(&"web · <script>alert('&')</script>".to_string()),
        "{svg}"
    );
}

#[test]
fn the_svg_is_self_contained_and_marks_gaps_without_colour() {
    let (document, _) = large();
    let svg = render_svg(&document);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for forbidden in [
        "http://", "https://", "<image", "<script", "@import", "url(http",
    ] {
        let outside_namespace = svg.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !outside_namespace.contains(forbidden),
            "{forbidden} in the SVG"
        );
    }
    // Empty cells are hatched (a pattern, not a colour) and say so; stage gaps are written out.
    assert_eq!(
        svg.matches(r#"class="cell empty""#).count(),
        empty_cells(&document)
    );
    assert!(svg.contains("url(#cx-empty)") && svg.contains("url(#cx-gap)"));
    assert!(svg.contains(">no touchpoint<"));
    assert!(svg.contains(">no survey<"));
    assert!(svg.contains(">no KPI<"));
    assert!(svg.contains("Legend"));
    let html = render_html(&document);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(&svg));
}

/// A stage the journey does not require a KPI (or a survey) at is drawn as a fact, not a gap.
#[test]
fn what_the_journey_does_not_require_is_written_but_not_marked() {
    let relaxed = large_organisation().replace(
        "coverage: { listeningPerStage: true, kpiPerStage: true,",
        "coverage: { listeningPerStage: false, kpiPerStage: false,",
    );
    let dir = scratch("relaxed");
    let file = dir.join("organisation.yaml");
    std::fs::write(&file, relaxed).unwrap();
    let document = document_of(std::slice::from_ref(&file));
    let stages = &document.journeys[0].stages;
    assert!(
        stages
            .iter()
            .all(|s| !s.kpi_required && !s.listening_required)
    );
    let svg = render_svg(&document);
    // usage asks no survey; delivery and advocacy have no KPI (header and KPI row each).
    assert_eq!(svg.matches(">no survey (not required)<").count(), 1);
    assert_eq!(svg.matches(">no KPI (not required)<").count(), 4);
    assert!(!svg.contains(">no KPI<") && !svg.contains(">no survey<"));
    // The missing touchpoint at delivery is still a gap: not a coverage option.
    assert!(svg.contains(">no touchpoint<"));
    let (strict, _) = large();
    let strict_svg = render_svg(&strict);
    assert_eq!(strict_svg.matches(">no KPI<").count(), 4);
    assert!(!strict_svg.contains("(not required)"));
    // Cross-hatched: strict, delivery's and advocacy's headers and KPI cells and usage's header;
    // relaxed, only delivery's header (no touchpoint).
    let hatched = |svg: &str| svg.matches("url(#cx-gap)").count();
    assert_eq!(hatched(&strict_svg) - hatched(&svg), 4);
}

fn empty_cells(document: &MapDocument) -> usize {
    document.journeys[0]
        .cells
        .iter()
        .flatten()
        .filter(|c| c.is_empty())
        .count()
}

// ---- The command as a user runs it ----

fn cx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_command_writes_html_or_svg_and_exits_by_what_it_found() {
    let dir = scratch("cli");
    let html = dir.join("retail.html");
    let out = cx(&["map", "-f", "examples/retail", "-o", html.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("map of 1 journey written to {}\n", html.display())
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("Journey retail/retail"));

    let svg = dir.join("broken.svg");
    let out = cx(&[
        "map",
        "-f",
        "examples/retail",
        "examples/broken/inconsistent-brand-voice.yaml",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "errors drawn: exit 1");
    assert!(
        text(&out.stderr).contains(", with 1 error listed on it"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let out = cx(&["map", "-f", "examples/retail"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("<!DOCTYPE html>"),
        "HTML on stdout by default"
    );

    let out = cx(&["map", "-f", "examples/retail", "-o", "retail.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: --output retail.png: a map is written as .svg (a picture) or .html (a page), not .png\n"
    );

    let out = cx(&["map", "-f", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: no/such/dir"),
        "{}",
        text(&out.stderr)
    );
}

// ---- The README's picture ----

#[test]
fn the_readme_picture_is_what_the_command_draws_now() {
    let committed = repo("docs/retail-map.svg");
    let dir = scratch("readme");
    let fresh = dir.join("retail-map.svg");
    let out = cx(&[
        "map",
        "-f",
        "examples/retail",
        "-o",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let fresh = std::fs::read_to_string(&fresh).unwrap();
    if std::env::var_os("UPDATE_MAP").is_some() {
        std::fs::write(&committed, &fresh).unwrap();
    }
    let now = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        now == fresh,
        "docs/retail-map.svg is not what `cx-conductor map -f examples/retail -o docs/retail-map.svg` draws now; regenerate it with `UPDATE_MAP=1 cargo test --test map the_readme_picture`"
    );
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(readme.contains("![The experience map of examples/retail](docs/retail-map.svg)"));
    assert!(readme.contains("cx-conductor map -f examples/retail -o docs/retail-map.svg"));
}

// ---- In a real browser ----

/// Debian's Chromium, or `None` (after a loud message) when it is not installed and `CI` is not
/// set. Under `CI` a missing Chromium is a failure: `scripts/test.sh` installs it.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "`chromium` is not installed and CI is set: the map tests need it (scripts/test.sh installs the Debian package `chromium`)"
        );
        eprintln!(
            "\n{bar}\n!!! SKIPPED: `chromium` is not installed, the map was not rendered in a browser.\n!!! Install it with `apt-get install -y chromium` (scripts/test.sh does), or set CI=true to make this a failure.\n{bar}\n",
            bar = "!".repeat(100)
        );
    }
    found
}

/// What Chromium made of a page: its DOM after the page's scripts ran.
fn dump_dom(chromium: &Path, page: &Path) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--dump-dom",
        ])
        .arg(profile(page))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --dump-dom: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A profile of its own per run, so parallel tests' browsers never hand over to each other.
fn profile(beside: &Path) -> String {
    format!(
        "--user-data-dir={}",
        beside.with_extension("profile").display()
    )
}

/// Width and height from a PNG's IHDR.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The `<svg>` root's size, from the page.
fn svg_size(page: &str) -> (u32, u32) {
    let attr = |name: &str| -> u32 {
        let start = page.find("<svg").unwrap();
        let tag = &page[start..start + page[start..].find('>').unwrap()];
        let value = tag
            .split(&format!(" {name}=\""))
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        value.parse::<f64>().unwrap().ceil() as u32
    };
    (attr("width"), attr("height"))
}

fn body_attribute(dom: &str, name: &str) -> String {
    let body = &dom[dom.find("<body").expect("a body")..];
    let body = &body[..body.find('>').unwrap()];
    body.split(&format!(" {name}=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} on <body>: {body}"))
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// Renders `document` in Chromium: asserts every stage, channel, touchpoint and KPI name is shown,
/// no text leaves its box or the picture, and the screenshot has the picture's size. Returns the
/// texts shown.
fn check_in_browser(chromium: &Path, document: &MapDocument, name: &str) -> Vec<String> {
    let dir = scratch(&format!("browser-{name}"));
    let page = dir.join(format!("{name}.html"));
    let html = render_html(document);
    std::fs::write(&page, &html).unwrap();
    let dom = dump_dom(chromium, &page);
    assert_eq!(
        body_attribute(&dom, "data-overflow"),
        "0",
        "overflowing: {}",
        body_attribute(&dom, "data-overflowing")
    );
    let checked: usize = body_attribute(&dom, "data-checked").parse().unwrap();
    let shown = texts(&dom);
    assert!(
        checked >= shown.len() - 1 && checked > 50,
        "{checked} texts measured of {}",
        shown.len()
    );
    let map = &document.journeys[0];
    let has = |wanted: &str| shown.iter().any(|t| t.contains(wanted));
    for (i, stage) in map.stages.iter().enumerate() {
        let header = format!("{} {}", i + 1, stage.stage.as_str());
        assert!(shown.contains(&header), "stage {header} shown");
    }
    for channel in &map.channels {
        assert!(
            shown.contains(&channel.name),
            "channel {} shown",
            channel.name
        );
    }
    for touchpoint in map.cells.iter().flatten().flatten() {
        assert!(
            shown.contains(&touchpoint.name),
            "touchpoint {} shown",
            touchpoint.name
        );
    }
    for kpi in map.kpis.iter().flatten() {
        assert!(shown.contains(&kpi.name), "KPI {} shown", kpi.name);
        assert!(has(&kpi.target), "KPI target {} shown", kpi.target);
    }
    assert!(has(&format!("readiness {}/100", map.readiness.0)));
    assert!(has(&format!(
        "self-assessment {}/25",
        map.self_assessment.0
    )));

    let (width, height) = svg_size(&html);
    let png = dir.join(format!("{name}.png"));
    let out = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", png.display()),
        ])
        .arg(profile(&png))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        text(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (width, height));
    assert!(
        bytes.len() > 20_000,
        "a picture, not a blank page: {} bytes",
        bytes.len()
    );
    shown
}

#[test]
fn chromium_shows_the_retail_map_whole() {
    let Some(chromium) = chromium() else { return };
    let shown = check_in_browser(&chromium, &retail(), "retail");
    assert!(shown.iter().any(|t| t == "asks: nps, csat"));
    assert!(
        !shown.iter().any(|t| t.starts_with("error[")),
        "retail has no error"
    );
}

#[test]
fn chromium_shows_the_large_map_whole_with_its_gaps() {
    let Some(chromium) = chromium() else { return };
    let (document, _) = large();
    let shown = check_in_browser(&chromium, &document, "large");
    let count = |wanted: &str| shown.iter().filter(|t| *t == wanted).count();
    assert_eq!(count("no touchpoint"), 1, "the delivery header");
    assert_eq!(count("no survey"), 1, "the usage header");
    assert_eq!(
        count("no KPI"),
        4,
        "delivery and advocacy: headers and KPI cells"
    );
    assert_eq!(count("no touchpoint on this channel"), 1, "channel 20");
    assert_eq!(
        count("none"),
        empty_cells(&document),
        "every empty cell says so"
    );
    assert_eq!(count("brand.voice equal: formal"), 1);
    assert_eq!(
        count("asks: no survey"),
        19 - (0..19).filter(|c| (c + 1 + 4) % 3 == 0).count()
    );
    assert!(
        shown
            .iter()
            .any(|t| t.starts_with("error[stage-without-listening]"))
    );
}

#[test]
fn chromium_parses_the_svg_file_as_xml() {
    let Some(chromium) = chromium() else { return };
    let dir = scratch("svg-xml");
    let svg = dir.join("large.svg");
    let (document, _) = large();
    std::fs::write(&svg, render_svg(&document)).unwrap();
    let dom = dump_dom(&chromium, &svg);
    assert!(
        !dom.contains("parsererror"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains("regional-channel-20"));
}

// ---- From a cluster that cannot be reached ----

#[test]
fn an_unreachable_cluster_is_an_error_naming_the_context_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener is dropped: nothing listens there any more
    let dir = scratch("unreachable");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster: {{ server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true }}\nusers:\n- name: u\n  user: {{ token: t }}\ncontexts:\n- name: staging-eu\n  context: {{ cluster: gone, user: u, namespace: retail }}\n- name: other\n  context: {{ cluster: gone, user: u }}\ncurrent-context: other\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["map", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--context", "staging-eu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot read the cluster of context staging-eu at https://127.0.0.1:{port}/: "
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no map drawn");

    let out = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["map", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--context", "no-such-context"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: context no-such-context: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_journey_gets_its_own_map_and_a_journey_without_channels_still_draws() {
    let dir = scratch("journeys");
    let lonely = dir.join("lonely.yaml");
    std::fs::write(
        &lonely,
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: CustomerJourney\nmetadata: { name: lonely, namespace: retail }\nspec:\n  stages: [awareness, loyalty]\n  channelSelector: { matchLabels: { journey: nobody } }\n",
    )
    .unwrap();
    let document = document_of(&[
        repo("examples/retail"),
        repo("examples/broken/stage-without-listening.yaml"),
        lonely,
    ]);
    let names: Vec<&str> = document.journeys.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["kiosk-self-service", "lonely", "retail"]);
    let kiosk = &document.journeys[0];
    assert_eq!(kiosk.stages.len(), 1);
    assert!(kiosk.stages[0].no_listening && !kiosk.stages[0].no_touchpoint);
    assert_eq!(kiosk.cells[0][0][0].name, "kiosk-stock-lookup");
    assert!(kiosk.cells[0][0][0].surveys.is_empty());
    let lonely = &document.journeys[1];
    assert!(lonely.channels.is_empty());
    assert!(lonely.stages.iter().all(|s| s.no_touchpoint));
    let shown = texts(&render_svg(&document));
    for header in [
        "Journey retail/kiosk-self-service",
        "Journey retail/lonely",
        "Journey retail/retail",
        "asks: no survey",
    ] {
        assert!(shown.iter().any(|t| t == header), "{header}: {shown:?}");
    }
    assert!(
        shown
            .iter()
            .any(|t| t.starts_with("error[journey-without-channels]: ")),
        "{shown:?}"
    );
    if let Some(chromium) = chromium() {
        let page = dir.join("journeys.html");
        std::fs::write(&page, render_html(&document)).unwrap();
        let dom = dump_dom(&chromium, &page);
        assert_eq!(
            body_attribute(&dom, "data-overflow"),
            "0",
            "{}",
            body_attribute(&dom, "data-overflowing")
        );
    }
}

/// A row of a Prometheus answer: `value` for the labels given.
fn row(labels: &[(&str, &str)], value: f64) -> cx_conductor::kpi::prometheus::Sample {
    cx_conductor::kpi::prometheus::Sample {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        value,
    }
}

/// The retail map with the themes a live map reads from Prometheus: the checkouts' and the
/// delivery tracking's comments and theme mentions over 28 days.
fn retail_with_themes() -> MapDocument {
    use cx_conductor::map::model::{theme_counts, with_themes};
    let mut document = retail();
    assert!(document.journeys.iter().all(|j| j.themes.is_none()));
    let tp = |name: &'static str| [("namespace", "retail"), ("touchpoint", name)];
    let mention = |name: &'static str, theme: &'static str, value: f64| {
        row(
            &[
                ("namespace", "retail"),
                ("touchpoint", name),
                ("theme", theme),
            ],
            value,
        )
    };
    let comments = [
        row(&tp("web-checkout"), 20.0),
        row(&tp("app-checkout"), 10.0),
        row(&tp("app-delivery-tracking"), 6.0),
        // Another namespace's touchpoint of the same name counts nowhere here.
        row(
            &[("namespace", "b2b"), ("touchpoint", "web-checkout")],
            100.0,
        ),
    ];
    let mentions = [
        mention("web-checkout", "delivery", 8.0),
        mention("web-checkout", "price", 5.0),
        mention("web-checkout", "staff", 1.0),
        mention("web-checkout", "app-crashes", 1.0),
        mention("web-checkout", "waiting-time", 0.0),
        mention("app-checkout", "delivery", 2.0),
        mention("app-checkout", "price", 5.0),
        mention("app-delivery-tracking", "app-crashes", 3.0),
        row(
            &[
                ("namespace", "b2b"),
                ("touchpoint", "web-checkout"),
                ("theme", "staff"),
            ],
            90.0,
        ),
    ];
    with_themes(&mut document, &theme_counts("28d", &comments, &mentions));
    document
}

#[test]
fn a_live_map_shows_each_stage_top_themes_and_their_share_of_its_comments() {
    use cx_conductor::map::model::theme_queries;
    let document = retail_with_themes();
    let journey = &document.journeys[0];
    let themes = journey.themes.as_ref().expect("themes known");
    assert_eq!(themes.window, "28d");
    let stage = |s: Stage| {
        journey
            .stages
            .iter()
            .position(|c| c.stage == s)
            .expect("a stage")
    };
    let shown = |s: Stage| {
        themes.stages[stage(s)]
            .iter()
            .map(|m| (m.name.as_str(), m.mentions, m.share()))
            .collect::<Vec<_>>()
    };
    // Purchase: 30 comments of the two checkouts; delivery and price tie at 10 (by name), then
    // app-crashes and staff tie at 1 and only three are shown; a theme never mentioned is not.
    assert_eq!(themes.comments[stage(Stage::Purchase)], 30.0);
    assert_eq!(
        shown(Stage::Purchase),
        [
            ("delivery", 10.0, 100.0 * 10.0 / 30.0),
            ("price", 10.0, 100.0 * 10.0 / 30.0),
            ("app-crashes", 1.0, 100.0 / 30.0),
        ]
    );
    assert_eq!(shown(Stage::Delivery), [("app-crashes", 3.0, 50.0)]);
    assert_eq!(themes.comments[stage(Stage::Awareness)], 0.0);
    assert!(shown(Stage::Awareness).is_empty());

    let svg = render_svg(&document);
    let text = texts(&svg);
    for expected in [
        "Themes",
        "top themes, share of comments, last 28d",
        "delivery 33.33%",
        "price 33.33%",
        "app-crashes 3.33%",
        "of 30 comments",
        "app-crashes 50%",
        "of 6 comments",
        "no comment",
    ] {
        assert!(
            text.contains(&expected.to_string()),
            "{expected} in {text:?}"
        );
    }
    // Offline, no themes row.
    assert!(!texts(&render_svg(&retail())).contains(&"Themes".to_string()));

    // The queries: exact counts per touchpoint in the window, one namespace or all.
    let now: k8s_openapi::jiff::Timestamp = "2026-11-03T10:15:00Z".parse().unwrap();
    let span = cx_conductor::kpi::WindowSpec::parse("28d")
        .unwrap()
        .current(now);
    let [comments, mentions] = theme_queries(Some("retail"), &span);
    assert!(
        comments.starts_with(
            r#"sum by (namespace, touchpoint) ((((last_over_time(cx_feedback_comments_total{namespace="retail"}[28d])"#
        ),
        "{comments}"
    );
    assert!(
        mentions.starts_with(
            r#"sum by (namespace, touchpoint, theme) ((((last_over_time(cx_feedback_themes_total{namespace="retail"}[28d])"#
        ),
        "{mentions}"
    );
    let [all, _] = theme_queries(None, &span);
    assert!(
        all.contains(r#"cx_feedback_comments_total{namespace!=""}"#),
        "{all}"
    );
    for query in theme_queries(None, &span) {
        cx_conductor::kpi::promql::validate_number_query(&query).expect("parses");
    }
}

#[test]
fn chromium_shows_the_themes_row_inside_its_cells() {
    let Some(chromium) = chromium() else { return };
    let shown = check_in_browser(&chromium, &retail_with_themes(), "themes");
    for expected in ["delivery 33.33%", "app-crashes 50%", "of 30 comments"] {
        assert!(shown.iter().any(|t| t == expected), "{expected} shown");
    }
}
