//! Matcher tests from `tests/fixtures/themes/retail.yaml`: Italian and English themes.

use super::*;

fn retail() -> ThemeMatcher {
    let themes: Vec<ThemeSpec> =
        serde_yaml::from_str(include_str!("../../tests/fixtures/themes/retail.yaml"))
            .expect("fixture");
    ThemeMatcher::new(&themes).expect("valid fixture")
}

/// The names of the themes `comment` matches.
fn themes(matcher: &ThemeMatcher, comment: &str) -> Vec<String> {
    matcher
        .matches(comment)
        .iter()
        .map(|i| matcher.names()[i].clone())
        .collect()
}

fn theme(name: &str, keywords: &[&str], exclude: &[&str]) -> ThemeSpec {
    ThemeSpec {
        name: name.into(),
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        exclude: exclude.iter().map(|k| k.to_string()).collect(),
    }
}

#[test]
fn words_and_phrases_match_in_italian_and_english() {
    let m = retail();
    assert_eq!(
        themes(&m, "Il corriere è arrivato in ritardo"),
        ["delivery"]
    );
    assert_eq!(themes(&m, "The courier was late"), ["delivery"]);
    assert_eq!(
        themes(&m, "Prezzi troppo alti e personale scortese"),
        ["price", "staff"]
    );
    assert_eq!(
        themes(&m, "Great product, nothing to add"),
        Vec::<String>::new()
    );
    assert_eq!(themes(&m, ""), Vec::<String>::new());
}

#[test]
fn case_and_accents_are_folded() {
    let m = retail();
    assert_eq!(themes(&m, "PERCHE COSI LENTO?"), ["waiting-time"]);
    assert_eq!(themes(&m, "perché così lento"), ["waiting-time"]);
    assert_eq!(
        themes(&m, "Perche\u{301} cosi\u{300} lento"),
        ["waiting-time"]
    );
    assert_eq!(themes(&m, "CORRIERE"), ["delivery"]);
    assert_eq!(themes(&m, "Spedizióne"), ["delivery"]);
}

#[test]
fn stems_match_word_prefixes_only() {
    let m = retail();
    for word in ["consegna", "consegnato", "CONSEGNE", "consegn"] {
        assert_eq!(themes(&m, &format!("la {word} ok")), ["delivery"], "{word}");
    }
    // A stem is a prefix of a word, not a substring anywhere.
    assert_eq!(themes(&m, "riconsegna"), Vec::<String>::new());
    // A phrase ending with a stem.
    assert_eq!(themes(&m, "the app crashed twice"), ["app-crashes"]);
}

#[test]
fn matches_are_whole_words() {
    let m = retail();
    assert_eq!(themes(&m, "I love chocolate"), Vec::<String>::new());
    assert_eq!(themes(&m, "late!"), ["delivery"]);
    assert_eq!(themes(&m, "(late)"), ["delivery"]);
    assert_eq!(themes(&m, "belated thanks"), Vec::<String>::new());
}

#[test]
fn phrases_need_consecutive_words() {
    let m = retail();
    assert_eq!(themes(&m, "in grande ritardo"), Vec::<String>::new());
    assert_eq!(themes(&m, "in, ritardo"), ["delivery"]);
    assert_eq!(themes(&m, "ritardo in"), Vec::<String>::new());
    assert_eq!(themes(&m, "in"), Vec::<String>::new());
}

#[test]
fn exclusions_suppress_their_theme_only() {
    let m = retail();
    assert_eq!(
        themes(&m, "Il pacco non è arrivato in ritardo"),
        ["delivery"]
    );
    assert_eq!(
        themes(&m, "Per fortuna non in ritardo"),
        Vec::<String>::new()
    );
    assert_eq!(
        themes(&m, "Non in ritardo, ma prezzo alto"),
        ["price"],
        "exclusion anywhere suppresses delivery, not price"
    );
    // Excluded even when a keyword of the theme appears elsewhere.
    assert_eq!(themes(&m, "corriere non in ritardo"), Vec::<String>::new());
}

#[test]
fn scripts_without_spaces_match_by_character() {
    let m = ThemeMatcher::new(&[theme("delivery", &["配送"], &[])]).expect("valid");
    assert_eq!(themes(&m, "配送が遅い"), ["delivery"]);
    assert_eq!(themes(&m, "配達"), Vec::<String>::new());
}

#[test]
fn folding_splits_words_on_punctuation_and_drops_marks() {
    let mut folded = Folded::default();
    folded.fold("L'app è CRASHATA—di nuovo! Straße İstanbul");
    let words: Vec<&str> = folded.words().collect();
    assert_eq!(
        words,
        [
            "l", "app", "e", "crashata", "di", "nuovo", "straße", "istanbul"
        ]
    );
    folded.fold("  \t ¿? ");
    assert!(folded.is_empty());
}

#[test]
fn invalid_theme_sets_are_refused_with_the_field_path() {
    let errors = validate_themes(
        &[
            theme("Delivery", &["ok"], &[]),
            theme("price", &[], &[]),
            theme(
                "staff",
                &["*bad", "a*b", "ok*", " lead", "!!!", "x *"],
                &["--"],
            ),
            theme("staff", &["fine"], &[]),
        ],
        "spec.themes",
    );
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.themes[0].name",
            "spec.themes[1].keywords",
            "spec.themes[2].keywords[0]",
            "spec.themes[2].keywords[1]",
            "spec.themes[2].keywords[3]",
            "spec.themes[2].keywords[4]",
            "spec.themes[2].keywords[5]",
            "spec.themes[2].exclude[0]",
            "spec.themes[3].name",
        ],
        "{errors:#?}"
    );
    assert!(ThemeMatcher::new(&[theme("Bad", &["x"], &[])]).is_err());
}

