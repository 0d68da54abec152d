//! Benchmark of theme matching at the edge: 50 themes × 20 keywords (Italian and English words,
//! stems, phrases and exclusions) against ~300-byte comments, in comments per second on one
//! thread; then the collector's per-event cost (parse, validate, count) without a comment, with
//! one, and with one matched against the themes. Run with `cargo bench --bench themes`; prints
//! the median of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cx_conductor::api::ThemeSpec;
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::collector::event::{EventSchema, parse_event};
use cx_conductor::collector::metrics::CollectorMetrics;
use cx_conductor::themes::{Folded, ThemeMatcher};

const RUNS: usize = 7;

/// Words comments are made of: Italian and English, some accented, some theme keywords.
const VOCABULARY: &[&str] = &[
    "il",
    "la",
    "corriere",
    "è",
    "arrivato",
    "in",
    "ritardo",
    "consegna",
    "prodotto",
    "ottimo",
    "perché",
    "così",
    "lento",
    "prezzo",
    "troppo",
    "alto",
    "personale",
    "gentile",
    "app",
    "si",
    "blocca",
    "sempre",
    "attesa",
    "lunga",
    "the",
    "courier",
    "was",
    "late",
    "delivery",
    "great",
    "price",
    "expensive",
    "staff",
    "friendly",
    "crashes",
    "when",
    "checkout",
    "waiting",
    "time",
    "queue",
    "qualità",
    "però",
    "non",
    "funziona",
    "pagamento",
    "reso",
    "rimborso",
    "order",
    "and",
    "but",
    "very",
    "not",
    "happy",
    "with",
    "service",
    "negozio",
    "online",
    "sito",
    "pagina",
    "chocolate",
    "città",
    "più",
    "già",
    "ci",
    "vuole",
    "settimana",
    "days",
    "again",
];

/// 50 themes of 20 keywords: real ones first, then synthetic ones built like them.
fn themes() -> Vec<ThemeSpec> {
    let real: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "delivery",
            vec![
                "consegn*",
                "corriere",
                "delivery",
                "courier",
                "late",
                "in ritardo",
                "spedizion*",
                "pacco",
                "parcel",
                "shipping",
                "arrivat*",
                "tracking",
                "deliver*",
                "ship*",
                "ritard*",
                "consegnato tardi",
                "non arrivato",
                "never arrived",
                "lost parcel",
                "dhl",
            ],
            vec!["non in ritardo", "on time"],
        ),
        (
            "price",
            vec![
                "prezz*",
                "caro",
                "costoso",
                "price*",
                "expensive",
                "cheap",
                "sconto",
                "discount*",
                "costo",
                "cost*",
                "tariff*",
                "pricey",
                "overpriced",
                "economico",
                "offert*",
                "promo*",
                "coupon",
                "saldi",
                "value for money",
                "troppo caro",
            ],
            vec![],
        ),
        (
            "staff",
            vec![
                "personale",
                "commess*",
                "gentil*",
                "scortes*",
                "staff",
                "rude",
                "friendly",
                "helpful",
                "operator*",
                "agent*",
                "cortes*",
                "maleducat*",
                "assistente",
                "employee*",
                "cashier",
                "cassier*",
                "manager",
                "servizio clienti",
                "customer service",
                "impiegat*",
            ],
            vec![],
        ),
        (
            "app-crashes",
            vec![
                "app crash*",
                "si blocca",
                "si chiude",
                "crash*",
                "bloccat*",
                "freezes",
                "app si blocca",
                "bug*",
                "errore",
                "error*",
                "non funziona",
                "doesn't work",
                "broken",
                "glitch*",
                "lag*",
                "lent*",
                "slow app",
                "not loading",
                "non carica",
                "schermata bianca",
            ],
            vec![],
        ),
        (
            "waiting-time",
            vec![
                "attes*",
                "aspettat*",
                "fila",
                "coda",
                "waiting",
                "queue*",
                "on hold",
                "perché così lento",
                "wait*",
                "tempo di attesa",
                "ore",
                "hours",
                "minutes",
                "minuti",
                "tempi lunghi",
                "too long",
                "troppo tempo",
                "slow",
                "lentissim*",
                "aspett*",
            ],
            vec![],
        ),
    ];
    let mut themes: Vec<ThemeSpec> = real
        .into_iter()
        .map(|(name, keywords, exclude)| ThemeSpec {
            name: name.into(),
            keywords: keywords.into_iter().map(String::from).collect(),
            exclude: exclude.into_iter().map(String::from).collect(),
        })
        .collect();
    for t in themes.len()..50 {
        let keywords = (0..20)
            .map(|k| match k % 4 {
                0 => format!("parola{t}x{k}"),
                1 => format!("stem{t}y{k}*"),
                2 => format!("frase {t} numero{k}"),
                _ => format!("wörd{t}z{k}"),
            })
            .collect();
        themes.push(ThemeSpec {
            name: format!("theme-{t}"),
            keywords,
            exclude: vec![format!("non parola{t}x0")],
        });
    }
    themes
}

/// `count` comments of about 300 bytes, deterministic (a small LCG picks words), some in capitals.
fn comments(count: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    (0..count)
        .map(|_| {
            let mut text = String::with_capacity(320);
            while text.len() < 290 {
                let word = VOCABULARY[next() % VOCABULARY.len()];
                if next() % 17 == 0 {
                    text.push_str(&word.to_uppercase());
                } else {
                    text.push_str(word);
                }
                text.push_str(match next() % 9 {
                    0 => ", ",
                    1 => ". ",
                    _ => " ",
                });
            }
            text
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median seconds per item of `f` over `items` items.
fn per_item(items: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut samples = Vec::with_capacity(RUNS);
    let mut out = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        out = black_box(f());
        samples.push(start.elapsed());
    }
    (median(samples).as_secs_f64() / items as f64, out)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("themes: run with `cargo bench --bench themes`");
        return;
    }
    let themes = themes();
    let keywords: usize = themes.iter().map(|t| t.keywords.len()).sum();
    let matcher = ThemeMatcher::new(&themes).expect("valid themes");
    let texts = comments(20_000);
    let bytes: usize = texts.iter().map(String::len).sum();
    let rounds = 10;
    let (seconds, hits) = per_item(texts.len() * rounds, || {
        let mut hits = 0;
        for _ in 0..rounds {
            for text in &texts {
                hits += matcher.matches(black_box(text)).iter().count();
            }
        }
        hits
    });
    println!("cx-conductor theme matching (median of {RUNS} runs, one thread)");
    println!(
        "{} themes, {keywords} keywords; {} comments of {} bytes on average; {:.2} themes per comment",
        themes.len(),
        texts.len(),
        bytes / texts.len(),
        hits as f64 / (texts.len() * rounds) as f64,
    );
    println!(
        "matching: {:>10.0} comments/s ({:.0} ns per comment, {:.0} MB/s)",
        1.0 / seconds,
        seconds * 1e9,
        bytes as f64 / texts.len() as f64 / seconds / 1e6
    );

    let mut folded = Folded::default();
    let (fold_seconds, _) = per_item(texts.len(), || {
        let mut words = 0;
        for text in &texts {
            folded.fold(black_box(text));
            words += folded.len();
        }
        words
    });
    println!(
        "  folding alone (words only, as keywords are folded): {:.0} ns per comment",
        fold_seconds * 1e9
    );

    // The collector's per-event cost: parse, validate and count.
    let base = r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: delivery
surveys: [{ metric: nps }]
maxEventBytes: 4096
"#;
    let plain: CollectorConfig = serde_yaml::from_str(base).expect("config");
    let themed = CollectorConfig {
        themes: themes.clone(),
        ..plain.clone()
    };
    let without: Vec<String> = (0..texts.len())
        .map(|i| format!(r#"{{"type":"survey","metric":"nps","score":{}}}"#, i % 11))
        .collect();
    let with: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            format!(
                r#"{{"type":"survey","metric":"nps","score":{},"comment":"{text}","language":"it"}}"#,
                i % 11
            )
        })
        .collect();
    println!("per event (parse, validate, count):");
    for (label, config, events) in [
        ("no comment", &plain, &without),
        ("comment, no themes", &plain, &with),
        ("no comment, 50 themes", &themed, &without),
        ("comment, 50 themes", &themed, &with),
    ] {
        let schema = EventSchema::from_config(config).expect("schema");
        let metrics = CollectorMetrics::new(config, &schema).expect("metrics");
        let (seconds, _) = per_item(events.len(), || {
            for event in events {
                if let Ok(event) = parse_event(black_box(event.as_bytes()), &schema) {
                    metrics.record(&event);
                }
            }
            events.len()
        });
        println!(
            "  {label:<24} {:>8.0} ns/event {:>10.0} events/s",
            seconds * 1e9,
            1.0 / seconds
        );
    }
}