#[test]
fn theme_and_keyword_totals_are_bounded() {
    let many: Vec<ThemeSpec> = (0..=MAX_THEMES)
        .map(|i| theme(&format!("t{i}"), &["x"], &[]))
        .collect();
    assert_eq!(validate_themes(&many, "themes").len(), 1);
    let keywords: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let keywords: Vec<&str> = keywords.iter().map(String::as_str).collect();
    let heavy: Vec<ThemeSpec> = (0..21)
        .map(|i| theme(&format!("t{i}"), &keywords, &[]))
        .collect();
    let errors = validate_themes(&heavy, "themes");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("2000"));
    // The largest allowed set compiles, and the last theme is reachable.
    let full: Vec<ThemeSpec> = (0..MAX_THEMES)
        .map(|i| theme(&format!("t{i}"), &[&format!("w{i}")], &[]))
        .collect();
    let m = ThemeMatcher::new(&full).expect("valid");
    assert_eq!(
        m.matches("w199 w0").iter().collect::<Vec<_>>(),
        [0, MAX_THEMES - 1]
    );
}

#[test]
fn arbitrary_text_never_panics() {
    let m = retail();
    for text in [
        "\u{0}\u{301}\u{301}",
        "\u{10FFFF}",
        "ǅ İ ß ﬁ",
        &"a".repeat(70_000),
        &"in ".repeat(1000),
    ] {
        let _ = m.matches(text);
    }
}

#[test]
fn the_latin_table_folds_like_the_general_path() {
    for c in (0xC0u32..0x250).filter_map(char::from_u32) {
        let mut fast = Folded::default();
        fast.fold(&format!("a{c}b"));
        let mut general = Folded::default();
        general.text.clear();
        general.push_folded(c);
        let expected = if c.is_alphanumeric() {
            vec![format!("a{}b", general.text)]
        } else {
            vec!["a".to_owned(), "b".to_owned()]
        };
        let got: Vec<String> = fast.words().map(String::from).collect();
        assert_eq!(got, expected, "{c} U+{:04X}", c as u32);
    }
}

/// The matcher as it was before folding and walking were one pass: fold the whole comment,
/// then walk each word from the root. The reference the one-pass matcher is compared with.
fn two_pass(m: &ThemeMatcher, comment: &str) -> ThemeSet {
    let mut folded = Folded::default();
    folded.fold(comment);
    let mut found = ThemeSet::default();
    let mut excluded = ThemeSet::default();
    for i in 0..folded.len() {
        let word = folded.word(i).expect("a word").to_owned();
        let mut node = 0usize;
        let mut whole = true;
        for &byte in word.as_bytes() {
            let Some(next) = m.child(node, byte) else {
                whole = false;
                break;
            };
            node = next;
            for &id in m.ids(&m.nodes[node]).0 {
                m.hit(id, &folded, i, &mut found, &mut excluded);
            }
        }
        if whole && node != 0 {
            for &id in m.ids(&m.nodes[node]).1 {
                m.hit(id, &folded, i, &mut found, &mut excluded);
            }
        }
    }
    for (kept, dropped) in found.0.iter_mut().zip(excluded.0) {
        *kept &= !dropped;
    }
    found
}

#[test]
fn one_pass_matching_equals_folding_then_walking() {
    let themes = vec![
        theme(
            "delivery",
            &[
                "consegn*",
                "in ritardo",
                "corriere",
                "late delivery",
                "配送",
            ],
            &["non in ritardo"],
        ),
        theme("price", &["prezz*", "caro", "expensive", "too much"], &[]),
        theme(
            "staff",
            &["personale", "staff", "commess*", "ß*", "ǅx"],
            &[],
        ),
        theme(
            "crash",
            &["crash*", "si blocca", "app crash*"],
            &["no crash"],
        ),
    ];
    let m = ThemeMatcher::new(&themes).expect("valid");
    let pieces = [
        "consegna",
        "CONSEGNATO",
        "in",
        "ritardo",
        "non",
        "corriere",
        "late",
        "delivery",
        "配",
        "送",
        "prezzo",
        "Prézzi",
        "caro",
        "too",
        "much",
        "personale",
        "staff",
        "commessa",
        "ß",
        "ǅx",
        "crash",
        "crashes",
        "si",
        "blocca",
        "app",
        "no",
        "perché",
        "e\u{301}",
        "\u{301}",
        "l'app",
        "x",
        "12",
        "🙂",
        "ﬁ",
        "İ",
        "ritardò",
    ];
    let separators = [" ", ", ", ".", "-", "", "\n", "'", "\u{3000}"];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % n
    };
    let mut matched = 0;
    for _ in 0..20_000 {
        let mut comment = String::new();
        for _ in 0..1 + next(12) {
            comment.push_str(pieces[next(pieces.len())]);
            comment.push_str(separators[next(separators.len())]);
        }
        let expected = two_pass(&m, &comment);
        matched += usize::from(!expected.is_empty());
        assert_eq!(m.matches(&comment), expected, "{comment:?}");
    }
    // The comments are varied enough to match, and not to match.
    assert!((5_000..19_000).contains(&matched), "{matched} matched");
}
